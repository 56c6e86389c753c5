"""The token on every data and admin route of every door, and loopback by default (review finding 6).

``/metrics`` on the HTTP port needed no token, and the metrics port (9090, on 0.0.0.0) none either.
Now, with a token, every route that returns data or changes state asks for it on every door
(gRPC v1, OIP gRPC, HTTP REST, OIP REST, ``/metrics`` on the HTTP port and on the metrics port);
health stays open. ``latentdial serve`` binds 127.0.0.1 unless told otherwise, the metrics
port too; the containers, compose and Kubernetes say 0.0.0.0 themselves.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import yaml
from fixtures.server import ServerThread, make_config
from fixtures.toy_model import build_toy_model
from grpc_health.v1 import health_pb2, health_pb2_grpc

from latentdial.inference import grpc_service_pb2 as oip_pb
from latentdial.inference import grpc_service_pb2_grpc as oip_grpc
from latentdial.serving.config import ServerConfig
from latentdial.serving.server import _warn_about_plaintext
from latentdial.serving.supervisor import free_port
from latentdial.v1 import latentdial_pb2 as pb
from latentdial.v1 import latentdial_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_defaults_are_loopback_and_guarded():
    c = ServerConfig()
    assert (c.host, c.metrics_host) == ("127.0.0.1", "127.0.0.1")
    assert c.http_plaintext is False and c.max_in_flight >= 1 and c.request_timeout_s > 0


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    root = tmp_path_factory.mktemp("guarded")
    build_toy_model(root, "toy", "1")
    with ServerThread(make_config(root, token=TOKEN, metrics_port=free_port(), model_control="explicit")) as server:
        yield server


def grpc_code(call, metadata) -> grpc.StatusCode | None:
    """The status code ``call(metadata)`` fails with, or None when it succeeds."""
    try:
        call(metadata)
    except grpc.RpcError as e:
        return e.code()
    return None


def test_every_grpc_data_and_admin_rpc_needs_the_token_and_health_does_not(guarded):
    lat = pb.Tensor(dtype=pb.DATA_TYPE_FLOAT32, shape=[1, 4], raw=np.zeros((1, 4), np.float32).tobytes())
    img = pb.ImageBatch(tensor=pb.Tensor(dtype=pb.DATA_TYPE_UINT8, shape=[1, 8, 8, 1], raw=bytes(64)))
    with grpc.insecure_channel(guarded.address) as ch:
        v1, oip = pb_grpc.LatentDialStub(ch), oip_grpc.GRPCInferenceServiceStub(ch)
        calls = {
            "ListModels": lambda md: v1.ListModels(pb.ListModelsRequest(), metadata=md, timeout=5),
            "GetModelInfo": lambda md: v1.GetModelInfo(pb.GetModelInfoRequest(), metadata=md, timeout=5),
            "Encode": lambda md: v1.Encode(pb.EncodeRequest(images=img), metadata=md, timeout=5),
            "Decode": lambda md: v1.Decode(pb.DecodeRequest(latents=lat), metadata=md, timeout=5),
            "Reconstruct": lambda md: v1.Reconstruct(pb.ReconstructRequest(images=img), metadata=md, timeout=5),
            "Traverse": lambda md: v1.Traverse(pb.TraverseRequest(latents=lat, steps=2), metadata=md, timeout=5),
            "EditAttributes": lambda md: v1.EditAttributes(pb.EditAttributesRequest(latents=lat), metadata=md,
                                                           timeout=5),
            "Generate": lambda md: v1.Generate(pb.GenerateRequest(count=1), metadata=md, timeout=5),
            "LoadModel": lambda md: v1.LoadModel(pb.LoadModelRequest(model=pb.ModelRef(name="toy", version="1")),
                                                 metadata=md, timeout=5),
            "oip.ModelReady": lambda md: oip.ModelReady(oip_pb.ModelReadyRequest(name="toy.encoder"), metadata=md,
                                                        timeout=5),
            "oip.ModelMetadata": lambda md: oip.ModelMetadata(oip_pb.ModelMetadataRequest(name="toy.encoder"),
                                                              metadata=md, timeout=5),
            "oip.ModelInfer": lambda md: oip.ModelInfer(oip_pb.ModelInferRequest(model_name="toy.decoder"),
                                                        metadata=md, timeout=5),
        }
        for name, call in calls.items():
            assert grpc_code(call, ()) == grpc.StatusCode.UNAUTHENTICATED, name
            assert grpc_code(call, (("authorization", "Bearer wrong"),)) == grpc.StatusCode.UNAUTHENTICATED, name
            assert grpc_code(call, (("authorization", f"Bearer {TOKEN}"),)) in (
                None, grpc.StatusCode.INVALID_ARGUMENT), name  # past the token (an empty OIP request is invalid)
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        assert oip.ServerLive(oip_pb.ServerLiveRequest(), timeout=5).live


def test_every_http_data_route_and_both_metrics_endpoints_need_the_token(guarded):
    http = guarded.http_url
    metrics = f"http://127.0.0.1:{guarded.handle.metrics_port}/metrics"
    routes = [
        ("GET", f"{http}/v1/models", {}), ("GET", f"{http}/v1/models/toy", {}),
        ("POST", f"{http}/v1/models/toy/decode", {"json": {"latents": [[0, 0, 0, 0]]}}),
        ("POST", f"{http}/v1/models/toy/edit", {"json": {"latents": [[0, 0, 0, 0]]}}),
        ("POST", f"{http}/v1/models/toy/traverse", {"json": {"latents": [[0, 0, 0, 0]], "steps": 2}}),
        ("POST", f"{http}/v1/models/toy/generate", {"json": {"count": 1}}),
        ("GET", f"{http}/v1/models/toy/samples", {}),
        ("GET", f"{http}/v2", {}), ("GET", f"{http}/v2/models/toy.encoder", {}),
        ("GET", f"{http}/v2/models/toy.encoder/ready", {}),
        ("POST", f"{http}/v2/models/toy.decoder/infer",
         {"json": {"inputs": [{"name": "latents", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]}]}}),
        ("GET", f"{http}/metrics", {}),
        ("GET", metrics, {}),  # the metrics port
    ]
    with httpx.Client(timeout=10) as client:
        for method, url, kwargs in routes:
            r = client.request(method, url, **kwargs)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (url, r.status_code)
            r = client.request(method, url, headers={"Authorization": "Bearer wrong"}, **kwargs)
            assert r.status_code == 401, url
            r = client.request(method, url, headers=AUTH, **kwargs)
            assert r.status_code in (200, 400), (url, r.status_code, r.text[:200])  # 400: no dataset to sample
        assert "latentdial_requests_total" in client.get(metrics, headers=AUTH).text
        for path in ("/healthz", "/v2/health/live", "/v2/health/ready", "/", "/docs", "/openapi.json"):
            assert client.get(http + path).status_code == 200, path


def test_the_metrics_port_listens_on_loopback_by_default(guarded):
    assert guarded.handle.metrics_listener.sock.getsockname()[0] == "127.0.0.1"


def _outward_address() -> str | None:
    """This machine's address on its default route, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") else ip


