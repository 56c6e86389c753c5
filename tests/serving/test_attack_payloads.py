"""Hostile payloads on both doors: malformed PNGs, PNG headers and tensor shapes that declare huge
sizes, nesting 100,000 deep (JSON arrays on HTTP, protobuf groups on gRPC), empty bodies. Each is
sent to the toy VAE and to the editor ``ed`` (two-input graphs, edits on images only).

Each gets a client error (HTTP 4xx with a JSON error, gRPC INVALID_ARGUMENT) that says what is
wrong; the server's resident set rises by less than :data:`MAX_RSS_GROWTH_MIB` over all of them
(a decoder that trusted a header would allocate 4 GiB for one 2^31 x 2^31 grey PNG), and the next
well-formed request on each door is answered.
"""

from __future__ import annotations

import io
import json

import grpc
import httpx
import numpy as np
import pytest
from fixtures.attack import BenignClient, RssWatch
from fixtures.png import png_declaring
from PIL import Image

from latentdial.inference import grpc_service_pb2 as oip_pb
from latentdial.inference import grpc_service_pb2_grpc as oip_grpc
from latentdial.v1 import latentdial_pb2 as pb
from latentdial.v1 import latentdial_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

#: The most the server's resident set may rise over every payload of a test.
MAX_RSS_GROWTH_MIB = 64.0
DEEP_JSON = b"[" * 100_000 + b"]" * 100_000
#: 100,000 nested groups of an unknown field: protobuf gives up at its recursion limit
DEEP_PROTOBUF = b"\x0b" * 100_000 + b"\x0c" * 100_000


def _png(side: int = 8) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.zeros((side, side), np.uint8)).save(out, format="PNG")
    return out.getvalue()


BAD_PNGS = {
    "declares 30000 x 30000": png_declaring(30_000, 30_000),
    "declares 2^31-1 x 2^31-1": png_declaring(2**31 - 1, 2**31 - 1),
    "declares 1 x 10^8": png_declaring(1, 10**8),
    "truncated": _png()[:40],
    "magic then noise": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
    "not a PNG": b"GIF89a" + bytes(64),
    "64 x 64, not the model's 8 x 8": _png(64),
}
IMAGE_ROUTES = ["encode", "reconstruct", "edit", "traverse"]
JSON_ROUTES = ["/v1/models/toy/encode", "/v1/models/toy/decode", "/v1/models/toy/reconstruct",
               "/v1/models/toy/traverse", "/v1/models/toy/edit", "/v1/models/toy/generate",
               "/v2/models/toy.decoder/infer"]
#: The editor's routes that read a body: its one domain call and its graphs on OIP.
EDITOR_JSON_ROUTES = ["/v1/models/ed/edit", "/v2/models/ed.editor/infer", "/v2/models/ed.classifier/infer"]
#: What is a bad image for the editor (64 x 64 grey, so the toy's wrong size is its right one).
EDITOR_BAD_PNGS = {**{k: v for k, v in BAD_PNGS.items() if not k.startswith("64 x 64")},
                   "8 x 8, not the editor's 64 x 64": _png(8)}
HUGE = 2**62


def _oip_input(shape: list[int], **kw) -> dict:
    return {"inputs": [{"name": "latents", "shape": shape, "datatype": "FP32", **kw}]}


