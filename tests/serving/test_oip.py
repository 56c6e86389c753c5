"""The Open Inference Protocol v2 front door: tritonclient (gRPC and HTTP) against a real server, and batching shared with v1."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
from fixtures.server import ServerThread, make_config
from fixtures.toy_model import build_toy_model

from latentdial.client import Client
from latentdial.inference import grpc_service_pb2 as oip
from latentdial.inference import grpc_service_pb2_grpc as oip_grpc

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TRITON_PYTHON = ROOT / ".venv-tritonclient" / "bin" / "python"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("oip")
    build_toy_model(root, "toy", "2", seed=2)
    model = build_toy_model(root, "toy", "10", seed=10)
    with ServerThread(make_config(root)) as server:
        yield server, model


def images(n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 8, 8, 1), dtype=np.float32)


def stub(server) -> tuple[grpc.Channel, oip_grpc.GRPCInferenceServiceStub]:
    ch = grpc.insecure_channel(server.address)
    return ch, oip_grpc.GRPCInferenceServiceStub(ch)


def test_tritonclient_grpc_and_http_read_metadata_and_encode_exactly_like_v1(served, tmp_path):
    """A client no one here wrote, in its own venv (it pins protobuf < 7): make test builds .venv-tritonclient."""
    server, model = served
    if not TRITON_PYTHON.exists():
        pytest.fail(f"{TRITON_PYTHON} is missing: run `make tritonclient-venv` (make test builds it)")
    x = images(3)
    u8 = (x * 255).round().astype(np.uint8)
    z = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
    np.savez(tmp_path / "in.npz", images_f32=x, images_u8=u8, latents=z)
    http_address = server.http_url.removeprefix("http://")
    run = subprocess.run(
        [str(TRITON_PYTHON), str(ROOT / "tests" / "clients" / "tritonclient_check.py"), server.address,
         http_address, "toy", str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    out = np.load(tmp_path / "out.npz")

    assert report["grpc_live"] and report["grpc_ready"] and report["grpc_model_ready"]
    assert not report["grpc_unknown_model_ready"]
    assert report["http_live"] and report["http_ready"] and report["http_model_ready"]
    assert report["grpc_server_metadata"]["name"] == "latentdial"
    assert report["http_server_metadata"]["name"] == "latentdial"
    for meta in (report["grpc_encoder_metadata"], report["http_encoder_metadata"]):
        assert meta["name"] == "toy.encoder" and meta["versions"] == ["2", "10"]
        assert [o["name"] for o in meta["outputs"]] == ["mean", "log_var"]
    # protobuf's JSON writes int64 as strings; the REST binding writes numbers
    assert report["grpc_encoder_metadata"]["inputs"] == [{"name": "images", "datatype": "FP32", "shape": ["-1", "8", "8", "1"]}]
    assert report["http_encoder_metadata"]["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 8, 8, 1]}]
    assert [o["name"] for o in report["grpc_decoder_metadata"]["outputs"]] == ["images"]

    with Client(server.address) as c:
        v1 = c.encode(x)
        v1_u8 = c.encode(u8).mean
        decoded = c.decode(z)
    for prefix in ("grpc_f32", "http_binary", "http_json"):
        np.testing.assert_array_equal(out[f"{prefix}_mean"], v1.mean)
        np.testing.assert_array_equal(out[f"{prefix}_log_var"], v1.log_var)
    np.testing.assert_array_equal(out["grpc_u8_mean"], v1_u8)
    np.testing.assert_array_equal(out["http_u8_mean"], v1_u8)
    np.testing.assert_array_equal(out["grpc_decoded"], decoded)
    np.testing.assert_array_equal(out["http_decoded"], decoded)
    assert "(N, 8, 8, 1)" in report["grpc_bad_shape"] and "(N, 8, 8, 1)" in report["http_bad_shape"]
    np.testing.assert_allclose(v1.mean, model.encode(x.transpose(0, 3, 1, 2))[0], atol=1e-5)


def test_typed_contents_equal_raw_contents_and_outputs_come_back_raw(served):
    server, _ = served
    x = images(2)
    u8 = (x * 255).round().astype(np.uint8)
    ch, s = stub(server)
    with ch:
        def infer(tensor, raw=None, version=""):
            req = oip.ModelInferRequest(model_name="toy.encoder", model_version=version, id="r1", inputs=[tensor])
            if raw is not None:
                req.raw_input_contents.append(raw)
            return s.ModelInfer(req, timeout=10)

        typed = infer(oip.ModelInferRequest.InferInputTensor(
            name="images", datatype="FP32", shape=x.shape, contents=oip.InferTensorContents(fp32_contents=x.ravel())))
        raw = infer(oip.ModelInferRequest.InferInputTensor(name="images", datatype="FP32", shape=x.shape), x.tobytes())
        typed_u8 = infer(oip.ModelInferRequest.InferInputTensor(
            name="images", datatype="UINT8", shape=u8.shape, contents=oip.InferTensorContents(uint_contents=u8.ravel())))
        older = infer(oip.ModelInferRequest.InferInputTensor(name="images", datatype="FP32", shape=x.shape),
                      x.tobytes(), version="2")
    assert raw.model_name == "toy.encoder" and raw.model_version == "10" and raw.id == "r1"
    assert [o.name for o in raw.outputs] == ["mean", "log_var"] and list(raw.outputs[0].shape) == [2, 4]
    assert raw.raw_output_contents[0] == typed.raw_output_contents[0]
    with Client(server.address) as c:
        np.testing.assert_array_equal(np.frombuffer(raw.raw_output_contents[0], np.float32).reshape(2, 4), c.encode(x).mean)
        np.testing.assert_array_equal(
            np.frombuffer(typed_u8.raw_output_contents[0], np.float32).reshape(2, 4), c.encode(u8).mean)
        np.testing.assert_array_equal(
            np.frombuffer(older.raw_output_contents[0], np.float32).reshape(2, 4), c.encode(x, version="2").mean)


@pytest.mark.parametrize(
    ("request_", "code", "pattern"),
    [
        (oip.ModelInferRequest(model_name="nope.encoder"), grpc.StatusCode.NOT_FOUND, "available models"),
        (oip.ModelInferRequest(model_name="toy"), grpc.StatusCode.NOT_FOUND, r"<model>\.encoder"),
        (oip.ModelInferRequest(model_name="toy.encoder", model_version="3"), grpc.StatusCode.NOT_FOUND,
         "available versions"),
        (oip.ModelInferRequest(model_name="toy.encoder", inputs=[oip.ModelInferRequest.InferInputTensor(
            name="pixels", datatype="FP32", shape=[1, 8, 8, 1])], raw_input_contents=[bytes(256)]),
         grpc.StatusCode.INVALID_ARGUMENT, r"takes inputs \['images'\]"),
        (oip.ModelInferRequest(model_name="toy.encoder", inputs=[oip.ModelInferRequest.InferInputTensor(
            name="images", datatype="FP32", shape=[1, 8, 8, 1])], raw_input_contents=[bytes(10)]),
         grpc.StatusCode.INVALID_ARGUMENT, "needs 256"),
        (oip.ModelInferRequest(model_name="toy.encoder", inputs=[oip.ModelInferRequest.InferInputTensor(
            name="images", datatype="FP16", shape=[1, 8, 8, 1])], raw_input_contents=[bytes(128)]),
         grpc.StatusCode.INVALID_ARGUMENT, "float16"),
        (oip.ModelInferRequest(model_name="toy.encoder", inputs=[oip.ModelInferRequest.InferInputTensor(
            name="images", datatype="FP32", shape=[1, 8, 8, 1])]),
         grpc.StatusCode.INVALID_ARGUMENT, "has 0 values"),
        (oip.ModelInferRequest(model_name="toy.decoder", inputs=[oip.ModelInferRequest.InferInputTensor(
            name="latents", datatype="FP32", shape=[1, 4])], raw_input_contents=[np.full(4, np.nan, np.float32).tobytes()]),
         grpc.StatusCode.INVALID_ARGUMENT, "NaN"),
        (oip.ModelInferRequest(model_name="toy.decoder", outputs=[oip.ModelInferRequest.InferRequestedOutputTensor(
            name="mean")], inputs=[oip.ModelInferRequest.InferInputTensor(name="latents", datatype="FP32", shape=[1, 4])],
            raw_input_contents=[bytes(16)]), grpc.StatusCode.INVALID_ARGUMENT, r"no outputs \['mean'\]"),
    ],
)
def test_bad_oip_requests_get_status_codes_whose_messages_say_what_to_fix(served, request_, code, pattern):
    import re

    server, _ = served
    ch, s = stub(server)
    with ch, pytest.raises(grpc.RpcError) as e:
        s.ModelInfer(request_, timeout=10)
    assert e.value.code() == code, e.value.details()
    assert re.search(pattern, e.value.details()), e.value.details()


def test_model_ready_is_false_for_models_that_are_not_served(served):
    server, _ = served
    ch, s = stub(server)
    with ch:
        assert s.ModelReady(oip.ModelReadyRequest(name="toy.decoder", version="2"), timeout=5).ready
        assert not s.ModelReady(oip.ModelReadyRequest(name="toy.decoder", version="7"), timeout=5).ready
        assert not s.ModelReady(oip.ModelReadyRequest(name="toy"), timeout=5).ready
        assert s.ServerReady(oip.ServerReadyRequest(), timeout=5).ready


def test_an_oip_call_and_a_v1_call_of_the_same_graph_merge_into_one_batch(tmp_path):
    build_toy_model(tmp_path, "toy", "1")
    # wait up to 400 ms for company (not adaptive: an idle runtime would take the first call at once)
    with ServerThread(make_config(tmp_path, max_queue_delay_ms=400.0, adaptive_batching=False)) as server:
        runtime = server.handle.engine.served().runtime("encoder")
        inner = runtime.run
        batches: list[int] = []

        def recording(inputs):
            batches.append(len(inputs["images"]))
            return inner(inputs)

        runtime.run = recording
        x = images(2)
        results: dict[str, np.ndarray] = {}
        ch, s = stub(server)
        with ch, Client(server.address) as c:
            def v1():
                results["v1"] = c.encode(x[:1]).mean

            def oip_call():
                req = oip.ModelInferRequest(model_name="toy.encoder", inputs=[
                    oip.ModelInferRequest.InferInputTensor(name="images", datatype="FP32", shape=[1, 8, 8, 1])],
                    raw_input_contents=[x[1:].tobytes()])
                r = s.ModelInfer(req, timeout=10)
                results["oip"] = np.frombuffer(r.raw_output_contents[0], np.float32).reshape(1, 4)

            threads = [threading.Thread(target=v1), threading.Thread(target=oip_call)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(20)
            runtime.run = inner
            alone = c.encode(x).mean
    assert batches == [2], f"the runtime saw batches {batches}; the two calls were not merged"
    np.testing.assert_array_equal(results["v1"], alone[:1])
    np.testing.assert_array_equal(results["oip"], alone[1:])


def test_oip_liveness_answers_without_a_token_and_inference_needs_one(tmp_path):
    build_toy_model(tmp_path, "toy", "1")
    with ServerThread(make_config(tmp_path, token="s3cret")) as server:
        ch, s = stub(server)
        with ch:
            assert s.ServerLive(oip.ServerLiveRequest(), timeout=5).live
            assert s.ServerReady(oip.ServerReadyRequest(), timeout=5).ready
            with pytest.raises(grpc.RpcError) as e:
                s.ModelMetadata(oip.ModelMetadataRequest(name="toy.encoder"), timeout=5)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
            meta = s.ModelMetadata(oip.ModelMetadataRequest(name="toy.encoder"), timeout=5,
                                   metadata=(("authorization", "Bearer s3cret"),))
            assert meta.platform and [t.name for t in meta.inputs] == ["images"]
