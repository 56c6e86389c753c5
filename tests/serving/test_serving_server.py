"""The server around the service: health, checksums, concurrency, shutdown, auth, TLS, limits, metrics, CLI."""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from fixtures.load import wait_until
from fixtures.server import ServerThread, health_status, make_config
from fixtures.toy_model import build_toy_model
from grpc_health.v1 import health_pb2

from latentdial.client import (
    Client,
    DeadlineExceededError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)
from latentdial.serving.config import ServerConfig, add_config_arguments, config_from_sources
from latentdial.serving.supervisor import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def slow(server: ServerThread, graph: str, delay_s: float) -> None:
    """Make every call of ``graph`` on the default model take ``delay_s`` longer."""
    runtime = server.handle.engine.served().runtime(graph)
    inner = runtime.run

    def run(inputs):
        time.sleep(delay_s)
        return inner(inputs)

    runtime.run = run


def test_health_is_serving_after_warm_up_and_not_serving_once_draining(toy_repo):
    root, _ = toy_repo
    server = ServerThread(make_config(root)).start()
    try:
        assert health_status(server.address) == health_pb2.HealthCheckResponse.SERVING
        assert health_status(server.address, "latentdial.v1.LatentDial") == health_pb2.HealthCheckResponse.SERVING
        slow(server, "decoder", 0.5)
        with Client(server.address) as c, ThreadPoolExecutor(2) as pool:
            job = pool.submit(c.decode, np.zeros((1, 4)))
            time.sleep(0.2)
            stopping = pool.submit(server.call, server.handle.stop(5.0))
            time.sleep(0.1)
            status = server.call(server.handle.health.Check(health_pb2.HealthCheckRequest(service=""), None))
            assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
            assert job.result(10).shape == (1, 8, 8, 1)
            stopping.result(10)
    finally:
        server.stop()


def test_a_file_with_a_wrong_sha256_is_not_served_while_the_others_are(tmp_path, caplog):
    build_toy_model(tmp_path, "good", "1")
    bad = build_toy_model(tmp_path, "bad", "1")
    with open(bad.path / "decoder.onnx", "ab") as fh:
        fh.write(b"tampered")
    with ServerThread(make_config(tmp_path)) as server, Client(server.address) as c:
        assert [m.name for m in c.list_models()] == ["good"]
        assert c.model_info().model.name == "good"  # the only served model is the default
        failed = server.handle.engine.repository.failed
        assert list(failed) == ["bad/1"] and "sha256" in failed["bad/1"]
    assert any("bad/1" in r.getMessage() and "sha256" in r.getMessage() for r in caplog.records)


def test_a_runtime_capped_below_the_configured_max_batch_sets_warm_up_and_batcher_size(toy_repo, monkeypatch):
    """TensorRT engines end at the manifest's batch_profile max: serving warms up and batches to that cap."""
    from latentdial.serving.runtimes import onnxruntime_cpu

    cap = 4
    batches: list[tuple[str, int]] = []  # (first input name, N) of every run() call
    options_seen = []  # the RuntimeOptions serving constructed each runtime with

    class ProfileCapped(onnxruntime_cpu.OrtCpuRuntime):
        def __init__(self, path, *, max_batch_size, options=None, **kwargs):
            options_seen.append(options)
            super().__init__(path, max_batch_size=min(max_batch_size, cap), options=options, **kwargs)

        def run(self, inputs):
            batches.append((self.input_names[0], len(inputs[self.input_names[0]])))
            return super().run(inputs)

    monkeypatch.setattr(onnxruntime_cpu, "OrtCpuRuntime", ProfileCapped)
    root, model = toy_repo
    x = np.random.default_rng(3).random((10, 8, 8, 1), dtype=np.float32)
    with ServerThread(make_config(root, max_batch_size=64)) as server, Client(server.address) as c:
        warm_up = list(batches)
        info = c.model_info()
        r = c.encode(x)
    assert info.batching.max_batch_size == cap
    assert len(options_seen) == 2 and all(o.allow_spinning is False for o in options_seen)
    for graph_input in ("images", "latents"):
        assert sorted({n for name, n in warm_up if name == graph_input}) == [1, cap], warm_up
    served = batches[len(warm_up):]
    assert sum(n for _, n in served) == 10 and max(n for _, n in served) == cap
    mean, log_var = model.encode(x.transpose(0, 3, 1, 2))
    np.testing.assert_allclose(r.mean, mean, atol=1e-5)
    np.testing.assert_allclose(r.log_var, log_var, atol=1e-5)


