"""The HTTP front door with httpx against a real server: every REST route, every error class, bad input, docs, drain."""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time

import httpx
import numpy as np
import pytest
from fixtures.server import ServerThread, make_config
from fixtures.toy_model import build_toy_model
from PIL import Image

from latentdial.client import Client, Edit, Pin, latents

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """toy/2 and toy/10 (default, with card), plain/1 (no card); max_request_items=64, 1 MiB bodies."""
    root = tmp_path_factory.mktemp("http")
    build_toy_model(root, "toy", "2", seed=2)
    model = build_toy_model(root, "toy", "10", seed=10)
    build_toy_model(root, "plain", "1", with_card=False, seed=5)
    (root / "default").write_text("toy\n")
    with ServerThread(make_config(root, max_request_items=64, max_message_mb=1)) as server, \
            httpx.Client(base_url=server.http_url, timeout=10) as http, Client(server.address) as c:
        yield server, http, c, model


def png(img_hw1_u8: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img_hw1_u8[:, :, 0]).save(buf, format="PNG")
    return buf.getvalue()


def u8_images(n: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)


def from_png(blob: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(blob)))


def error_of(r: httpx.Response, status: int, pattern: str) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert re.search(pattern, body["error"]), body
    return body


# ------------------------------------------------------------------ v1 mirrors --
def test_list_models_and_model_info_mirror_the_grpc_calls(served):
    _, http, c, _ = served
    models = {m["name"]: m for m in http.get("/v1/models").json()["models"]}
    assert models["toy"]["versions"] == ["2", "10"] and models["toy"]["is_default"]
    assert models["toy"]["oip_models"] == ["toy.encoder", "toy.decoder"]
    info = http.get("/v1/models/toy").json()
    grpc_info = c.model_info("toy")
    assert info["model"] == {"name": "toy", "version": "10"} and info["latent_dim"] == grpc_info.latent_dim
    assert [f["name"] for f in info["factors"]] == [f.name for f in grpc_info.factors]
    shape = next(f for f in info["factors"] if f["name"] == "shape")
    assert shape["kind"] == "categorical" and shape["labels"] == ["square", "ellipse", "heart"]
    assert info["runtime"] == "onnxruntime-cpu" and info["max_request_items"] == 64
    # one model info behind both doors: calibration, provenance and version states on each
    assert [f["calibrated"] for f in info["factors"]] == [f.calibrated for f in grpc_info.factors] == [True] * 3
    assert info["provenance"]["dataset"] == grpc_info.provenance["dataset"] == "toy"
    assert [(v["version"], v["state"]) for v in info["version_status"]] == \
        [(v.version, v.state) for v in grpc_info.version_status] == [("2", "ready"), ("10", "ready")]
    assert models["toy"]["version_status"] == info["version_status"]
    assert http.get("/v1/models/toy", params={"version": "2"}).json()["model"]["version"] == "2"


def test_encode_takes_a_png_or_json_and_equals_grpc_encode(served):
    _, http, c, _ = served
    x = u8_images(2)
    want = c.encode(x, sample=True, seed=4)
    by_png = http.post("/v1/models/toy/encode", content=png(x[0]), headers={"Content-Type": "image/png"},
                       params={"sample": "true", "seed": "4"}).json()
    np.testing.assert_array_equal(np.float32(by_png["mean"]), want.mean[:1])
    np.testing.assert_array_equal(np.float32(by_png["sample"]), want.sample[:1])
    assert set(by_png["factors"]) == {"pos_x", "shape", "angle"}
    by_pixels = http.post("/v1/models/toy/encode", json={"pixels": x.tolist(), "dtype": "uint8"}).json()
    np.testing.assert_array_equal(np.float32(by_pixels["mean"]), want.mean)
    by_b64 = http.post("/v1/models/toy/encode",
                       json={"images": [base64.b64encode(png(i)).decode() for i in x]}).json()
    np.testing.assert_array_equal(np.float32(by_b64["log_var"]), want.log_var)


