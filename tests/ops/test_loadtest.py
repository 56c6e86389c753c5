"""The bounded headless load test (loadtest/run_headless.py) against real servers.

A 64x64 toy model (same I/O as the dSprites model, linear graphs so it is cheap) is
served by a real ``latentdial serve`` subprocess; Locust runs headless for a few seconds
with the full encode/decode/traverse/edit mix.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "loadtest"))

from fixtures.toy_model import build_toy_model
from serverproc import ServerProcess, require_loopback

RUNNER = ROOT / "loadtest" / "run_headless.py"
RPCS = {"Encode", "Decode", "Traverse", "EditAttributes"}


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    build_toy_model(root, "dsprites", image_shape=(1, 64, 64), latent_dim=10)
    return root


@pytest.fixture(scope="module")
def server(repository: Path, tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    with ServerProcess(repository=repository, log_path=log, args=["--runtime", "onnxruntime-cpu"]) as srv:
        yield srv


def _run(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(RUNNER), "--users", "4", "--spawn-rate", "4", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )


def _rows(out: Path) -> dict[str, dict]:
    return {r["name"]: r for r in json.loads((out / "summary.json").read_text())["rows"]}


def test_headless_run_starts_a_server_passes_writes_reports_and_stops_it(
    repository: Path, tmp_path: Path
) -> None:
    res = _run("--run-time", "5s", "--p99-ms", "2000", "--out", str(tmp_path),
               "--repository", str(repository))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "PASS" in res.stdout
    rows = _rows(tmp_path)
    assert RPCS <= set(rows), f"every RPC of the mix ran: {sorted(rows)}"
    for rpc in RPCS:
        assert rows[rpc]["requests"] > 0 and rows[rpc]["failures"] == 0
    agg = rows["Aggregated"]
    assert agg["requests"] == sum(rows[r]["requests"] for r in RPCS)
    assert (tmp_path / "report.html").stat().st_size > 0
    assert (tmp_path / "locust_stats.csv").is_file()
    assert (tmp_path / "locust_stats_history.csv").is_file()
    log = (tmp_path / "server.log").read_text()
    assert "ready" in log and "stopped" in log, "the server drained and stopped after the run"
    assert "server stopped (exit code 0)" in res.stdout


def test_headless_run_fails_when_p99_exceeds_the_bound(server: ServerProcess, tmp_path: Path) -> None:
    res = _run("--host", server.address, "--run-time", "5s", "--p99-ms", "0.5", "--out", str(tmp_path))
    assert res.returncode == 1
    assert "exceeds the bound of 0.5 ms" in res.stderr
    assert _rows(tmp_path)["Aggregated"]["failures"] == 0
    assert server.proc.poll() is None, "a server given with --host is left running"


def test_failures_are_reported_by_status_code_and_fail_the_run(repository: Path, tmp_path: Path) -> None:
    res = _run("--run-time", "3s", "--out", str(tmp_path), "--repository", str(repository),
               "--server-arg=--token=s3cret")
    assert res.returncode == 1, res.stdout + res.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["rows"][-1]["failures"] > 0
    assert summary["errors"], "failures are listed"
    assert all(": UNAUTHENTICATED" in msg for msg in summary["errors"]), summary["errors"]
    assert "server stopped" in res.stdout


def test_only_loopback_targets_are_accepted(tmp_path: Path) -> None:
    # 192.0.2.1 is TEST-NET-1; it is rejected before any connection is attempted.
    res = _run("--host", "192.0.2.1:50051", "--run-time", "1s", "--out", str(tmp_path), timeout=30)
    assert res.returncode == 2
    assert "only target this machine" in res.stderr
    assert require_loopback("127.0.0.1:1") == "127.0.0.1:1"
    assert require_loopback("localhost:50051") == "localhost:50051"
    with pytest.raises(ValueError, match="host:port"):
        require_loopback("127.0.0.1")


def test_soak_samples_throughput_errors_and_server_rss_and_plots_them(
    server: ServerProcess, tmp_path: Path
) -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "loadtest" / "soak.py"), "--duration-s", "3", "--sample-s", "1",
         "--concurrency", "2", "--rate-rps", "40", "--host", server.address,
         "--server-pid", str(server.pid), "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    import csv

    with open(tmp_path / "soak.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3
    assert sum(float(r["throughput_rps"]) for r in rows) > 0
    assert all(float(r["rss_mib"]) > 10 for r in rows), "the server's RSS is sampled every interval"
    result = json.loads((tmp_path / "soak.json").read_text())
    assert result["errors"] == 0
    assert result["requests"] == sum(int(r["requests"]) for r in rows)
    assert result["rss_mib_max"] >= result["rss_mib_start"] > 10
    assert (tmp_path / "images" / "soak.png").read_bytes()[:4] == b"\x89PNG"
    load = result["load"]  # the machine's load before and after, judged quiet or busy
    assert len(load["load_before"]) == 3 and len(load["load_after"]) == 3 and isinstance(load["busy"], bool)
    assert load["line"] in res.stdout
    assert server.proc.poll() is None, "a server given with --host is left running"