def test_many_concurrent_callers_get_exactly_the_unbatched_results(toy_repo):
    root, model = toy_repo
    x = np.random.default_rng(0).random((48, 8, 8, 1), dtype=np.float32)
    with ServerThread(make_config(root)) as server, Client(server.address) as c:
        slow(server, "encoder", 0.02)  # adaptive batching merges what arrives while a batch runs

        def encoder_batches() -> float:
            return server.handle.metrics.registry.get_sample_value(
                "latentdial_batch_size_count", {"model": "toy/1", "graph": "encoder"}) or 0.0

        alone = [c.encode(x[i : i + 1]).mean for i in range(len(x))]
        before = encoder_batches()
        with ThreadPoolExecutor(16) as pool:
            together = list(pool.map(lambda i: c.encode(x[i : i + 1]).mean, range(len(x))))
            decoded = list(pool.map(lambda i: c.decode(alone[i]), range(len(x))))
        merged = encoder_batches() - before
    assert merged < len(x), f"{len(x)} concurrent calls ran in {merged} batches; expected shared batches"
    for i in range(len(x)):
        np.testing.assert_allclose(together[i], alone[i], atol=1e-6)
        np.testing.assert_allclose(decoded[i][0], model.decode(alone[i])[0].transpose(1, 2, 0), atol=1e-5)


def test_graceful_shutdown_under_load_loses_no_accepted_request(toy_repo):
    root, model = toy_repo
    server = ServerThread(make_config(root, max_batch_size=4)).start()
    # the decoder holds every batch until the drain has begun, so all 24 calls are accepted
    # and still unanswered when the server is told to stop, however slowly they arrive
    release = threading.Event()
    runtime = server.handle.engine.served().runtime("decoder")
    inner = runtime.run
    runtime.run = lambda inputs: (release.wait(30), inner(inputs))[1]
    z = np.random.default_rng(1).standard_normal((24, 4)).astype(np.float32)
    try:
        with Client(server.address, retries=0) as c, ThreadPoolExecutor(25) as pool:
            jobs = [pool.submit(c.decode, z[i : i + 1]) for i in range(24)]
            in_flight = server.handle.metrics.in_flight._value.get
            wait_until(lambda: in_flight() == 24, timeout_s=20,
                       what=lambda: f"24 in flight: {in_flight()}, done {[repr(j.exception()) for j in jobs if j.done()]}")
            stopping = pool.submit(server.call, server.handle.stop(10.0))
            wait_until(lambda: server.handle.engine.draining, timeout_s=10, what="the drain to begin")
            assert not any(j.done() for j in jobs)
            release.set()
            stopping.result(20)
            for i, j in enumerate(jobs):
                np.testing.assert_allclose(j.result(10)[0], model.decode(z[i : i + 1])[0].transpose(1, 2, 0), atol=1e-5)
            with pytest.raises(UnavailableError):
                c.decode(z[:1], timeout_s=2)
    finally:
        release.set()
        server.stop()


def test_a_client_deadline_shorter_than_the_work_is_deadline_exceeded(toy_server):
    server, _ = toy_server
    runtime = server.handle.engine.served().runtime("encoder")
    inner = runtime.run
    runtime.run = lambda inputs: (time.sleep(0.5), inner(inputs))[1]
    try:
        with Client(server.address) as c, pytest.raises(DeadlineExceededError):
            c.encode(np.zeros((1, 8, 8, 1), np.uint8), timeout_s=0.1)
    finally:
        del runtime.run  # the class's run again