def test_decode_reconstruct_and_generate_return_json_or_png_equal_to_grpc(served):
    _, http, c, _ = served
    z = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
    want = c.decode(z, output="uint8")
    j = http.post("/v1/models/toy/decode", json={"latents": z.tolist()}).json()
    assert [from_png(base64.b64decode(b)).tolist() for b in j["images"]] == want[:, :, :, 0].tolist()
    one = http.post("/v1/models/toy/decode?format=png", json={"latents": z[:1].tolist()})
    assert one.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(from_png(one.content), want[0, :, :, 0])
    x = u8_images(1, seed=3)
    rec = http.post("/v1/models/toy/reconstruct", content=png(x[0]), headers={"Content-Type": "image/png",
                                                                              "Accept": "image/png"})
    np.testing.assert_array_equal(from_png(rec.content), c.reconstruct(x, output="uint8").images[0, :, :, 0])
    gen = http.post("/v1/models/toy/generate", json={"count": 3, "seed": 11, "pins": [{"factor": "shape", "label": "heart"}]})
    want_gen = c.generate(3, seed=11, pins=[Pin(factor="shape", label="heart")])
    np.testing.assert_array_equal(np.float32(gen.json()["latents"]), want_gen.latents)


def test_edit_by_query_on_a_png_equals_edit_attributes(served):
    _, http, c, _ = served
    x = u8_images(1, seed=5)
    r = http.post("/v1/models/toy/edit", content=png(x[0]), headers={"Content-Type": "image/png"},
                  params=[("set", "pos_x=0.25"), ("set", "shape=heart"), ("shift", "angle=1.0"), ("latent", "3=0.5"),
                          ("format", "png")])
    assert r.status_code == 200, r.text
    want = c.edit(x, [Edit(factor="pos_x", set_value=0.25), Edit(factor="shape", set_label="heart"),
                      Edit(factor="angle", shift=1.0), Edit(dimension=3, set_latent=0.5)], output="uint8")
    np.testing.assert_array_equal(from_png(r.content), want.images[0, :, :, 0])


def test_edit_and_traverse_by_json_on_latents_equal_grpc(served):
    _, http, c, _ = served
    z = np.zeros((1, 4), np.float32)
    edits = [{"factor": "angle", "set_value": 3.0}, {"dimension": 3, "shift": -0.5}]
    j = http.post("/v1/models/toy/edit", json={"latents": z.tolist(), "edits": edits}).json()
    want = c.edit(latents(z), [Edit(factor="angle", set_value=3.0), Edit(dimension=3, shift=-0.5)])
    np.testing.assert_array_equal(np.float32(j["latents"]), want.latents)
    t = http.post("/v1/models/toy/traverse", json={"latents": z.tolist(), "factors": ["pos_x", "angle"], "steps": 4}).json()
    want_t = c.traverse(latents(z), factors=["pos_x", "angle"], steps=4, output="uint8")
    assert t["targets"] == want_t.targets and t["steps"] == 4 and t["num_sources"] == 1
    np.testing.assert_allclose(t["values"], want_t.values, atol=1e-6)
    assert from_png(base64.b64decode(t["images"][5])).tolist() == want_t.images[0, 1, 1, :, :, 0].tolist()
    strip = http.post("/v1/models/toy/traverse?format=png", json={"latents": z.tolist(), "dimensions": [0], "steps": 5})
    assert Image.open(io.BytesIO(strip.content)).size == (5 * 8 + 4 * 2, 8)  # one row of 5 with 2-pixel gutters


# ---------------------------------------------------------------------- OIP --
def test_oip_rest_metadata_readiness_and_json_infer(served):
    _, http, c, _ = served
    assert http.get("/v2/health/live").status_code == 200
    assert http.get("/v2/health/ready").status_code == 200
    assert http.get("/v2").json()["extensions"] == ["binary_tensor_data"]
    meta = http.get("/v2/models/toy.decoder/versions/2").json()
    assert meta["versions"] == ["2", "10"] and meta["inputs"][0] == {"name": "latents", "datatype": "FP32", "shape": [-1, 4]}
    assert http.get("/v2/models/toy.decoder/ready").status_code == 200
    assert http.get("/v2/models/toy.encoder/versions/2/ready").json() == {"name": "toy.encoder", "ready": True}
    error_of(http.get("/v2/models/toy.encoder/versions/9/ready"), 404, r"version '9'")
    assert http.get("/v2/models/toy.encoder").json()["name"] == "toy.encoder"
    error_of(http.get("/v2/models/toy.other/ready"), 404, "encoder or <model>.decoder")
    x = np.random.default_rng(0).random((2, 8, 8, 1), dtype=np.float32)
    r = http.post("/v2/models/toy.encoder/infer", json={"id": "a", "inputs": [
        {"name": "images", "shape": [2, 8, 8, 1], "datatype": "FP32", "data": x.ravel().tolist()}]}).json()
    assert r["id"] == "a" and r["model_name"] == "toy.encoder" and r["model_version"] == "10"
    mean = np.float32(r["outputs"][0]["data"]).reshape(r["outputs"][0]["shape"])
    np.testing.assert_array_equal(mean, c.encode(x).mean)


