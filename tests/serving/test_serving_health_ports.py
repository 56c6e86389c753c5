"""Readiness against liveness, and ports that another process holds (gRPC and metrics).

Readiness (health service "" and ``latentdial.v1.LatentDial``) is SERVING only while a model
version is servable; liveness (service ``liveness``) answers SERVING whenever the process is
up. A busy port fails start-up with one line that names the port and the flag to change,
and a lone server never shares its gRPC port through SO_REUSEPORT.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.server import ServerThread, health_status, http_status, make_config
from fixtures.toy_model import build_toy_model
from grpc_health.v1 import health_pb2

from latentdial.client import Client, NotFoundError
from latentdial.serving.config import ServerConfig
from latentdial.serving.ports import is_free
from latentdial.serving.server import LIVENESS_SERVICE, grpc_options

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "loadtest"))
from serverproc import ServerProcess, free_port  # noqa: E402

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "latentdial.cli", "serve", "--host", "127.0.0.1", "--grace-s", "1", "--http-port", "0",
            *args]


def run_serve(*args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATENTDIAL_")}
    return subprocess.run(serve_command(*args), capture_output=True, text=True, timeout=timeout_s, env=env)


def assert_one_clear_line(result: subprocess.CompletedProcess, *needles: str) -> None:
    out = (result.stdout + result.stderr).strip()
    assert result.returncode == 2, out
    assert len(out.splitlines()) == 1, f"expected one line, got:\n{out}"
    for needle in ("Traceback", "Event loop is closed", "add_port.cc"):
        assert needle not in out
    for needle in needles:
        assert needle in out, out


@pytest.fixture
def held_port():
    """A port held by a plain listening socket, as another program would hold it."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


# ------------------------------------------------------------------ readiness --


def test_readiness_is_not_serving_when_every_model_failed_to_load_while_liveness_is_serving(tmp_path):
    bad = build_toy_model(tmp_path, "bad", "1")
    (bad.path / "decoder.onnx").write_bytes(b"half a file")
    with ServerThread(make_config(tmp_path)) as server, Client(server.address) as c:
        assert health_status(server.address) == NOT_SERVING
        assert health_status(server.address, "latentdial.v1.LatentDial") == NOT_SERVING
        assert health_status(server.address, LIVENESS_SERVICE) == SERVING
        with pytest.raises(NotFoundError, match="serves no models"):
            c.model_info()


def test_http_readiness_is_503_when_nothing_is_servable_and_liveness_is_200(tmp_path):
    bad = build_toy_model(tmp_path, "bad", "1")
    (bad.path / "encoder.onnx").write_bytes(b"not onnx")
    with ServerThread(make_config(tmp_path)) as server:
        assert http_status(server.http_url + "/v2/health/ready") == 503
        assert http_status(server.http_url + "/healthz") == 503
        assert http_status(server.http_url + "/v2/health/live") == 200


def test_readiness_is_not_serving_for_an_empty_repository(tmp_path):
    with ServerThread(make_config(tmp_path)) as server:
        assert health_status(server.address) == NOT_SERVING
        assert health_status(server.address, LIVENESS_SERVICE) == SERVING


def test_readiness_and_liveness_are_serving_once_a_model_is_warm(toy_repo):
    root, _ = toy_repo
    with ServerThread(make_config(root)) as server:
        for service in ("", "latentdial.v1.LatentDial", LIVENESS_SERVICE):
            assert health_status(server.address, service) == SERVING, service


# ---------------------------------------------------------------------- ports --


def test_a_busy_metrics_port_fails_start_up_with_one_line_naming_the_port_and_the_flags(toy_repo, held_port):
    root, _ = toy_repo
    result = run_serve("--repository", str(root), "--port", "0", "--metrics-port", str(held_port))
    assert_one_clear_line(result, f"metrics port {held_port}", "address in use", "--metrics-port N",
                          "--metrics-port 0")


def test_a_busy_grpc_port_fails_start_up_with_address_in_use(toy_repo, held_port):
    root, _ = toy_repo
    result = run_serve("--repository", str(root), "--port", str(held_port), "--metrics-port", "0")
    assert_one_clear_line(result, f"127.0.0.1:{held_port}", "address in use", "--port N")


def test_a_second_server_on_a_port_another_server_holds_fails_and_the_first_keeps_serving(toy_repo):
    root, _ = toy_repo
    with ServerProcess(repository=root) as first:
        result = run_serve("--repository", str(root), "--port", str(first.port), "--metrics-port", "0")
        assert_one_clear_line(result, f"127.0.0.1:{first.port}", "address in use")
        assert health_status(first.address) == SERVING
        assert first.proc.poll() is None


def test_a_lone_server_is_refused_a_port_the_workers_of_a_supervisor_share(toy_repo):
    """The workers bind with SO_REUSEPORT; a lone server (without it) still gets "address in use"."""
    root, _ = toy_repo
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATENTDIAL_")}
    sup = subprocess.Popen(serve_command("--repository", str(root), "--port", str(port), "--metrics-port", "0",
                                         "--workers", "2"),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines = []
        for line in sup.stdout:
            lines.append(line)
            if "ready: 2 workers serving" in line:
                break
        else:
            pytest.fail("the supervisor never got ready:\n" + "".join(lines))
        lone = run_serve("--repository", str(root), "--port", str(port), "--metrics-port", "0")
        assert_one_clear_line(lone, f"127.0.0.1:{port}", "address in use")
        second = run_serve("--repository", str(root), "--port", str(port), "--metrics-port", "0", "--workers", "2")
        assert_one_clear_line(second, f"127.0.0.1:{port}", "address in use")
        assert health_status(f"127.0.0.1:{port}") == SERVING
    finally:
        sup.terminate()
        sup.communicate(timeout=30)


def test_a_supervisor_whose_second_worker_would_find_its_metrics_port_busy_fails_before_starting_any(toy_repo):
    root, _ = toy_repo
    for _ in range(50):  # a free port p whose neighbour p + 1 we can hold
        base = free_port()
        with socket.socket() as held:
            try:
                held.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
            held.listen()
            if not is_free("127.0.0.1", base):
                continue
            result = run_serve("--repository", str(root), "--port", "0", "--metrics-port", str(base),
                               "--workers", "2")
            assert_one_clear_line(result, f"metrics port {base + 1}", "--metrics-port 0")
            assert "started worker" not in result.stdout
            return
    pytest.fail("found no free port next to one we could hold")


def test_only_supervised_workers_ask_grpc_for_so_reuseport():
    assert dict(grpc_options(ServerConfig()))["grpc.so_reuseport"] == 0
    assert dict(grpc_options(ServerConfig(reuse_port=True)))["grpc.so_reuseport"] == 1


def test_is_free_sees_a_listening_socket_and_its_release():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert not is_free("127.0.0.1", port)
        assert not is_free("0.0.0.0", port)
    assert is_free("127.0.0.1", port)
