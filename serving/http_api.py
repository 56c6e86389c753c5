"""The HTTP front door: OIP v2 REST, REST mirrors of the domain calls, the slider page, docs, metrics.

FastAPI on uvicorn, on its own port, in the same process and event loop as the gRPC server,
calling the same :class:`~latentdial.serving.engine.Engine`: an HTTP request waits in the same
batcher queue as a gRPC one. FastAPI + uvicorn is what KServe's own Python model server runs;
it is asyncio-native (so it shares the loop instead of a thread), writes the OpenAPI document
from the routes' own types, and adds no process of its own.

Routes (docs/api.md#http-api):

- ``/v2/...``: the Open Inference Protocol's REST binding, JSON tensors and the binary tensor
  data extension (``Inference-Header-Content-Length``).
- ``/v1/...``: one route per domain call; a body of ``image/png`` (parameters in the query) or
  JSON; answers JSON, or a PNG with ``?format=png`` / ``Accept: image/png``.
- ``/`` the slider page, ``/docs`` (Swagger UI served from the swagger-ui-bundle package, no
  CDN), ``/openapi.json``, ``/metrics``, ``/healthz``.

Errors: the status of :class:`ServiceError` (400, 404, 413, 415, 429, 503, 504, 500) and a JSON
body ``{"error": "<what to fix>", "code": "INVALID_ARGUMENT", "request_id": "..."}``; ``error``
is where the OIP REST binding puts the message; a 429 carries ``Retry-After``.

Guards (docs/api.md#security-model): the bearer token on every route with data (``/v1``, ``/v2``
but its health routes, ``/metrics``); the gRPC port's TLS and client CA (:mod:`listener`); the
engine's cap on requests in flight; a deadline per request (``X-Request-Timeout`` seconds, at most
and by default ``request_timeout_s``) over the whole request, body reading included; bodies read
as a stream and refused with 413 once above ``max_message_mb``, JSON ones also once they hold more
than ``max_json_values`` values or :data:`MAX_JSON_OBJECTS` objects, before any parsing; and list
lengths in the request models (``max_length``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from latentdial.serving import codec, oip
from latentdial.serving.config import ServerConfig
from latentdial.serving.edits import Edit, check_edit_count, check_traversal, sample_posterior
from latentdial.serving.engine import (
    Decoded,
    Engine,
    ServedModel,
    Source,
    current_deadline,
    new_request_id,
)
from latentdial.serving.errors import (
    ErrorKind,
    InvalidArgument,
    NotFound,
    PayloadTooLarge,
    ServiceError,
    Unauthenticated,
)
from latentdial.serving.listener import TOKEN_HINT, UvicornListener, bearer_ok, bind
from latentdial.serving.ports import http_port_message
from latentdial.serving.service import finite
from latentdial.v1 import MAX_EDITS, MAX_TRAVERSE_TARGETS

log = logging.getLogger(__name__)

JSON_TYPE = "application/json"
PNG_TYPE = "image/png"
HEADER_LENGTH = "Inference-Header-Content-Length"
#: The request's own deadline in seconds (a decimal number > 0); at most ``request_timeout_s``.
TIMEOUT_HEADER = "X-Request-Timeout"
#: Most JSON objects (``{``) in one body: a request holds one, plus at most 64 edits or pins, or a few
#: OIP tensors. Objects are the dearest thing to parse (about 140 bytes each for ``{}``).
MAX_JSON_OBJECTS = 256


# ------------------------------------------------------------ JSON bodies
class SourceBody(BaseModel):
    """Images or latents. Give one of ``images`` (base64 PNGs), ``pixels`` or ``latents``."""

    images: list[str] | None = Field(None, description="base64-encoded PNGs, one per image")
    pixels: list | None = Field(None, description="(N, H, W, C) nested lists, uint8 or float32 in [0, 1]")
    dtype: Literal["uint8", "float32"] = Field("float32", description="the type of `pixels`")
    latents: list[list[float]] | None = Field(None, description="(N, D) latents")


class EncodeBody(SourceBody):
    sample: bool = Field(False, description="also draw z = mean + exp(log_var / 2) * eps")
    seed: int = 0


class DecodeBody(BaseModel):
    latents: list[list[float]] = Field(description="(N, D) latents")


class ReconstructBody(EncodeBody):
    pass


class TraverseBody(SourceBody):
    dimensions: list[int] = Field(default_factory=list, description="latent dimensions to sweep",
                                  max_length=MAX_TRAVERSE_TARGETS)
    factors: list[str] = Field(default_factory=list, description="named factors to sweep",
                               max_length=MAX_TRAVERSE_TARGETS)
    start: float | None = None
    stop: float | None = None
    steps: int = Field(10, description="2..64")


class EditIn(BaseModel):
    """One edit: a target (``factor`` or ``dimension``) and exactly one operation."""

    factor: str | None = None
    dimension: int | None = None
    set_value: float | None = None
    shift: float | None = None
    set_latent: float | None = None
    set_label: str | None = None


class EditBody(SourceBody):
    edits: list[EditIn] = Field(default_factory=list, description="applied in order", max_length=MAX_EDITS)


class PinIn(BaseModel):
    """One pinned factor or dimension: exactly one of ``value``, ``latent``, ``label``."""

    factor: str | None = None
    dimension: int | None = None
    value: float | None = None
    latent: float | None = None
    label: str | None = None


class GenerateBody(BaseModel):
    count: int = 1
    seed: int = 0
    temperature: float = 1.0
    pins: list[PinIn] = Field(default_factory=list, max_length=MAX_EDITS)


class InferInputIn(BaseModel):
    name: str
    shape: list[int] = Field(max_length=8)
    datatype: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    data: list | None = None


class InferOutputIn(BaseModel):
    name: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class InferBody(BaseModel):
    """An OIP v2 inference request (the JSON part when the binary extension is used)."""

    id: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: list[InferInputIn] = Field(max_length=oip.MAX_TENSORS)
    outputs: list[InferOutputIn] | None = Field(None, max_length=oip.MAX_TENSORS)


_BODIES = (EncodeBody, DecodeBody, ReconstructBody, TraverseBody, EditBody, GenerateBody, InferBody)


# ---------------------------------------------------------------- helpers
def _b64_png(blob: bytes) -> str:
    return base64.b64encode(blob).decode()


def _pngs(images_nchw: np.ndarray) -> list[str]:
    u8 = codec.to_uint8(images_nchw.transpose(0, 2, 3, 1))
    return [_b64_png(codec.encode_png(img)) for img in u8]


def grid_png(images_nchw: np.ndarray, rows: int, cols: int) -> bytes:
    """(rows * cols, C, H, W) float images in [0, 1] -> one PNG, row-major, 2-pixel grey gutters."""
    n, c, h, w = images_nchw.shape
    if rows * cols != n:
        raise ValueError(f"{n} images do not fill a {rows}x{cols} grid")
    if n == 1:
        return codec.encode_png(codec.to_uint8(images_nchw[0].transpose(1, 2, 0)))
    gap = 2
    canvas = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, c), 0.5, np.float32)
    for i, img in enumerate(images_nchw):
        r, k = divmod(i, cols)
        canvas[r * (h + gap): r * (h + gap) + h, k * (w + gap): k * (w + gap) + w] = img.transpose(1, 2, 0)
    return codec.encode_png(codec.to_uint8(canvas))


def _wants_png(request: Request) -> bool:
    fmt = request.query_params.get("format")
    if fmt is not None:
        if fmt not in ("json", "png"):
            raise InvalidArgument(f"format={fmt!r} is unknown; use format=json or format=png")
        return fmt == "png"
    accept = request.headers.get("accept", "")
    return PNG_TYPE in accept and JSON_TYPE not in accept


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


class JsonBudget:
    """Counts what a JSON body holds while it streams in, without parsing it: objects (``{``) and
    values (``,`` and ``[``: an upper bound on numbers, strings and arrays, since base64 holds neither).
    Parsing costs about 100 bytes per value and 140 per object, 20 to 50 times the body's bytes, so
    these bounds, not the byte count, are what keep a small body from costing hundreds of MiB."""

    def __init__(self, max_values: int) -> None:
        self.max_values = max_values
        self.objects = 0
        self.values = 0

    def add(self, chunk: bytes) -> None:
        self.objects += chunk.count(b"{")
        self.values += chunk.count(b",") + chunk.count(b"[")
        if self.objects > MAX_JSON_OBJECTS:
            raise PayloadTooLarge(
                f"the JSON body holds more than {MAX_JSON_OBJECTS} objects; a request takes at most "
                f"{MAX_EDITS} edits or pins"
            )
        if self.values > self.max_values:
            raise PayloadTooLarge(
                f"the JSON body holds more than {self.max_values} values, this server's max_json_values; send "
                "images as PNGs (image/png, or base64 in 'images'), tensors with the OIP binary extension, "
                "or fewer items"
            )


def _timeout_s(request: Request, cap: float) -> float | None:
    """The request's ``X-Request-Timeout`` in seconds (at most ``cap``), or None when it has none."""
    text = request.headers.get(TIMEOUT_HEADER.lower())
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise InvalidArgument(f"{TIMEOUT_HEADER}: {text[:40]!r} is not a number of seconds > 0")
    return min(value, cap)


def _parse(model: type[BaseModel], raw: bytes, max_values: int) -> Any:
    if not raw.strip():
        return model()
    JsonBudget(max_values).add(raw)  # already counted while streaming, except an OIP binary body's head
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in e.errors()[:5]
        )
        raise InvalidArgument(f"the JSON body is not a valid {model.__name__}: {problems}") from None


def _edit_from_json(e: EditIn, i: int) -> Edit:
    what = f"edits[{i}]"
    target = _target(e.factor, e.dimension, what)
    ops = {k: getattr(e, k) for k in ("set_value", "shift", "set_latent", "set_label") if getattr(e, k) is not None}
    if len(ops) != 1:
        raise InvalidArgument(f"{what}: give exactly one of set_value, shift, set_latent, set_label; got {sorted(ops)}")
    (op, value), = ops.items()
    return Edit(*target, op, value if op == "set_label" else finite(value, what))


def _pin_from_json(p: PinIn, i: int) -> Edit:
    what = f"pins[{i}]"
    target = _target(p.factor, p.dimension, what)
    ops = {k: getattr(p, k) for k in ("value", "latent", "label") if getattr(p, k) is not None}
    if len(ops) != 1:
        raise InvalidArgument(f"{what}: give exactly one of value, latent, label; got {sorted(ops)}")
    (kind, value), = ops.items()
    op = {"value": "set_value", "latent": "set_latent", "label": "set_label"}[kind]
    return Edit(*target, op, value if kind == "label" else finite(value, what))


def _target(factor: str | None, dimension: int | None, what: str) -> tuple[str | None, int | None]:
    if (factor is None) == (dimension is None):
        raise InvalidArgument(f"{what}: give exactly one target, factor or dimension")
    return factor, dimension


def _edits_from_query(request: Request) -> list[Edit]:
    """``?set=scale=0.8&set=shape=heart&shift=pos_x=0.2&latent=3=1.5`` -> edits (sets, then shifts, then latents).

    A target that is all digits is a latent dimension; a ``set`` value that is not a number is a label.
    """
    check_edit_count(sum(len(request.query_params.getlist(k)) for k in ("set", "shift", "latent")))
    edits = []
    for key, op in (("set", "set_value"), ("shift", "shift"), ("latent", "set_latent")):
        for item in request.query_params.getlist(key):
            name, sep, text = item.partition("=")
            what = f"{key}={item}"
            if not sep or not name:
                raise InvalidArgument(f"{what}: write {key}=<factor or dimension>=<value>")
            factor, dim = (None, int(name)) if name.isdigit() else (name, None)
            try:
                number = float(text)
            except ValueError:
                if op != "set_value":
                    raise InvalidArgument(f"{what}: {text!r} is not a number") from None
                edits.append(Edit(factor, dim, "set_label", text))
                continue
            edits.append(Edit(factor, dim, op, finite(number, what)))
    return edits


def _float_query(request: Request, name: str, default: float | None) -> float | None:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        return finite(float(text), name)
    except ValueError:
        raise InvalidArgument(f"{name}={text!r} is not a number") from None


def _int_query(request: Request, name: str, default: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise InvalidArgument(f"{name}={text!r} is not an integer") from None


def _bool_query(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").lower() in ("1", "true", "yes", "on")


# -------------------------------------------------------------- the front
class HttpFrontDoor:
    """The FastAPI app over an engine, and the uvicorn server that serves it on the shared loop."""

    def __init__(self, engine: Engine, config: ServerConfig) -> None:
        self.engine = engine
        self.config = config
        self.app = self._build()
        self.port = 0
        self._listener: UvicornListener | None = None

    # ------------------------------------------------------------ lifecycle
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

    # -------------------------------------------------------------- helpers
    async def _body(self, request: Request) -> bytes:
        """The body, read as a stream and refused (413) once it passes ``max_message_mb``, or, for a
        JSON body, :class:`JsonBudget`'s bounds: nothing is parsed before the whole body passed."""
        limit = self.config.max_message_bytes
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise PayloadTooLarge(
                f"the body has {int(length)} bytes, more than this server's max_message_mb="
                f"{self.config.max_message_mb}; send fewer or smaller images"
            )
        is_json = _content_type(request) in ("", JSON_TYPE) and HEADER_LENGTH.lower() not in request.headers
        budget = JsonBudget(self.config.max_json_values) if is_json else None
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(
                    f"the body exceeds this server's max_message_mb={self.config.max_message_mb}; "
                    "send fewer or smaller images"
                )
            if budget is not None:
                budget.add(chunk)
            chunks.append(chunk)
        return b"".join(chunks)

    def _parse(self, model: type[BaseModel], raw: bytes) -> Any:
        return _parse(model, raw, self.config.max_json_values)

    async def _call(self, request: Request, name: str, fn: Callable[[], Awaitable[Response]]) -> Response:
        """Token, then the engine's call (in-flight cap, deadline over the whole request), then ``fn``."""
        rid = new_request_id(request.headers.get("x-request-id"))
        try:
            self._check_token(request)
            deadline = self.engine.deadline_after(_timeout_s(request, self.config.request_timeout_s))
            async with self.engine.call(name, rid, admit_while_draining=False, deadline=deadline):
                response = await fn()
        except ServiceError as e:
            return error_response(e, rid)
        response.headers["x-request-id"] = rid
        return response

    def _check_token(self, request: Request) -> None:
        token = self.config.token
        if token and not bearer_ok(request.headers.get("authorization"), token):
            raise Unauthenticated(TOKEN_HINT)

    def _served(self, request: Request, model: str) -> ServedModel:
        return self.engine.served(model, request.query_params.get("version", ""))

    async def _images_body(self, request: Request, s: ServedModel, body_model: type[BaseModel]) -> tuple[Any, Source]:
        """Read a body that carries images (PNG or JSON) or latents -> (parsed JSON body or None, Source)."""
        raw = await self._body(request)
        ctype = _content_type(request)
        limit = self.engine.max_request_items
        if ctype == PNG_TYPE:
            return None, Source(images=codec.images_from_pngs([raw], s.model.image_shape, limit))
        if ctype not in ("", JSON_TYPE):
            raise UnsupportedMediaType(f"Content-Type {ctype!r} is not read here; send {PNG_TYPE} or {JSON_TYPE}")
        body = self._parse(body_model, raw)
        return body, self._source(s, body)

    def _source(self, s: ServedModel, body: SourceBody) -> Source:
        given = [k for k in ("images", "pixels", "latents") if getattr(body, k) is not None]
        if len(given) != 1:
            raise InvalidArgument(f"give exactly one of images (base64 PNGs), pixels or latents; got {given}")
        limit = self.engine.max_request_items
        if body.images is not None:
            try:
                blobs = [base64.b64decode(b, validate=True) for b in body.images]
            except (binascii.Error, ValueError) as e:
                raise InvalidArgument(f"images: not base64 ({e}); send base64-encoded PNG files") from None
            return Source(images=codec.images_from_pngs(blobs, s.model.image_shape, limit))
        if body.pixels is not None:
            try:
                a = np.asarray(body.pixels, dtype=np.dtype(body.dtype))
            except (TypeError, ValueError, OverflowError) as e:
                raise InvalidArgument(f"pixels: not a regular (N, H, W, C) array of {body.dtype} ({e})") from None
            return Source(images=codec.images_from_array(a, s.model.image_shape, limit))
        return Source(latents=self._latents(s, body.latents))

    def _latents(self, s: ServedModel, rows: list[list[float]]) -> np.ndarray:
        try:
            a = np.asarray(rows, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise InvalidArgument(f"latents: not a regular (N, D) array of numbers ({e})") from None
        return codec.latents_from_array(a, s.model.latent_dim, self.engine.max_request_items)

    def _decoded_response(self, request: Request, s: ServedModel, d: Decoded) -> Response:
        if _wants_png(request):
            return Response(grid_png(d.images, 1, len(d.images)), media_type=PNG_TYPE)
        return JSONResponse({"model": _ref(s), "latents": d.latents.tolist(), "images": _pngs(d.images)})

    # ---------------------------------------------------------------- routes
    def _build(self) -> FastAPI:
        """The app: one closure per route, each next to its path."""
        app = FastAPI(
            title="latentdial", version=oip.server_version(), docs_url=None, redoc_url=None,
            description=(
                "Turn one dial, change one factor of an image. REST mirrors of the latentdial v1 API "
                "(`/v1`), the Open Inference Protocol v2 REST binding (`/v2`), and the slider page (`/`). "
                "Bodies are `image/png` (parameters in the query) or JSON; add `?format=png` for a PNG answer."
            ),
        )
        engine = self.engine
        swagger = _swagger_dir()
        app.mount("/static/swagger", StaticFiles(directory=swagger), name="swagger")
        app.mount("/static/page", StaticFiles(directory=str(resources.files("latentdial.serving") / "web")),
                  name="page")

        @app.exception_handler(RequestValidationError)
        async def validation_error(request: Request, exc: RequestValidationError):
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
            return error_response(InvalidArgument(f"the request is malformed: {problems}"), new_request_id())

        @app.exception_handler(StarletteHTTPException)
        async def http_error(request: Request, exc: StarletteHTTPException):
            message = (f"no route {request.method} {request.url.path}; see /docs for the routes"
                       if exc.status_code in (404, 405) else str(exc.detail))
            return JSONResponse({"error": message, "code": str(exc.status_code)}, status_code=exc.status_code)

        # ----------------------------------------------------- page, docs, ops
        @app.get("/", include_in_schema=False)
        async def page() -> HTMLResponse:
            return HTMLResponse((resources.files("latentdial.serving") / "web" / "index.html").read_text())

        @app.get("/docs", include_in_schema=False)
        async def docs() -> HTMLResponse:
            return get_swagger_ui_html(
                openapi_url="/openapi.json", title="latentdial API",
                swagger_js_url="/static/swagger/swagger-ui-bundle.js",
                swagger_css_url="/static/swagger/swagger-ui.css",
                swagger_favicon_url="/static/swagger/favicon-32x32.png",
            )

        @app.get("/metrics", include_in_schema=False)
        async def metrics(request: Request) -> Response:
            rid = new_request_id(request.headers.get("x-request-id"))
            try:
                self._check_token(request)  # counts and names of models and routes are data too
            except ServiceError as e:
                return error_response(e, rid)
            return PlainTextResponse(engine.metrics.text(), media_type="text/plain; version=0.0.4")

        @app.get("/healthz", tags=["health"], summary="200 when ready, 503 while loading, draining or with nothing servable")
        async def healthz():
            ok = engine.ready
            return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

        # ------------------------------------------------------------ OIP v2
        @app.get("/v2/health/live", tags=["oip"], summary="200 while the process serves")
        async def live():
            return JSONResponse({"live": True})

        @app.get("/v2/health/ready", tags=["oip"], summary="200 when a model version is served and warm, 503 otherwise")
        async def ready():
            ok = engine.ready
            return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

        @app.get("/v2", tags=["oip"], summary="server metadata")
        async def server_metadata(request: Request):
            async def go():
                return JSONResponse({"name": oip.SERVER_NAME, "version": oip.server_version(),
                                     "extensions": ["binary_tensor_data"]})
            return await self._call(request, "http.oip.server_metadata", go)

        async def model_metadata(request: Request, model: str, version: str = ""):
            async def go():
                s, graph = oip.resolve(engine, model, version)
                inputs, outputs = oip.signature(s, graph)

                def meta(t: oip.TensorSpec) -> dict:
                    return {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}

                return JSONResponse({
                    "name": oip.oip_name(s, graph), "versions": engine.repository.versions(s.name),
                    "platform": oip.PLATFORM, "inputs": [meta(t) for t in inputs],
                    "outputs": [meta(t) for t in outputs],
                })
            return await self._call(request, "http.oip.model_metadata", go)

        async def model_ready(request: Request, model: str, version: str = ""):
            async def go():
                oip.resolve(engine, model, version)
                return JSONResponse({"name": model, "ready": engine.ready})
            return await self._call(request, "http.oip.model_ready", go)

        async def infer(request: Request, model: str, version: str = ""):
            async def go():
                s, graph = oip.resolve(engine, model, version)
                return await self._infer(request, s, graph)
            return await self._call(request, "http.oip.infer", go)

        infer_doc = {"requestBody": {"content": {
            JSON_TYPE: {"schema": {"$ref": "#/components/schemas/InferBody"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"},
                                         "description": f"binary extension: {HEADER_LENGTH} bytes of JSON, "
                                                        "then each input's raw bytes"},
        }}}
        for prefix in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
            app.get(prefix, tags=["oip"], summary="model metadata")(model_metadata)
            app.get(prefix + "/ready", tags=["oip"], summary="model readiness")(model_ready)
            app.post(prefix + "/infer", tags=["oip"], summary="run one graph", openapi_extra=infer_doc)(infer)

        # ------------------------------------------------------- v1 mirrors
        def body_doc(model: type[BaseModel], png: str) -> dict:
            return {"requestBody": {"required": True, "content": {
                JSON_TYPE: {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}},
                PNG_TYPE: {"schema": {"type": "string", "format": "binary"}, "description": png},
            }}}

        @app.get("/v1/models", tags=["v1"], summary="served models and versions (ListModels)")
        async def list_models(request: Request):
            async def go():
                repo = engine.repository
                return JSONResponse({"models": [
                    {"name": n, "versions": repo.versions(n), "latest_version": repo.versions(n)[-1],
                     "is_default": n == repo.default, "oip_models": [f"{n}.{g}" for g in oip.GRAPH_SUFFIXES]}
                    for n in repo.names()
                ]})
            return await self._call(request, "http.list_models", go)

        @app.get("/v1/models/{model}", tags=["v1"], summary="shapes, factors, metrics, runtime (GetModelInfo)")
        async def model_info(request: Request, model: str, version: str = ""):
            async def go():
                return JSONResponse(self._info(self._served(request, model)))
            return await self._call(request, "http.model_info", go)

        @app.post("/v1/models/{model}/encode", tags=["v1"], summary="images -> posterior (Encode)",
                  openapi_extra=body_doc(EncodeBody, "one PNG; ?sample=true&seed=N"))
        async def encode(request: Request, model: str, version: str = ""):
            async def go():
                s = self._served(request, model)
                body, source = await self._images_body(request, s, EncodeBody)
                if source.images is None:
                    raise InvalidArgument("encode takes images or pixels, not latents")
                sample = body.sample if body else _bool_query(request, "sample")
                seed = body.seed if body else _int_query(request, "seed", 0)
                mean, log_var = await engine.encode(s, source.images, current_deadline())
                out = {"model": _ref(s), "mean": mean.tolist(), "log_var": log_var.tolist(),
                       "factors": engine.factor_values(s, mean)}
                if sample:
                    out["sample"] = sample_posterior(mean, log_var, seed).tolist()
                return JSONResponse(out)
            return await self._call(request, "http.encode", go)

        @app.post("/v1/models/{model}/decode", tags=["v1"], summary="latents -> images (Decode)",
                  openapi_extra=body_doc(DecodeBody, "not accepted: send JSON latents"))
        async def decode(request: Request, model: str, version: str = ""):
            async def go():
                s = self._served(request, model)
                raw = await self._body(request)
                if _content_type(request) not in ("", JSON_TYPE):
                    raise UnsupportedMediaType(f"decode reads {JSON_TYPE} latents")
                z = self._latents(s, self._parse(DecodeBody, raw).latents)
                return self._decoded_response(request, s, Decoded(z, await engine.decode(s, z, current_deadline())))
            return await self._call(request, "http.decode", go)

        @app.post("/v1/models/{model}/reconstruct", tags=["v1"], summary="images -> latents -> images (Reconstruct)",
                  openapi_extra=body_doc(ReconstructBody, "one PNG; ?sample=true&seed=N"))
        async def reconstruct(request: Request, model: str, version: str = ""):
            async def go():
                s = self._served(request, model)
                body, source = await self._images_body(request, s, ReconstructBody)
                if source.images is None:
                    raise InvalidArgument("reconstruct takes images or pixels, not latents")
                sample = body.sample if body else _bool_query(request, "sample")
                seed = body.seed if body else _int_query(request, "seed", 0)
                d = await engine.reconstruct(s, source.images, sample=sample, seed=seed, deadline=current_deadline())
                return self._decoded_response(request, s, d)
            return await self._call(request, "http.reconstruct", go)

        @app.post("/v1/models/{model}/traverse", tags=["v1"], summary="sweep factors or dimensions (Traverse)",
                  openapi_extra=body_doc(TraverseBody, "one PNG; ?factors=a&factors=b or ?dimensions=0&steps=8"))
        async def traverse(request: Request, model: str, version: str = ""):
            async def go():
                s = self._served(request, model)
                body, source = await self._images_body(request, s, TraverseBody)
                if body is None:
                    q = request.query_params
                    steps, dims_text, factors = _int_query(request, "steps", 10), q.getlist("dimensions"), q.getlist("factors")
                    check_traversal(len(dims_text), len(factors), steps)  # sizes before converting anything
                    try:
                        dims = [int(d) for d in dims_text]
                    except ValueError:
                        raise InvalidArgument("dimensions: give integers") from None
                    body = TraverseBody.model_construct(dimensions=dims, factors=factors,
                                                        start=_float_query(request, "start", None),
                                                        stop=_float_query(request, "stop", None), steps=steps)
                t = await engine.traverse(s, source, dims=body.dimensions, factors=body.factors, start=body.start,
                                          stop=body.stop, steps=body.steps, deadline=current_deadline())
                if _wants_png(request):
                    rows = t.num_sources * len(t.plan.targets)
                    return Response(grid_png(t.images, rows, t.steps), media_type=PNG_TYPE)
                return JSONResponse({"model": _ref(s), "images": _pngs(t.images), "num_sources": t.num_sources,
                                     "targets": t.plan.targets, "steps": t.steps, "values": t.plan.values.tolist()})
            return await self._call(request, "http.traverse", go)

        @app.post("/v1/models/{model}/edit", tags=["v1"], summary="set or shift factors (EditAttributes)",
                  openapi_extra=body_doc(EditBody, "one PNG; ?set=scale=0.8&set=shape=heart&shift=pos_x=0.2"))
        async def edit(request: Request, model: str, version: str = ""):
            async def go():
                s = self._served(request, model)
                body, source = await self._images_body(request, s, EditBody)
                edits = (_edits_from_query(request) if body is None
                         else [_edit_from_json(e, i) for i, e in enumerate(body.edits)])
                return self._decoded_response(request, s, await engine.edit(s, source, edits, current_deadline()))
            return await self._call(request, "http.edit", go)

        @app.post("/v1/models/{model}/generate", tags=["v1"], summary="seeded prior samples (Generate)",
                  openapi_extra=body_doc(GenerateBody, "not accepted: send JSON"))
        async def generate(request: Request, model: str, version: str = ""):
            async def go():
                s = self._served(request, model)
                raw = await self._body(request)
                if _content_type(request) not in ("", JSON_TYPE):
                    raise UnsupportedMediaType(f"generate reads {JSON_TYPE}")
                body = self._parse(GenerateBody, raw)
                pins = [_pin_from_json(p, i) for i, p in enumerate(body.pins)]
                d = await engine.generate(s, body.count, seed=body.seed, temperature=finite(body.temperature, "temperature"),
                                          pins=pins, deadline=current_deadline())
                return self._decoded_response(request, s, d)
            return await self._call(request, "http.generate", go)

        @app.get("/v1/models/{model}/samples", tags=["v1"],
                 summary="images from the model's own ground-truth dataset (for the page)")
        async def samples(request: Request, model: str, version: str = "", count: int = 1, seed: int = 0):
            async def go():
                s = self._served(request, model)
                x = await engine.ground_truth(s, count, seed)
                if _wants_png(request):
                    return Response(grid_png(x, 1, len(x)), media_type=PNG_TYPE)
                return JSONResponse({"model": _ref(s), "images": _pngs(x)})
            return await self._call(request, "http.samples", go)

        def openapi() -> dict:
            if app.openapi_schema is None:
                schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                     routes=app.routes)
                components = schema.setdefault("components", {}).setdefault("schemas", {})
                for model in _BODIES:
                    doc = model.model_json_schema(ref_template="#/components/schemas/{model}")
                    components.update(doc.pop("$defs", {}))
                    components[model.__name__] = doc
                app.openapi_schema = schema
            return app.openapi_schema

        app.openapi = openapi
        return app

    def _info(self, s: ServedModel) -> dict:
        m = s.model
        c, h, w = m.image_shape
        factors = []
        for f in m.card.factors if m.card else []:
            lo, hi = f.value_range
            factors.append({"name": f.name, "kind": f.kind, "dimensions": list(f.dims), "min": lo, "max": hi,
                            "values": list(f.values), "labels": list(f.labels), "calibrated": f.calibrated})
        b = s.encoder
        return {
            "model": _ref(s), "versions": self.engine.repository.versions(s.name),
            "channels": c, "height": h, "width": w, "latent_dim": m.latent_dim, "factors": factors,
            "metrics": {k: float(v) for k, v in m.manifest.metrics.items()}, "runtime": m.runtime_name,
            "batching": {"max_batch_size": b.max_batch_size, "max_queue_delay_ms": b.max_queue_delay_s * 1e3,
                         "max_queue_size": b.max_queue_size, "enabled": b.enabled},
            "max_request_items": self.engine.max_request_items,
            "oip_models": [oip.oip_name(s, g) for g in oip.GRAPH_SUFFIXES],
        }

    async def _infer(self, request: Request, s: ServedModel, graph: str) -> Response:
        """OIP REST infer: JSON tensors, or the binary tensor data extension, in and out."""
        raw = await self._body(request)
        header_len = request.headers.get(HEADER_LENGTH.lower())
        if header_len is not None:
            try:
                n = int(header_len)
            except ValueError:
                raise InvalidArgument(f"{HEADER_LENGTH}: {header_len!r} is not an integer") from None
            if not 0 <= n <= len(raw):
                raise InvalidArgument(f"{HEADER_LENGTH}={n} is outside the body's {len(raw)} bytes")
            head, blob = raw[:n], raw[n:]
        else:
            head, blob = raw, b""
        body = self._parse(InferBody, head)
        inputs: dict[str, np.ndarray] = {}
        offset = 0
        for t in body.inputs:
            what = f"input {t.name!r}"
            if t.name in inputs:
                raise InvalidArgument(f"{what} is given twice")
            size = t.parameters.get("binary_data_size")
            if size is not None:
                if not isinstance(size, int) or size < 0 or offset + size > len(blob):
                    raise InvalidArgument(f"{what}: binary_data_size={size!r} runs past the body's binary part")
                inputs[t.name] = oip.array_from_bytes(blob[offset: offset + size], t.datatype, t.shape, what)
                offset += size
            elif t.data is not None:
                inputs[t.name] = oip.array_from_values(t.data, t.datatype, t.shape, what)
            else:
                raise InvalidArgument(f"{what}: no data; give data or parameters.binary_data_size")
        if offset != len(blob):
            raise InvalidArgument(f"the binary part has {len(blob) - offset} bytes no input claims")
        requested = [o.name for o in body.outputs] if body.outputs else []
        outputs = await oip.infer(self.engine, s, graph, inputs, requested, current_deadline())
        binary_all = bool(body.parameters.get("binary_data_output", False))
        wants_binary = {o.name: bool(o.parameters.get("binary_data", binary_all)) for o in body.outputs or []}
        doc_outputs, blobs = [], []
        for name, a in outputs.items():
            entry: dict[str, Any] = {"name": name, "datatype": oip.datatype_of(a), "shape": list(a.shape)}
            if wants_binary.get(name, binary_all):
                data = a.tobytes()
                entry["parameters"] = {"binary_data_size": len(data)}
                blobs.append(data)
            else:
                entry["data"] = a.reshape(-1).tolist()
            doc_outputs.append(entry)
        doc: dict[str, Any] = {"model_name": oip.oip_name(s, graph), "model_version": s.version,
                               "outputs": doc_outputs}
        if body.id:
            doc["id"] = body.id
        text = json.dumps(doc).encode()
        if not blobs:
            return Response(text, media_type=JSON_TYPE)
        return Response(text + b"".join(blobs), media_type="application/octet-stream",
                        headers={HEADER_LENGTH: str(len(text))})


def _ref(s: ServedModel) -> dict:
    return {"name": s.name, "version": s.version}


class UnsupportedMediaType(InvalidArgument):
    """A body whose Content-Type the route does not read (HTTP 415)."""


#: the core's error kinds as HTTP statuses (google.rpc.Code's mapping)
HTTP_STATUSES: dict[ErrorKind, int] = {
    ErrorKind.INVALID_ARGUMENT: 400, ErrorKind.NOT_FOUND: 404, ErrorKind.FAILED_PRECONDITION: 400,
    ErrorKind.RESOURCE_EXHAUSTED: 429, ErrorKind.UNAUTHENTICATED: 401, ErrorKind.DEADLINE_EXCEEDED: 504,
    ErrorKind.UNAVAILABLE: 503, ErrorKind.INTERNAL: 500, ErrorKind.CANCELLED: 499,
}


def http_status(e: ServiceError) -> int:
    """The HTTP status of a core error: by its kind, finer for a body too large (413) or of the wrong type (415)."""
    if isinstance(e, PayloadTooLarge):
        return 413
    if isinstance(e, UnsupportedMediaType):
        return 415
    return HTTP_STATUSES[e.kind]


def error_response(e: ServiceError, rid: str) -> JSONResponse:
    """The JSON error body every HTTP route answers with (a 429 says when to retry: ``Retry-After``)."""
    status = http_status(e)
    headers = {"x-request-id": rid}
    if status == 429:
        headers["retry-after"] = str(getattr(e, "retry_after_s", 1))
    if status == 401:
        headers["www-authenticate"] = "Bearer"
    return JSONResponse({"error": e.message, "code": e.kind.name, "request_id": rid}, status_code=status,
                        headers=headers)


def _swagger_dir() -> str:
    """Swagger UI's files from the swagger-ui-bundle package, served locally (no CDN)."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError as e:  # the serve extra installs it
        raise NotFound("swagger-ui-bundle is not installed; pip install 'latentdial[serve]'") from e
    return str(swagger_ui_path)

