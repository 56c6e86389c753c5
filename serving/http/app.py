"""The HTTP front door: the FastAPI app over an engine, and the uvicorn server that serves it.

FastAPI on uvicorn, on its own port, in the same process and event loop as the gRPC server,
calling the same :class:`~latentdial.serving.engine.Engine`: an HTTP request waits in the same
batcher queue as a gRPC one. FastAPI + uvicorn is what KServe's own Python model server runs;
it is asyncio-native (so it shares the loop instead of a thread), writes the OpenAPI document
from the routes' own types, and adds no process of its own.

This module assembles the route modules (:mod:`.rest_v1`, :mod:`.oip_rest`, :mod:`.page`,
:mod:`.ops`) and maps what FastAPI itself refuses onto the same JSON errors. Guards
(docs/api.md#security-model) are the core's, asked by :class:`~.call.HttpCall` before any work;
TLS and the client CA are the gRPC port's (:mod:`latentdial.serving.listener`).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from latentdial.serving import oip
from latentdial.serving.config import ServerConfig
from latentdial.serving.engine import Engine, new_request_id
from latentdial.serving.errors import InvalidArgument
from latentdial.serving.http import oip_rest, ops, page, rest_v1
from latentdial.serving.http.call import HttpCall
from latentdial.serving.http.errors import error_response
from latentdial.serving.listener import UvicornListener, bind
from latentdial.serving.ports import http_port_message


def build_app(call: HttpCall) -> FastAPI:
    """The app: the error handlers, then each route module's routes."""
    app = FastAPI(
        title="latentdial", version=oip.server_version(), docs_url=None, redoc_url=None,
        description=(
            "Turn one dial, change one factor of an image. REST mirrors of the latentdial v1 API "
            "(`/v1`), the Open Inference Protocol v2 REST binding (`/v2`), and the slider page (`/`). "
            "Bodies are `image/png` (parameters in the query) or JSON; add `?format=png` for a PNG answer."
        ),
    )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        return error_response(InvalidArgument(f"the request is malformed: {problems}"), new_request_id())

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = (f"no route {request.method} {request.url.path}; see /docs for the routes"
                   if exc.status_code in (404, 405) else str(exc.detail))
        return JSONResponse({"error": message, "code": str(exc.status_code)}, status_code=exc.status_code)

    page.add_routes(app)
    ops.add_routes(app, call)
    oip_rest.add_routes(app, call)
    rest_v1.add_routes(app, call)
    return app


class HttpFrontDoor:
    """The FastAPI app over an engine, and the uvicorn server that serves it on the shared loop."""

    def __init__(self, engine: Engine, config: ServerConfig) -> None:
        self.engine = engine
        self.config = config
        self.call = HttpCall(engine, config)
        self.app = build_app(self.call)
        self.port = 0
        self._listener: UvicornListener | None = None

    async def start(self, host: str, port: int) -> int:
        """Bind (port 0 picks a free one) and serve, over TLS when the server has it (:mod:`listener`).
        Like gRPC, only the workers of one supervisor (``reuse_port``) share the port; a busy port is
        PortInUse with one line saying what to do."""
        sock = bind(host, port, reuse_port=self.config.reuse_port, message=http_port_message(host, port))
        self._listener = UvicornListener(self.app, sock, self.config, name="http")
        self.port = self._listener.port
        return await self._listener.start()

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (up to grace_s), close."""
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