def test_latentdial_serve_binds_loopback_unless_told_otherwise(tmp_path):
    build_toy_model(tmp_path, "toy", "1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATENTDIAL_")}
    metrics_port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "latentdial.cli", "serve", "--repository", str(tmp_path), "--port", "0",
         "--http-port", "0", "--metrics-port", str(metrics_port), "--grace-s", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("ready:"):
                break
        out = "".join(lines)
        grpc_port = int(re.search(r"serving on grpc://127\.0\.0\.1:(\d+)", out).group(1))
        http_port = int(re.search(r"http on http://127\.0\.0\.1:(\d+)/", out).group(1))
        assert f"metrics on http://127.0.0.1:{metrics_port}/metrics" in out, out
        assert "guarded by nothing (no token, no TLS)" in out, out
        outward = _outward_address()
        if outward is not None:  # the same ports are not reachable from another address of this machine
            for port in (grpc_port, http_port, metrics_port):
                with socket.socket() as s:
                    s.settimeout(2)
                    assert s.connect_ex((outward, port)) != 0, f"port {port} answers on {outward}"
    finally:
        proc.terminate()
        proc.wait(20)


def test_a_token_in_plain_text_off_loopback_is_warned_about(caplog):
    with caplog.at_level(logging.WARNING):
        _warn_about_plaintext(ServerConfig(host="0.0.0.0", token="t", metrics_host="0.0.0.0"))
    assert "bearer token travels in plain text to gRPC and HTTP on 0.0.0.0, metrics on 0.0.0.0" in caplog.text
    caplog.clear()
    _warn_about_plaintext(ServerConfig(token="t"))  # loopback: nothing crosses the network
    assert not caplog.text


def test_containers_compose_and_kubernetes_bind_every_interface_explicitly():
    """The loopback default would leave the published ports unreachable inside a container."""
    for dockerfile in ("docker/Dockerfile.cpu", "docker/Dockerfile.gpu"):
        text = (ROOT / dockerfile).read_text()
        assert re.search(r"LATENTDIAL_HOST=0\.0\.0\.0\b", text), dockerfile
        assert re.search(r"LATENTDIAL_METRICS_HOST=0\.0\.0\.0\b", text), dockerfile
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = compose["x-serve-env"]
    assert env["LATENTDIAL_HOST"] == "0.0.0.0" and env["LATENTDIAL_METRICS_HOST"] == "0.0.0.0"
    for name in ("latentdial", "latentdial-gpu", "replica"):
        service_env = compose["services"][name]["environment"]
        assert service_env["LATENTDIAL_HOST"] == "0.0.0.0", name
    deployment = yaml.safe_load((ROOT / "deploy/k8s/deployment.yaml").read_text())
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    k8s_env = {e["name"]: e["value"] for e in container["env"]}
    assert k8s_env["LATENTDIAL_HOST"] == "0.0.0.0" and k8s_env["LATENTDIAL_METRICS_HOST"] == "0.0.0.0"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^ADDRESS \?= 127\.0\.0\.1:50051$", makefile, re.M)