def test_queue_full_and_oversized_messages_are_resource_exhausted(toy_repo):
    root, _ = toy_repo
    cfg = make_config(root, max_queue_size=1, max_message_mb=1, max_request_items=4096)
    with ServerThread(cfg) as server, Client(server.address) as c:
        with pytest.raises(ResourceExhaustedError, match="queue holds 0 of 1"):
            c.encode(np.zeros((2, 8, 8, 1), np.uint8))
        with pytest.raises(ResourceExhaustedError):
            c.encode(np.zeros((4096, 8, 8, 1), np.float32))  # 1 MiB of pixels + framing > 1 MiB


def test_auth_rejects_missing_or_wrong_tokens_but_leaves_health_open(toy_repo):
    root, _ = toy_repo
    with ServerThread(make_config(root, token="s3cret")) as server:
        with Client(server.address) as c, pytest.raises(UnauthenticatedError, match="bearer token"):
            c.list_models()
        with Client(server.address, token="wrong") as c, pytest.raises(UnauthenticatedError):
            c.list_models()
        with Client(server.address, token="s3cret") as c:
            assert [m.name for m in c.list_models()] == ["toy"]
        assert health_status(server.address) == health_pb2.HealthCheckResponse.SERVING


def _cert(subject: str, issuer_key, issuer_name, key, *, ca: bool):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA and server + client certs signed by it, as PEM files."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test-ca", ca_key, None, ca_key, ca=True)
    files = {"ca.pem": ca.public_bytes(serialization.Encoding.PEM)}
    for who in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        files[f"{who}.pem"] = _cert("localhost", ca_key, ca.subject, key, ca=False).public_bytes(
            serialization.Encoding.PEM)
        files[f"{who}.key"] = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    for name, data in files.items():
        (d / name).write_bytes(data)
    return {k: str(d / k) for k in files}


def test_tls_and_mutual_tls(toy_repo, pki):
    root, _ = toy_repo
    tls = {"tls_cert": pki["server.pem"], "tls_key": pki["server.key"]}
    with ServerThread(make_config(root, **tls)) as server:
        addr = f"localhost:{server.port}"
        with Client(addr, tls_ca=pki["ca.pem"]) as c:
            assert c.list_models()[0].name == "toy"
        with Client(addr, retries=0) as c, pytest.raises(UnavailableError):
            c.list_models(timeout_s=2)  # plaintext against a TLS port
    with ServerThread(make_config(root, tls_client_ca=pki["ca.pem"], **tls)) as server:
        addr = f"localhost:{server.port}"
        with Client(addr, tls_ca=pki["ca.pem"], retries=0) as c, pytest.raises(UnavailableError):
            c.list_models(timeout_s=2)  # no client certificate
        with Client(addr, tls_ca=pki["ca.pem"], tls_cert=pki["client.pem"], tls_key=pki["client.key"]) as c:
            assert c.list_models()[0].name == "toy"


def test_metrics_endpoint_counts_requests_failures_and_batches(toy_repo):
    root, _ = toy_repo
    port = free_port()
    with ServerThread(make_config(root, metrics_port=port)) as server, Client(server.address) as c:
        c.encode(np.zeros((3, 8, 8, 1), np.uint8))
        with pytest.raises(Exception):  # noqa: B017 - any client error will do
            c.encode(np.zeros((1, 2, 2, 1), np.uint8))
        text = urllib.request.urlopen(f"http://127.0.0.1:{server.handle.metrics_port}/metrics", timeout=5).read().decode()
    assert 'latentdial_requests_total{rpc="Encode"} 2.0' in text
    assert 'latentdial_failures_total{code="INVALID_ARGUMENT",rpc="Encode"} 1.0' in text
    assert 'latentdial_batch_size_sum{graph="encoder",model="toy/1"}' in text
    assert "latentdial_request_seconds_bucket" in text and "latentdial_in_flight_requests" in text


