"""Scale-out: worker processes sharing one port, client-side round robin, deployment manifests.

The multi-process tests start real ``latentdial serve`` processes on 127.0.0.1 and read
each worker's own Prometheus endpoint to see which process answered.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "loadtest"))

from fixtures.load import ClosedLoop, wait_until
from fixtures.toy_model import build_toy_model
from serverproc import ServerProcess, free_port

from latentdial.client import AsyncClient, Client
from latentdial.serving.config import ServerConfig
from latentdial.serving.supervisor import RestartPolicy, Supervisor, worker_config, worker_env
from latentdial.v1 import latentdial_pb2 as pb
from latentdial.v1 import latentdial_pb2_grpc as pb_grpc

N_REQUESTS = 40


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    build_toy_model(root, "toy")
    return root


def _free_port_pair() -> int:
    """A port p such that p and p + 1 are both free on 127.0.0.1."""
    for _ in range(50):
        p = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p + 1))
            except OSError:
                continue
        return p
    raise RuntimeError("no two consecutive free ports")


class Workers:
    """``latentdial serve --workers N`` as a subprocess with its output collected."""

    def __init__(self, repository: Path, n: int) -> None:
        self.port, self.metrics_port = free_port(), _free_port_pair()
        cmd = [
            sys.executable, "-m", "latentdial.cli", "serve", "--repository", str(repository),
            "--host", "127.0.0.1", "--port", str(self.port), "--metrics-port", str(self.metrics_port), "--http-port", "0",
            "--workers", str(n), "--grace-s", "2",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LATENTDIAL_")}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout_s: float = 60.0) -> re.Match:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            m = re.search(pattern, self.output())
            if m:
                return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in the supervisor's output:\n{self.output()}")

    def worker_pids(self) -> list[int]:
        return [int(p) for p in re.findall(r"started worker \d+ pid (\d+)", self.output())]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._reader.join(timeout=5)


def _encode_request() -> pb.EncodeRequest:
    img = np.zeros((1, 8, 8, 1), np.uint8)
    return pb.EncodeRequest(images=pb.ImageBatch(tensor=pb.Tensor(
        dtype=pb.DATA_TYPE_UINT8, shape=list(img.shape), raw=img.tobytes())))


def _encode_on_fresh_connections(address: str, n: int) -> None:
    for _ in range(n):
        # A local subchannel pool gives every channel its own TCP connection.
        with grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
            pb_grpc.LatentDialStub(ch).Encode(_encode_request(), timeout=10)


def _encode_count(metrics_port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "latentdial_requests_total" and s.labels.get("rpc") == "Encode":
                return s.value
    return 0.0


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_two_workers_share_one_port_and_both_serve_requests(repository: Path) -> None:
    w = Workers(repository, 2)
    try:
        w.wait_for(r"ready: 2 workers serving")
        _encode_on_fresh_connections(f"127.0.0.1:{w.port}", N_REQUESTS)
        counts = [_encode_count(w.metrics_port + i) for i in range(2)]
        assert sum(counts) == N_REQUESTS
        assert all(c > 0 for c in counts), f"SO_REUSEPORT spread connections over both workers: {counts}"
        pids = w.worker_pids()
        assert len(set(pids)) == 2
        for pid in pids:
            assert f"pid {pid}] ready" in w.output(), "each worker's lines carry its pid"
    finally:
        code = w.stop()
    assert code == 0, w.output()
    assert "all workers stopped" in w.output()
    assert all(_gone(pid) for pid in pids), "SIGTERM reached every worker"


def _encode_one(c: Client) -> None:
    c.encode(np.zeros((1, 8, 8, 1), np.uint8))


def _answers_within(load: ClosedLoop, seconds: float) -> int:
    before = len(load.outcomes)
    time.sleep(seconds)
    return len(load.outcomes) - before


def test_a_killed_worker_is_restarted_while_the_other_serves_and_retrying_clients_see_no_failure(
    repository: Path,
) -> None:
    w = Workers(repository, 2)
    try:
        w.wait_for(r"ready: 2 workers serving")
        pids = w.worker_pids()
        # one TCP connection per thread, so the kernel spreads the threads over the workers
        one_connection_each = [("grpc.use_local_subchannel_pool", 1)]
        with ClosedLoop(f"127.0.0.1:{w.port}", _encode_one, n_threads=4, options=one_connection_each) as load:
            assert _answers_within(load, 1.0) > 0
            killed_at = time.monotonic()
            os.kill(pids[1], signal.SIGKILL)
            assert _answers_within(load, 0.5) > 0, "the other worker keeps serving"
            back = w.wait_for(r"worker 1 pid (\d+) is back and ready", timeout_s=30)
            back_after_s = time.monotonic() - killed_at
            assert _answers_within(load, 1.0) > 0
        assert load.failures == [], load.failures[:5]
        assert back_after_s < 20, f"the dead worker came back only after {back_after_s:.1f} s"
        new_pid = int(back.group(1))
        assert new_pid not in pids and not _gone(pids[0]), "worker 0 kept running; worker 1 is a new process"
        assert f"worker 1 pid {pids[1]} exited with code -9" in w.output()
        before = _encode_count(w.metrics_port + 1)
        _encode_on_fresh_connections(f"127.0.0.1:{w.port}", N_REQUESTS)
        assert _encode_count(w.metrics_port + 1) > before, "the restarted worker takes connections again"
    finally:
        code = w.stop()
    assert code == 0, w.output()
    assert all(_gone(pid) for pid in [*pids, new_pid])


def test_workers_that_crash_in_a_loop_stop_the_service_for_the_process_manager(repository: Path) -> None:
    cfg = ServerConfig(repository=str(repository), host="127.0.0.1", port=0, metrics_port=0, http_port=0, grace_s=1)
    out = io.StringIO()
    sup = Supervisor(cfg, 2, out=out, policy=RestartPolicy(backoff_s=0.05, max_restarts=1, window_s=60))
    sup.start()
    result: list[int] = []
    watcher = threading.Thread(target=lambda: result.append(sup.watch()), daemon=True)
    watcher.start()
    try:
        wait_until(lambda: "ready: 2 workers" in out.getvalue(), what=out.getvalue)
        first = sup.workers[0].proc.pid
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: "is back and ready" in out.getvalue(), what=out.getvalue)
        os.kill(sup.workers[1].proc.pid, signal.SIGKILL)
        watcher.join(timeout=30)
    finally:
        if watcher.is_alive():
            sup.request_stop()
            watcher.join(timeout=30)
    assert result and result[0] != 0, out.getvalue()
    assert "crash loop" in out.getvalue() and "process manager restarts the service" in out.getvalue()
    assert all(p.poll() is not None for p in sup.procs), "every worker was stopped"


def test_a_stop_during_a_restart_backoff_stops_cleanly_without_restarting(repository: Path) -> None:
    cfg = ServerConfig(repository=str(repository), host="127.0.0.1", port=0, metrics_port=0, http=False, grace_s=1)
    out = io.StringIO()
    sup = Supervisor(cfg, 2, out=out, policy=RestartPolicy(backoff_s=60, max_backoff_s=60))
    sup.start()
    result: list[int] = []
    watcher = threading.Thread(target=lambda: result.append(sup.watch()), daemon=True)
    watcher.start()
    try:
        wait_until(lambda: "ready: 2 workers" in out.getvalue(), what=out.getvalue)
        os.kill(sup.workers[1].proc.pid, signal.SIGKILL)
        wait_until(lambda: "restarting it in 60.00 s" in out.getvalue(), what=out.getvalue)
        sup.request_stop()
        watcher.join(timeout=30)
    finally:
        if watcher.is_alive():
            sup.request_stop()
            watcher.join(timeout=30)
    assert result == [0], out.getvalue()
    assert "restarted worker" not in out.getvalue() and "all workers stopped" in out.getvalue()


def test_a_worker_that_cannot_start_stops_the_supervisor_instead_of_restarting_in_a_loop(repository: Path) -> None:
    missing = repository.parent / "no-such-repository"
    cfg = ServerConfig(repository=str(missing), host="127.0.0.1", port=0, metrics_port=0, http_port=0, grace_s=1)
    out = io.StringIO()
    sup = Supervisor(cfg, 2, out=out)
    sup.start()
    code = sup.watch()
    assert code != 0
    assert "before it was ready" in out.getvalue() and "restarted worker" not in out.getvalue(), out.getvalue()


def test_restart_backoff_doubles_for_quick_re_crashes_up_to_its_cap() -> None:
    p = RestartPolicy(backoff_s=0.5, max_backoff_s=3.0)
    assert [p.delay(k) for k in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_sdk_clients_with_round_robin_spread_calls_over_servers(repository: Path) -> None:
    m1, m2 = free_port(), free_port()
    x = np.zeros((1, 8, 8, 1), np.uint8)
    round_robin = [("grpc.lb_policy_name", "round_robin")]
    with (
        ServerProcess(repository=repository, args=["--metrics-port", str(m1)]) as a,
        ServerProcess(repository=repository, args=["--metrics-port", str(m2)]) as b,
    ):
        target = f"ipv4:{a.address},{b.address}"
        with Client(target, options=round_robin) as c:
            for _ in range(20):
                c.encode(x, timeout_s=10)
        counts = [_encode_count(m1), _encode_count(m2)]
        assert sum(counts) == 20 and min(counts) > 0, f"Client: {counts}"

        async def twenty_async_calls() -> None:
            async with AsyncClient(target, options=round_robin) as c:
                for _ in range(20):
                    await c.encode(x, timeout_s=10)

        asyncio.run(twenty_async_calls())
        more = [_encode_count(m1) - counts[0], _encode_count(m2) - counts[1]]
    assert sum(more) == 20 and min(more) > 0, f"AsyncClient: {more}"


def test_worker_config_shares_the_port_and_offsets_the_metrics_port() -> None:
    cfg = ServerConfig(port=50051, metrics_port=9090, workers=4, token="t")
    w2 = worker_config(cfg, 2)
    assert (w2.port, w2.metrics_port, w2.workers, w2.reuse_port) == (50051, 9092, 1, True)
    assert worker_config(ServerConfig(metrics_port=0, workers=2), 1).metrics_port == 0
    env = worker_env(w2, base={"LATENTDIAL_TLS_CERT": "stale.pem", "PATH": "/bin"})
    assert env["LATENTDIAL_METRICS_PORT"] == "9092" and env["LATENTDIAL_WORKERS"] == "1"
    assert env["LATENTDIAL_TOKEN"] == "t" and env["LATENTDIAL_BATCHING"] == "true"
    assert "LATENTDIAL_TLS_CERT" not in env, "fields that are None do not leak from the environment"


# ------------------------------------------------------------- manifests --


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_k8s_manifests_parse_and_probe_through_grpc_health() -> None:
    docs = {d["kind"]: d for p in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")) for d in _docs(p)}
    assert {"Deployment", "Service", "Namespace", "PodDisruptionBudget", "Kustomization"} <= set(docs)
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == 50051
    assert container["resources"]["limits"]["cpu"] and container["resources"]["limits"]["memory"]
    assert docs["Service"]["spec"]["clusterIP"] == "None", "headless, for client-side balancing"
    kust = docs["Kustomization"]
    for res in kust["resources"]:
        assert (ROOT / "deploy" / "k8s" / res).is_file()


def test_envoy_config_balances_grpc_calls_over_http2_with_health_checks() -> None:
    (cfg,) = _docs(ROOT / "deploy" / "envoy" / "envoy.yaml")
    (cluster,) = cfg["static_resources"]["clusters"]
    assert cluster["lb_policy"] == "ROUND_ROBIN"
    opts = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in opts["explicit_http_config"]
    assert "grpc_health_check" in cluster["health_checks"][0]
    (listener,) = cfg["static_resources"]["listeners"]
    assert listener["address"]["socket_address"]["port_value"] == 50051
