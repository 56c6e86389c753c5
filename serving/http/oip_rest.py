"""The Open Inference Protocol v2 REST binding (``/v2/...``): health, metadata, readiness, infer.

JSON tensors, or the binary tensor data extension (``Inference-Header-Content-Length``), in and
out. The protocol's semantics (model names, tensors, the infer call) are :mod:`latentdial.serving.oip`,
shared with the gRPC binding; this module only reads and writes the REST wire.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from latentdial.serving import oip
from latentdial.serving.engine import ServedModel
from latentdial.serving.errors import InvalidArgument
from latentdial.serving.http.bodies import InferBody
from latentdial.serving.http.call import HEADER_LENGTH, JSON_TYPE, HttpCall


def _split(raw: bytes, header_len: str | None) -> tuple[bytes, bytes]:
    """The JSON head and the binary part of a body (no header: all JSON)."""
    if header_len is None:
        return raw, b""
    try:
        n = int(header_len)
    except ValueError:
        raise InvalidArgument(f"{HEADER_LENGTH}: {header_len!r} is not an integer") from None
    if not 0 <= n <= len(raw):
        raise InvalidArgument(f"{HEADER_LENGTH}={n} is outside the body's {len(raw)} bytes")
    return raw[:n], raw[n:]


def _inputs(body: InferBody, blob: bytes) -> dict[str, np.ndarray]:
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
    return inputs


def _answer(body: InferBody, s: ServedModel, graph: str, outputs: dict[str, np.ndarray]) -> Response:
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
    doc: dict[str, Any] = {"model_name": oip.oip_name(s, graph), "model_version": s.version, "outputs": doc_outputs}
    if body.id:
        doc["id"] = body.id
    text = json.dumps(doc).encode()
    if not blobs:
        return Response(text, media_type=JSON_TYPE)
    return Response(text + b"".join(blobs), media_type="application/octet-stream",
                    headers={HEADER_LENGTH: str(len(text))})


async def _infer(call: HttpCall, request: Request, s: ServedModel, graph: str) -> Response:
    """OIP REST infer: JSON tensors, or the binary tensor data extension, in and out."""
    head, blob = _split(call.body(request), request.headers.get(HEADER_LENGTH.lower()))
    body = call.parse(InferBody, head, request)
    requested = [o.name for o in body.outputs] if body.outputs else []
    outputs = await oip.infer(call.engine, s, graph, _inputs(body, blob), requested)
    return _answer(body, s, graph, outputs)


def add_routes(app: FastAPI, call: HttpCall) -> None:
    """The ``/v2`` routes."""
    engine = call.engine

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
        return await call.run(request, "http.oip.server_metadata", go)

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
        return await call.run(request, "http.oip.model_metadata", go)

    async def model_ready(request: Request, model: str, version: str = ""):
        async def go():
            oip.resolve(engine, model, version)
            return JSONResponse({"name": model, "ready": engine.ready})
        return await call.run(request, "http.oip.model_ready", go)

    async def infer(request: Request, model: str, version: str = ""):
        async def go():
            s, graph = oip.resolve(engine, model, version)
            return await _infer(call, request, s, graph)
        return await call.run(request, "http.oip.infer", go)

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