def test_config_flags_win_over_env_vars_which_win_over_defaults():
    import argparse

    p = argparse.ArgumentParser()
    add_config_arguments(p)
    env = {"LATENTDIAL_MAX_BATCH_SIZE": "16", "LATENTDIAL_BATCHING": "off", "LATENTDIAL_PORT": "7000"}
    cfg = config_from_sources(p.parse_args(["--port", "9000"]), env)
    assert (cfg.port, cfg.max_batch_size, cfg.batching, cfg.repository) == (9000, 16, False, "models")
    with pytest.raises(ValueError, match="LATENTDIAL_MAX_QUEUE_SIZE"):
        config_from_sources(None, {"LATENTDIAL_MAX_QUEUE_SIZE": "many"})
    with pytest.raises(ValueError, match="tls_key"):
        ServerConfig(tls_cert="a.pem")
    assert ServerConfig().max_message_bytes > 1024 * 64 * 64 * 3 * 4


def test_client_retries_while_the_server_is_unavailable(toy_repo):
    root, _ = toy_repo
    port = free_port()
    server = ServerThread(make_config(root, port=port))
    starter = threading.Timer(0.4, server.start)
    starter.start()
    try:
        with Client(f"127.0.0.1:{port}", retries=6, retry_backoff_s=0.1) as c:
            assert c.list_models()[0].name == "toy"
    finally:
        starter.join()
        server.stop()


def test_serve_command_prints_ready_and_exits_zero_on_sigterm(toy_repo):
    root, _ = toy_repo
    port = free_port()
    env = dict(os.environ, LATENTDIAL_METRICS_PORT="0", LATENTDIAL_HOST="127.0.0.1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "latentdial.cli", "serve", "--repository", str(root), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
    )
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("ready"):
                break
        assert any(f"127.0.0.1:{port}" in x for x in lines), lines
        assert any("toy/1 (default): onnxruntime-cpu" in x for x in lines), lines
        assert health_status(f"127.0.0.1:{port}") == health_pb2.HealthCheckResponse.SERVING
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_while_models_load_health_is_not_serving_and_rpcs_are_unavailable(toy_repo, monkeypatch):
    import asyncio

    from latentdial.serving import repository as repo_mod

    root, _ = toy_repo
    real_load = repo_mod.ModelRepository.load.__func__
    gate = threading.Event()

    def slow_load(cls, *args, **kwargs):
        gate.wait(10)
        return real_load(cls, *args, **kwargs)

    monkeypatch.setattr(repo_mod.ModelRepository, "load", classmethod(slow_load))
    port = free_port()
    server = ServerThread(make_config(root, port=port))
    server._thread.start()
    from latentdial.serving.server import create_server

    pending = asyncio.run_coroutine_threadsafe(create_server(server.config), server.loop)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.time() + 10
        while True:
            try:
                status = health_status(address)
                break
            except grpc.RpcError:
                assert time.time() < deadline
                time.sleep(0.05)
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        with Client(address, retries=0) as c, pytest.raises(UnavailableError, match="loading"):
            c.list_models()
        gate.set()
        server.handle, server.port = pending.result(30)
        assert health_status(address) == health_pb2.HealthCheckResponse.SERVING
    finally:
        gate.set()
        server.stop()


def test_json_logs_carry_the_request_id(capsys):
    import json
    import logging

    from latentdial.serving.structured_log import configure_logging, request_id

    configure_logging("json")
    root = logging.getLogger()
    try:
        token = request_id.set("abc-42")
        logging.getLogger("latentdial.test").warning("decoded %d images", 3)
        request_id.reset(token)
    finally:
        for h in [h for h in root.handlers if getattr(h, "_latentdial", False)]:
            root.removeHandler(h)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    doc = json.loads(line)
    assert doc["request_id"] == "abc-42" and doc["message"] == "decoded 3 images" and doc["level"] == "WARNING"