def http_attacks() -> list[tuple[str, str, str, bytes]]:
    """(what, route, content type, body)."""
    out = [(f"PNG {what} to {route}", f"/v1/models/toy/{route}", "image/png", blob)
           for what, blob in BAD_PNGS.items() for route in IMAGE_ROUTES]
    out += [(f"PNG {what} to the editor", "/v1/models/ed/edit?set=scale=0.5", "image/png", blob)
            for what, blob in EDITOR_BAD_PNGS.items()]
    for route in JSON_ROUTES + EDITOR_JSON_ROUTES:
        out += [
            ("JSON nested 100,000 deep", route, "application/json", DEEP_JSON),
            ("latents nested 100,000 deep", route, "application/json", b'{"latents": ' + DEEP_JSON + b"}"),
            ("pixels nested 100,000 deep", route, "application/json", b'{"pixels": ' + DEEP_JSON + b"}"),
            ("OIP data nested 100,000 deep", route, "application/json",
             b'{"inputs": [{"name": "latents", "shape": [1, 4], "datatype": "FP32", "data": ' + DEEP_JSON + b"}]}"),
        ]
    infer = "/v2/models/toy.decoder/infer"
    for shape in ([HUGE, HUGE], [2**31 - 1] * 8, [1] * 9, [-1, 4], [0, 4]):
        out.append((f"OIP shape {shape[:3]}", infer, "application/json", json.dumps(_oip_input(shape, data=[0.0] * 4)).encode()))
    head = json.dumps(_oip_input([HUGE, 4], parameters={"binary_data_size": 16})).encode()
    out.append(("OIP binary shape 2^62 x 4", infer, "application/octet-stream", head + bytes(16)))
    codes = {"name": "codes", "shape": [1, 6], "datatype": "FP32", "data": [0.0] * 6}
    for shape in ([HUGE, HUGE], [2**31 - 1] * 8, [1] * 9, [-1, 64, 64, 1], [0, 64, 64, 1]):
        body = {"inputs": [{"name": "images", "shape": shape, "datatype": "FP32", "data": [0.0] * 4}, codes]}
        out.append((f"OIP editor images shape {shape[:3]}", "/v2/models/ed.editor/infer", "application/json",
                    json.dumps(body).encode()))
    out.append(("ragged pixels", "/v1/models/toy/encode", "application/json",
                b'{"pixels": [[[[0]]], ' + b"[[[0, 0]]], " * 1000 + b"[[[0]]]]}"))
    return out


def test_hostile_http_payloads_get_a_client_error_and_cost_no_memory(served):
    attacks = http_attacks()
    with RssWatch(served.pid) as rss, httpx.Client(base_url=served.http_url, timeout=30) as http:
        for what, route, ctype, body in attacks:
            extra = {"Inference-Header-Content-Length": str(len(body) - 16)} if ctype == "application/octet-stream" else {}
            r = http.post(route, content=body, headers={"Content-Type": ctype, **extra})
            assert r.status_code in (400, 413, 415), (what, route, r.status_code, r.text[:300])
            assert r.json()["error"] and r.json()["code"] in ("INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"), (what, r.text)
        # the editor's attacks failed on what was wrong in them: the same route edits a good image
        good = http.post("/v1/models/ed/edit?set=scale=0.5", content=_png(64), headers={"Content-Type": "image/png"})
        assert good.status_code == 200, good.text[:300]
    print(f"\n{len(attacks)} hostile HTTP payloads: {rss}")
    served.assert_alive()
    assert rss.growth < MAX_RSS_GROWTH_MIB, str(rss)
    with BenignClient(served.address, served.http_url) as benign:
        assert set(benign.measure(3)["http"].outcomes) == {200}


def _tensor(shape: list[int], raw: bytes = bytes(16)) -> pb.Tensor:
    return pb.Tensor(dtype=pb.DATA_TYPE_FLOAT32, shape=shape, raw=raw)


