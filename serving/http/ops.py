"""Operations routes: ``/metrics`` (Prometheus text, behind the token: counts and names are data too)
and ``/healthz`` (200 when ready, 503 while loading, draining or with nothing servable)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from latentdial.serving.engine import new_request_id
from latentdial.serving.errors import ServiceError
from latentdial.serving.http.call import HttpCall
from latentdial.serving.http.errors import error_response


def add_routes(app: FastAPI, call: HttpCall) -> None:
    engine = call.engine

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        try:
            call.check_token(request)
        except ServiceError as e:
            return error_response(e, new_request_id(request.headers.get("x-request-id")))
        return PlainTextResponse(engine.metrics.text(), media_type="text/plain; version=0.0.4")

    @app.get("/healthz", tags=["health"], summary="200 when ready, 503 while loading, draining or with nothing servable")
    async def healthz():
        ok = engine.ready
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)