def test_oip_rest_binary_extension_in_and_out(served):
    _, http, c, _ = served
    x = np.random.default_rng(2).random((3, 8, 8, 1), dtype=np.float32)
    head = json.dumps({"inputs": [{"name": "images", "shape": [3, 8, 8, 1], "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "outputs": [{"name": "log_var", "parameters": {"binary_data": True}}]}).encode()
    r = http.post("/v2/models/toy.encoder/versions/2/infer", content=head + x.tobytes(),
                  headers={"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    n = int(r.headers["Inference-Header-Content-Length"])
    doc = json.loads(r.content[:n])
    assert [o["name"] for o in doc["outputs"]] == ["log_var"] and doc["outputs"][0]["parameters"]["binary_data_size"] == 48
    np.testing.assert_array_equal(np.frombuffer(r.content[n:], np.float32).reshape(3, 4),
                                  c.encode(x, version="2").log_var)


# ------------------------------------------------------------------- errors --
@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "pattern"),
    [
        ("GET", "/v1/models/nope", {}, 404, r"'nope'.*\['plain', 'toy'\]"),
        ("GET", "/v1/models/toy?version=3", {}, 404, r"version '3'"),
        ("POST", "/v1/models/toy/edit", {"json": {"latents": [[0, 0, 0, 0]], "edits": [{"factor": "colour", "set_value": 1}]}},
         400, "unknown factor 'colour'"),
        ("POST", "/v1/models/plain/edit", {"json": {"latents": [[0, 0, 0, 0]], "edits": [{"factor": "scale", "set_value": 1}]}},
         400, "no factor card"),
        ("POST", "/v1/models/toy/edit", {"json": {"latents": [[0, 0, 0, 0]], "edits": [{"factor": "pos_x"}]}},
         400, "exactly one of set_value"),
        ("POST", "/v1/models/toy/decode", {"json": {"latents": [[0, 0, 0]]}}, 400, r"\(N, 4\)"),
        ("POST", "/v1/models/toy/decode", {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
         400, "not a valid DecodeBody"),
        ("POST", "/v1/models/toy/encode", {"json": {"pixels": [[[[0.5]]]]}}, 400, r"\(N, 8, 8, 1\)"),
        ("POST", "/v1/models/toy/encode", {"json": {"pixels": [[1, 2], [3]]}}, 400, "not a regular"),
        ("POST", "/v1/models/toy/encode", {"json": {"pixels": np.full((1, 8, 8, 1), 2.0).tolist()}}, 400, r"\[0, 1\]"),
        ("POST", "/v1/models/toy/encode", {"json": {"images": ["@@@"]}}, 400, "not base64"),
        ("POST", "/v1/models/toy/encode", {"content": b"GIF89a not a png", "headers": {"Content-Type": "image/png"}},
         400, "not a readable PNG"),
        ("POST", "/v1/models/toy/encode", {"content": b"\xff\xd8\xff", "headers": {"Content-Type": "image/jpeg"}},
         415, "send image/png"),
        ("POST", "/v1/models/toy/encode", {"content": png(np.zeros((4, 4, 1), np.uint8)), "headers": {"Content-Type": "image/png"}},
         400, "wants 8x8"),
        ("POST", "/v1/models/toy/generate", {"json": {"count": 65}}, 400, r"1\.\.64"),
        ("POST", "/v1/models/toy/traverse", {"json": {"latents": [[0, 0, 0, 0]], "steps": 99}}, 400, r"2\.\.64"),
        ("POST", "/v1/models/toy/edit?format=gif", {"json": {"latents": [[0, 0, 0, 0]]}}, 400, "format=png"),
        ("GET", "/v1/nowhere", {}, 404, "no route GET /v1/nowhere"),
        ("POST", "/v2/models/toy.encoder/infer", {"json": {"inputs": [{"name": "images", "shape": [1, 8, 8, 1],
                                                                     "datatype": "FP32", "data": [0.5] * 10}]}},
         400, "has 10 values but shape"),
        ("POST", "/v2/models/toy.encoder/infer", {"json": {"inputs": [{"name": "images", "shape": [1, 8, 8, 1],
                                                                     "datatype": "STRING", "data": ["a"]}]}},
         400, "datatype 'STRING' is unknown"),
        ("POST", "/v2/models/toy.encoder/infer", {"content": b"{}", "headers": {"Inference-Header-Content-Length": "99"}},
         400, "outside the body"),
    ],
)
def test_bad_requests_get_a_4xx_and_a_json_error_that_says_what_to_fix(served, method, path, kwargs, status, pattern):
    _, http, _, _ = served
    body = error_of(http.request(method, path, **kwargs), status, pattern)
    assert body.get("code")
    assert http.get("/v2/health/ready").status_code == 200  # the server stays healthy


def test_an_oversized_body_is_413_and_the_server_stays_healthy(served):
    _, http, c, _ = served
    r = http.post("/v1/models/toy/encode", content=b"\0" * (1024 * 1024 + 1), headers={"Content-Type": "image/png"})
    body = error_of(r, 413, "max_message_mb=1")
    assert body["code"] == "RESOURCE_EXHAUSTED"

    def chunks():
        for _ in range(20):
            yield b"\0" * 65536  # no Content-Length: the limit holds while streaming
    error_of(http.post("/v1/models/toy/encode", content=chunks(), headers={"Content-Type": "image/png"}),
             413, "exceeds")
    assert http.get("/healthz").status_code == 200
    assert c.encode(u8_images(1)).mean.shape == (1, 4)


def test_a_runtime_failure_is_500_with_a_request_id_and_no_trace(served, monkeypatch):
    server, http, _, _ = served

    def broken(inputs):
        raise RuntimeError("secret stack detail")

    monkeypatch.setattr(server.handle.engine.served("plain", "1").runtime("decoder"), "run", broken)
    r = http.post("/v1/models/plain/decode", json={"latents": [[0, 0, 0, 0]]}, headers={"x-request-id": "req-42"})
    body = error_of(r, 500, "request id req-42")
    assert "secret" not in r.text and body["request_id"] == "req-42" and r.headers["x-request-id"] == "req-42"


def test_a_full_queue_is_429(tmp_path):
    build_toy_model(tmp_path, "toy", "1")
    with ServerThread(make_config(tmp_path, max_queue_size=1)) as server, httpx.Client(base_url=server.http_url) as http:
        r = http.post("/v1/models/toy/decode", json={"latents": [[0, 0, 0, 0]] * 2})
        error_of(r, 429, "queue holds 0 of 1")


def test_bearer_token_guards_the_api_and_metrics_but_not_probes_page_or_docs(tmp_path):
    build_toy_model(tmp_path, "toy", "1")
    with ServerThread(make_config(tmp_path, token="s3cret")) as server, httpx.Client(base_url=server.http_url) as http:
        for path in ("/v1/models", "/metrics"):
            body = error_of(http.get(path), 401, "Authorization: Bearer")
            assert body["code"] == "UNAUTHENTICATED"
            assert http.get(path, headers={"Authorization": "Bearer s3cret"}).status_code == 200, path
        for path in ("/v2/health/live", "/v2/health/ready", "/", "/docs", "/openapi.json"):
            assert http.get(path).status_code == 200, path


# ------------------------------------------------------------- docs, metrics --
def test_docs_and_page_load_only_assets_this_server_serves(served):
    _, http, _, _ = served
    for page in ("/docs", "/"):
        html = http.get(page).text
        refs = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)["\']', html)
        refs += re.findall(r'url:\s*["\']([^"\']+)["\']', html)
        assert refs, page
        for ref in refs:
            assert not re.match(r"^(https?:)?//", ref), f"{page} loads {ref} from elsewhere"
            if not ref.startswith(("data:", "#")):
                assert http.get(ref).status_code == 200, ref
    spec = http.get("/openapi.json").json()
    assert {"/v1/models/{model}/edit", "/v2/models/{model}/infer", "/v2/health/ready"} <= set(spec["paths"])
    assert "EditBody" in spec["components"]["schemas"] and "InferBody" in spec["components"]["schemas"]


def test_prometheus_metrics_count_http_requests_by_route(served):
    _, http, _, _ = served
    http.get("/v1/models/toy")
    http.get("/v1/models/nope")
    text = http.get("/metrics").text
    assert re.search(r'latentdial_requests_total\{rpc="http.model_info"\} [2-9]', text)
    assert re.search(r'latentdial_failures_total\{code="NOT_FOUND",rpc="http.model_info"\} [1-9]', text)


# -------------------------------------------------------------------- drain --
def test_once_draining_readiness_and_new_requests_answer_503(served):
    server, http, _, _ = served
    engine = server.handle.engine
    engine.draining = True  # what stop() sets first, before the listeners close
    try:
        assert http.get("/v2/health/ready").status_code == 503
        assert http.get("/healthz").status_code == 503
        error_of(http.get("/v1/models"), 503, "draining")
        assert http.get("/v2/health/live").status_code == 200
    finally:
        engine.draining = False
    assert http.get("/v2/health/ready").status_code == 200


def test_stop_lets_in_flight_http_requests_finish_and_refuses_new_ones(tmp_path):
    build_toy_model(tmp_path, "toy", "1")
    server = ServerThread(make_config(tmp_path)).start()
    try:
        runtime = server.handle.engine.served().runtime("decoder")
        inner = runtime.run
        runtime.run = lambda inputs: (time.sleep(0.6), inner(inputs))[1]
        url = server.http_url
        result: dict[str, httpx.Response] = {}

        def slow_call():
            result["slow"] = httpx.post(url + "/v1/models/toy/decode", json={"latents": [[0, 0, 0, 0]]}, timeout=10)

        t = threading.Thread(target=slow_call)
        t.start()
        time.sleep(0.2)
        stopping = threading.Thread(target=server.call, args=(server.handle.stop(5.0),))
        stopping.start()
        time.sleep(0.1)
        with pytest.raises(httpx.TransportError):  # the listener is closed: a balancer moves on
            httpx.get(url + "/v2/health/ready", timeout=2)
        t.join(10)
        stopping.join(10)
        assert result["slow"].status_code == 200
        np.testing.assert_array_equal(np.float32(result["slow"].json()["latents"]), [[0, 0, 0, 0]])
    finally:
        server.stop()


# ------------------------------------------------------------ ground truth --
def test_samples_come_from_the_models_own_ground_truth_dataset(tmp_path):
    from latentdial.manifest import Manifest
    from latentdial.training.data import get_dataset

    m = build_toy_model(tmp_path, "sprites", "1", image_shape=(1, 64, 64), latent_dim=4)
    manifest = Manifest.load(m.path)
    manifest.provenance["dataset"] = {"name": "dsprites"}
    manifest.save(m.path)
    build_toy_model(tmp_path, "toy", "1")  # its dataset, "toy", is not one the server can draw
    with ServerThread(make_config(tmp_path)) as server, httpx.Client(base_url=server.http_url, timeout=10) as http:
        r = http.get("/v1/models/sprites/samples", params={"seed": 5, "format": "png"})
        assert r.status_code == 200, r.text
        want = get_dataset("dsprites").sample_observations(1, np.random.default_rng(5))[0, 0]
        np.testing.assert_array_equal(from_png(r.content), np.rint(want * 255).astype(np.uint8))
        assert len(http.get("/v1/models/sprites/samples", params={"count": 3}).json()["images"]) == 3
        error_of(http.get("/v1/models/toy/samples"), 400, "dataset 'toy' cannot be sampled")
        error_of(http.get("/v1/models/sprites/samples", params={"count": 0}), 400, r"count=0 is outside")