def grpc_attacks(v1: pb_grpc.LatentDialStub, oip: oip_grpc.GRPCInferenceServiceStub) -> dict:
    """what -> a call that must fail with INVALID_ARGUMENT."""
    Input = oip_pb.ModelInferRequest.InferInputTensor
    out = {f"PNG {what}": (lambda blob=blob: v1.Encode(pb.EncodeRequest(images=pb.ImageBatch(
        png=pb.PngImages(images=[blob]))), timeout=30)) for what, blob in BAD_PNGS.items()}
    for shape in ([HUGE, HUGE], [2**31 - 1] * 8, [1] * 9, [0, 4]):
        out[f"v1 latents shape {shape[:3]}"] = lambda shape=shape: v1.Decode(
            pb.DecodeRequest(latents=_tensor(shape)), timeout=30)
        out[f"v1 images shape {shape[:3]}"] = lambda shape=shape: v1.Encode(
            pb.EncodeRequest(images=pb.ImageBatch(tensor=_tensor(shape))), timeout=30)
        out[f"OIP raw shape {shape[:3]}"] = lambda shape=shape: oip.ModelInfer(oip_pb.ModelInferRequest(
            model_name="toy.decoder", inputs=[Input(name="latents", datatype="FP32", shape=shape)],
            raw_input_contents=[bytes(16)]), timeout=30)
        out[f"OIP contents shape {shape[:3]}"] = lambda shape=shape: oip.ModelInfer(oip_pb.ModelInferRequest(
            model_name="toy.decoder", inputs=[Input(name="latents", datatype="FP32", shape=shape,
                                                   contents=oip_pb.InferTensorContents(fp32_contents=[0.0] * 4))]),
            timeout=30)
        out[f"editor images shape {shape[:3]}"] = lambda shape=shape: v1.EditAttributes(pb.EditAttributesRequest(
            model=pb.ModelRef(name="ed"), images=pb.ImageBatch(tensor=_tensor(shape)),
            edits=[pb.FactorEdit(factor="scale", set_value=0.5)]), timeout=30)
        out[f"OIP editor raw shape {shape[:3]}"] = lambda shape=shape: oip.ModelInfer(oip_pb.ModelInferRequest(
            model_name="ed.editor", inputs=[Input(name="images", datatype="FP32", shape=shape),
                                            Input(name="codes", datatype="FP32", shape=[1, 6])],
            raw_input_contents=[bytes(16), bytes(24)]), timeout=30)
    for what, blob in EDITOR_BAD_PNGS.items():
        out[f"editor PNG {what}"] = lambda blob=blob: v1.EditAttributes(pb.EditAttributesRequest(
            model=pb.ModelRef(name="ed"), images=pb.ImageBatch(png=pb.PngImages(images=[blob])),
            edits=[pb.FactorEdit(factor="scale", set_value=0.5)]), timeout=30)
    return out


def test_hostile_grpc_payloads_get_invalid_argument_and_cost_no_memory(served):
    with grpc.insecure_channel(served.address) as ch:
        v1, oip = pb_grpc.LatentDialStub(ch), oip_grpc.GRPCInferenceServiceStub(ch)
        attacks = grpc_attacks(v1, oip)
        for path in ("/latentdial.v1.LatentDial/Encode", "/inference.GRPCInferenceService/ModelInfer"):
            raw = ch.unary_unary(path, request_serializer=None, response_deserializer=None)
            attacks[f"{path}: 100,000 nested groups"] = lambda raw=raw: raw(DEEP_PROTOBUF, timeout=30)
        with RssWatch(served.pid) as rss:
            for what, call in attacks.items():
                with pytest.raises(grpc.RpcError) as info:
                    call()
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (what, info.value.code(),
                                                                               info.value.details())
                assert info.value.details(), what
        v1.EditAttributes(pb.EditAttributesRequest(  # the same editor call on a good image is answered
            model=pb.ModelRef(name="ed"), images=pb.ImageBatch(png=pb.PngImages(images=[_png(64)])),
            edits=[pb.FactorEdit(factor="scale", set_value=0.5)]), timeout=30)
    print(f"\n{len(attacks)} hostile gRPC payloads: {rss}")
    served.assert_alive()
    assert rss.growth < MAX_RSS_GROWTH_MIB, str(rss)
    with BenignClient(served.address, served.http_url) as benign:
        assert set(benign.measure(3)["grpc"].outcomes) == {"OK"}


def test_an_empty_body_where_one_is_required_is_a_client_error(served):
    required = {"/v1/models/toy/decode": "DecodeBody: latents: Field required",
                "/v2/models/toy.decoder/infer": "InferBody: inputs: Field required"}
    with httpx.Client(base_url=served.http_url, timeout=30) as http:
        for route, says in required.items():
            for ctype in ("application/json", "image/png", None):
                r = http.post(route, content=b"", headers={"Content-Type": ctype} if ctype else {})
                assert r.status_code == 400 and r.json()["code"] == "INVALID_ARGUMENT", (route, ctype, r.text)
                assert r.json()["error"] == f"the body is empty, not a valid {says}", (route, ctype)
        # a body whose every field has a default reads an empty one as {}
        r = http.post("/v1/models/toy/generate", content=b"", headers={"Content-Type": "application/json"})
        assert r.status_code == 200, r.text


