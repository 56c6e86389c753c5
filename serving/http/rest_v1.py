"""REST mirrors of the latentdial v1 calls (``/v1/...``): one route per domain call.

A body is ``image/png`` (parameters in the query) or JSON (:mod:`.bodies`); the answer is JSON, or
a PNG with ``?format=png`` / ``Accept: image/png``. Each route reads its body into the core's
typed request (:mod:`latentdial.serving.requests`), calls the data plane and writes the result.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from latentdial.serving import codec
from latentdial.serving.dataplane import factor_values
from latentdial.serving.edits import CheckedEdit, check_edit_count, check_traversal
from latentdial.serving.engine import ServedModel
from latentdial.serving.errors import InvalidArgument
from latentdial.serving.http.bodies import (
    DecodeBody,
    EditBody,
    EncodeBody,
    GenerateBody,
    ReconstructBody,
    SourceBody,
    TraverseBody,
)
from latentdial.serving.http.call import JSON_TYPE, PNG_TYPE, HttpCall, content_type
from latentdial.serving.http.errors import UnsupportedMediaType
from latentdial.serving.http.media import (
    decoded_response,
    grid_png,
    png_response,
    pngs,
    ref_json,
    wants_png,
)
from latentdial.serving.requests import (
    DEFAULT_TRAVERSE_STEPS,
    MAX_SEED,
    EditRequest,
    EncodeRequest,
    GenerateRequest,
    ModelRef,
    ReconstructRequest,
    SamplesRequest,
    Source,
    TraverseRequest,
    edit_from,
    edit_of,
    finite,
    pin_from,
)
from latentdial.serving.results import ModelInfo, ModelSummary


# ------------------------------------------------------------------ reading
def _latents(call: HttpCall, s: ServedModel, rows: list[list[float]]) -> np.ndarray:
    try:
        a = np.asarray(rows, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise InvalidArgument(f"latents: not a regular (N, D) array of numbers ({e})") from None
    return codec.latents_from_array(a, s.model.latent_dim, call.engine.max_request_items)


def _source(call: HttpCall, s: ServedModel, body: SourceBody) -> Source:
    given = [k for k in ("images", "pixels", "latents") if getattr(body, k) is not None]
    if len(given) != 1:
        raise InvalidArgument(f"give exactly one of images (base64 PNGs), pixels or latents; got {given}")
    limit = call.engine.max_request_items
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
    return Source(latents=_latents(call, s, body.latents))


async def _images_body(call: HttpCall, request: Request, s: ServedModel,
                       body_model: type[BaseModel]) -> tuple[Any, Source]:
    """Read a body that carries images (PNG or JSON) or latents -> (parsed JSON body or None, Source)."""
    raw = call.body(request)
    ctype = content_type(request)
    if ctype == PNG_TYPE:
        return None, Source(images=codec.images_from_pngs([raw], s.model.image_shape, call.engine.max_request_items))
    if ctype not in ("", JSON_TYPE):
        raise UnsupportedMediaType(f"Content-Type {ctype!r} is not read here; send {PNG_TYPE} or {JSON_TYPE}")
    body = call.parse(body_model, raw, request)
    return body, _source(call, s, body)


async def _images_to_encode(call: HttpCall, request: Request, s: ServedModel, body_model: type[EncodeBody],
                            what: str) -> tuple[np.ndarray, bool, int]:
    """Images, ``sample`` and ``seed`` of Encode or Reconstruct, from a JSON body or a PNG and its query."""
    body, source = await _images_body(call, request, s, body_model)
    if source.images is None:
        raise InvalidArgument(f"{what} takes images or pixels, not latents")
    if body is None:
        return source.images, _bool_query(request, "sample"), _int_query(request, "seed", 0)
    return source.images, body.sample, body.seed


async def _json_body(call: HttpCall, request: Request, body_model: type[BaseModel], what: str) -> Any:
    raw = call.body(request)
    if raw.strip() and content_type(request) not in ("", JSON_TYPE):  # an empty body is no media at all
        raise UnsupportedMediaType(f"{what} reads {JSON_TYPE}")
    return call.parse(body_model, raw, request)


def _edits_from_query(request: Request) -> list[CheckedEdit]:
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
            try:  # isdigit() also passes digits int() refuses ("²") and more than int() reads (4,300)
                factor, dim = (None, int(name)) if name.isdigit() else (name, None)
            except ValueError:
                raise InvalidArgument(f"{key}: {name[:40]!r} is not a latent dimension") from None
            try:
                number = float(text)
            except ValueError:
                if op != "set_value":
                    raise InvalidArgument(f"{what}: {text!r} is not a number") from None
                edits.append(edit_of(factor, dim, {"set_label": text}, what))
                continue
            edits.append(edit_of(factor, dim, {op: number}, what))
    return edits


def _float_query(request: Request, name: str, default: float | None) -> float | None:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        return finite(float(text), name)
    except ValueError:
        raise InvalidArgument(f"{name}={text[:40]!r} is not a number") from None


def _int_query(request: Request, name: str, default: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise InvalidArgument(f"{name}={text[:40]!r} is not an integer") from None


def _bool_query(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").lower() in ("1", "true", "yes", "on")


def _traverse_from_query(request: Request, source: Source) -> TraverseRequest:
    q = request.query_params
    steps, dims_text, factors = _int_query(request, "steps", DEFAULT_TRAVERSE_STEPS), q.getlist("dimensions"), \
        q.getlist("factors")
    check_traversal(len(dims_text), len(factors), steps)  # sizes before converting anything
    try:
        dims = [int(d) for d in dims_text]
    except ValueError:
        raise InvalidArgument("dimensions: give integers") from None
    return TraverseRequest(source, dims, factors, _float_query(request, "start", None),
                           _float_query(request, "stop", None), steps)


# ------------------------------------------------------------------ writing
def summary_json(m: ModelSummary) -> dict:
    return {"name": m.name, "versions": m.versions, "latest_version": m.latest_version, "is_default": m.is_default,
            "default_version": m.default_version, "oip_models": m.oip_models, "kind": m.kind,
            "version_status": [{"version": v.version, "state": v.state, "reason": v.reason} for v in m.version_states]}


def info_json(info: ModelInfo) -> dict:
    b = info.batching
    return {
        "model": ref_json(info.model), "versions": info.versions, "kind": info.kind,
        "version_status": [{"version": v.version, "state": v.state, "reason": v.reason} for v in info.version_states],
        "channels": info.channels, "height": info.height, "width": info.width, "latent_dim": info.latent_dim,
        "factors": [{"name": f.name, "kind": f.kind, "dimensions": f.dims, "min": f.min_value, "max": f.max_value,
                     "values": f.values, "labels": f.labels, "calibrated": f.calibrated} for f in info.factors],
        "metrics": info.metrics, "runtime": info.runtime,
        "batching": {"max_batch_size": b.max_batch_size, "max_queue_delay_ms": b.max_queue_delay_ms,
                     "max_queue_size": b.max_queue_size, "enabled": b.enabled},
        "provenance": info.provenance, "max_request_items": info.max_request_items, "oip_models": info.oip_models,
    }


def _body_doc(model: type[BaseModel], png: str) -> dict:
    return {"requestBody": {"required": True, "content": {
        JSON_TYPE: {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}},
        PNG_TYPE: {"schema": {"type": "string", "format": "binary"}, "description": png},
    }}}


# ------------------------------------------------------------------- routes
def add_routes(app: FastAPI, call: HttpCall) -> None:
    """The ``/v1`` routes, one closure per route, each next to its path."""
    plane = call.plane

    @app.get("/v1/models", tags=["v1"], summary="served models and versions (ListModels)")
    async def list_models(request: Request):
        async def go():
            return JSONResponse({"models": [summary_json(m) for m in plane.list_models()]})
        return await call.run(request, "http.list_models", go)

    @app.get("/v1/models/{model}", tags=["v1"], summary="shapes, factors, metrics, runtime (GetModelInfo)")
    async def model_info(request: Request, model: str, version: str = ""):
        async def go():
            return JSONResponse(info_json(plane.model_info(ModelRef(model, version))))
        return await call.run(request, "http.model_info", go)

    @app.post("/v1/models/{model}/encode", tags=["v1"], summary="images -> posterior (Encode)",
              openapi_extra=_body_doc(EncodeBody, "one PNG; ?sample=true&seed=N"))
    async def encode(request: Request, model: str, version: str = ""):
        async def go():
            s = call.served(request, model, "Encode")
            images, sample, seed = await _images_to_encode(call, request, s, EncodeBody, "encode")
            r = await plane.encode(s, EncodeRequest(images, sample, seed, factor_values=True))
            out = {"model": ref_json(r.model), "mean": r.mean.tolist(), "log_var": r.log_var.tolist(),
                   "factors": r.factors}
            if r.sample is not None:
                out["sample"] = r.sample.tolist()
            return JSONResponse(out)
        return await call.run(request, "http.encode", go)

    @app.post("/v1/models/{model}/decode", tags=["v1"], summary="latents -> images (Decode)",
              openapi_extra=_body_doc(DecodeBody, "not accepted: send JSON latents"))
    async def decode(request: Request, model: str, version: str = ""):
        async def go():
            s = call.served(request, model, "Decode")
            body = await _json_body(call, request, DecodeBody, "decode")
            return decoded_response(request, await plane.decode(s, _latents(call, s, body.latents)))
        return await call.run(request, "http.decode", go)

    @app.post("/v1/models/{model}/reconstruct", tags=["v1"], summary="images -> latents -> images (Reconstruct)",
              openapi_extra=_body_doc(ReconstructBody, "one PNG; ?sample=true&seed=N"))
    async def reconstruct(request: Request, model: str, version: str = ""):
        async def go():
            s = call.served(request, model, "Reconstruct")
            r = ReconstructRequest(*await _images_to_encode(call, request, s, ReconstructBody, "reconstruct"))
            return decoded_response(request, await plane.reconstruct(s, r))
        return await call.run(request, "http.reconstruct", go)

    @app.post("/v1/models/{model}/traverse", tags=["v1"], summary="sweep factors or dimensions (Traverse)",
              openapi_extra=_body_doc(TraverseBody, "one PNG; ?factors=a&factors=b or ?dimensions=0&steps=8"))
    async def traverse(request: Request, model: str, version: str = ""):
        async def go():
            s = call.served(request, model, "Traverse")
            body, source = await _images_body(call, request, s, TraverseBody)
            r = _traverse_from_query(request, source) if body is None else TraverseRequest(
                source, body.dimensions, body.factors, body.start, body.stop, body.steps)
            t = await plane.traverse(s, r)
            if wants_png(request):
                return png_response(grid_png(t.images, t.num_sources * len(t.plan.targets), t.steps))
            return JSONResponse({"model": ref_json(t.model), "images": pngs(t.images), "num_sources": t.num_sources,
                                 "targets": t.plan.targets, "steps": t.steps, "values": t.plan.values.tolist()})
        return await call.run(request, "http.traverse", go)

    @app.post("/v1/models/{model}/edit", tags=["v1"], summary="set or shift factors (EditAttributes)",
              openapi_extra=_body_doc(EditBody, "one PNG; ?set=scale=0.8&set=shape=heart&shift=pos_x=0.2"))
    async def edit(request: Request, model: str, version: str = ""):
        async def go():
            s = call.served(request, model, "EditAttributes")
            body, source = await _images_body(call, request, s, EditBody)
            edits = (_edits_from_query(request) if body is None
                     else [edit_from(e, f"edits[{i}]") for i, e in enumerate(body.edits)])
            d = await plane.edit(s, EditRequest(source, edits))
            if wants_png(request):
                return decoded_response(request, d)
            # each named factor's value in the edited latents (an editor's target codes): where the page's dials stand
            return JSONResponse({"model": ref_json(d.model), "latents": d.latents.tolist(), "images": pngs(d.images),
                                 "factors": factor_values(s, d.latents)})
        return await call.run(request, "http.edit", go)

    @app.post("/v1/models/{model}/generate", tags=["v1"], summary="seeded prior samples (Generate)",
              openapi_extra=_body_doc(GenerateBody, "not accepted: send JSON"))
    async def generate(request: Request, model: str, version: str = ""):
        async def go():
            s = call.served(request, model, "Generate")
            body = await _json_body(call, request, GenerateBody, "generate")
            pins = [pin_from(p, f"pins[{i}]") for i, p in enumerate(body.pins)]
            r = GenerateRequest(body.count, body.seed, finite(body.temperature, "temperature"), pins)
            return decoded_response(request, await plane.generate(s, r))
        return await call.run(request, "http.generate", go)

    @app.get("/v1/models/{model}/samples", tags=["v1"],
             summary="images from the model's own ground-truth dataset (for the page)")
    async def samples(request: Request, model: str, version: str = "", count: int = 1,
                      seed: int = Query(0, ge=0, le=MAX_SEED)):
        async def go():
            x = await plane.samples(call.served(request, model, "Samples"), SamplesRequest(count, seed))
            if wants_png(request):
                return png_response(grid_png(x.images, 1, len(x.images)))
            return JSONResponse({"model": ref_json(x.model), "images": pngs(x.images)})
        return await call.run(request, "http.samples", go)