#: seeds no door may take: gRPC's is uint64, so HTTP's is 0..2**64 - 1 too
BAD_SEEDS = (-1, 2**64, 10**30)


def test_a_seed_outside_uint64_is_a_client_error_on_every_http_route_that_takes_one(served):
    pixels = np.zeros((1, 8, 8, 1), np.uint8).tolist()
    with httpx.Client(base_url=served.http_url, timeout=30) as http:
        for seed in BAD_SEEDS:
            sent = [("generate", http.post("/v1/models/toy/generate", json={"seed": seed})),
                    ("samples", http.get(f"/v1/models/toy/samples?seed={seed}"))]
            for route in ("encode", "reconstruct"):
                sent.append((route, http.post(f"/v1/models/toy/{route}", json={
                    "pixels": pixels, "dtype": "uint8", "sample": True, "seed": seed})))
                sent.append((f"{route} (PNG)", http.post(f"/v1/models/toy/{route}?sample=true&seed={seed}",
                                                         content=_png(), headers={"Content-Type": "image/png"})))
            for route, r in sent:
                assert r.status_code == 400 and r.json()["code"] == "INVALID_ARGUMENT", (route, seed, r.text)
                assert "seed" in r.json()["error"], (route, seed, r.text)
        for route in ("generate", "encode", "reconstruct"):
            r = http.post(f"/v1/models/toy/{route}", json={"pixels": pixels, "dtype": "uint8", "sample": True,
                                                           "seed": 2**64 - 1})
            assert r.status_code == 200, (route, r.text)
        schemas = http.get("/openapi.json").json()["components"]["schemas"]
        for body in ("EncodeBody", "ReconstructBody", "GenerateBody"):
            seed = schemas[body]["properties"]["seed"]
            assert (seed["minimum"], seed["maximum"]) == (0, 2**64 - 1), body


def test_a_sweep_bound_outside_float32_is_a_client_error_on_both_doors(served):
    # found by probing every number of the HTTP bodies: the sweep's values went out as inf, and JSON has none
    with httpx.Client(base_url=served.http_url, timeout=30) as http:
        for body in (b'{"latents": [[0, 0, 0, 0]], "start": 1e400}', b'{"latents": [[0, 0, 0, 0]], "stop": -1e400}',
                     b'{"latents": [[0, 0, 0, 0]], "start": -1e308, "stop": 1e308}'):
            r = http.post("/v1/models/toy/traverse", content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 400 and "outside float32's range" in r.json()["error"], (body, r.text)
    z = np.zeros((1, 4), np.float32)
    with grpc.insecure_channel(served.address) as ch:
        request = pb.TraverseRequest(latents=pb.Tensor(dtype=pb.DATA_TYPE_FLOAT32, shape=z.shape, raw=z.tobytes()),
                                     start=float("inf"), stop=1.0)
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.LatentDialStub(ch).Traverse(request, timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "start" in info.value.details()


def test_query_numbers_too_long_or_odd_for_int_are_client_errors_that_do_not_echo_them(served):
    digits = "9" * 5000  # more than int() reads from text
    with httpx.Client(base_url=served.http_url, timeout=30) as http:
        for query in (f"edit?latent={digits}=1", "edit?latent=\u00b2=1", f"traverse?steps={digits}",
                      f"encode?sample=true&seed={digits}", f"traverse?dimensions={digits}"):
            r = http.post(f"/v1/models/toy/{query}", content=_png(), headers={"Content-Type": "image/png"})
            assert r.status_code == 400 and r.json()["code"] == "INVALID_ARGUMENT", (query[:30], r.text[:200])
            assert len(r.json()["error"]) < 200, (query[:30], r.text[:200])
