"""make bench-peers, piece by piece: the plan, the report, the peers' graph, their process handling,
and the latentdial column measured for real with a tiny duration.

The peers themselves (PyTriton, KServe) run only where their venvs exist (make pytriton-venv,
make kserve-venv); everything else runs everywhere.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "benchmarks" / "peers"))

import bench_peers
import report
from onnx_graph import OnnxGraph
from peer_cli import READY
from processes import PeerProcess, PeerStartError

MODEL_DIR = bench_peers.default_model(ROOT / "models")


def _row(server: str, protocol: str, graph: str, batch: int, callers: int, ips: float, **kw) -> dict:
    return {"server": server, "protocol": protocol, "graph": graph, "batch": batch, "callers": callers,
            "requests": int(ips), "errors": 0, "seconds": 1.0, "req_per_s": ips / batch, "items_per_s": ips,
            "p50_ms": 1.5, "p95_ms": 2.0, "p99_ms": 3.25} | kw


def test_plan_covers_every_graph_batch_and_caller_count():
    cells = bench_peers.plan("m", ["encoder", "decoder"], [1, 64], [1, 8, 64], [64, 64, 1], 6)
    assert len(cells) == 12
    assert {(c["graph"], c["batch"], c["callers"]) for c in cells} == {
        (g, b, c) for g in ("encoder", "decoder") for b in (1, 64) for c in (1, 8, 64)}
    assert all(c["image_hwc"] == [64, 64, 1] and c["latent_dim"] == 6 for c in cells)


def test_default_model_is_the_newest_version_named_by_default():
    name = (ROOT / "models" / "default").read_text().strip()
    assert MODEL_DIR.parent.name == name
    assert int(MODEL_DIR.name) == max(int(p.name) for p in MODEL_DIR.parent.iterdir() if p.name.isdigit())


def test_tables_put_servers_side_by_side_with_ratios_and_reasons():
    rows = [_row("latentdial", "oip-grpc", "encoder", 64, 8, 4000.0),
            _row("latentdial", "v1-grpc", "encoder", 64, 8, 5000.0),
            _row("triton", "oip-grpc", "encoder", 64, 8, 2000.0),
            {"server": "kserve", "protocol": "oip-grpc", "graph": "encoder", "batch": 64, "callers": 8,
             "status": "not run: .venv-kserve missing (make kserve-venv)"}]
    detail = report.detail_table(rows)
    assert "| encoder | 64 | 8 | Triton (PyTriton) OIP gRPC | 31 | 2,000 | 1.50 | 3.25 | 0 | 0.50x |" in detail
    assert "| encoder | 64 | 8 | latentdial v1 Encode | 78 | 5,000 | 1.50 | 3.25 | 0 | 1.25x |" in detail
    assert "not run: .venv-kserve missing (make kserve-venv)" in detail
    summary = report.summary_table(rows)
    head, _, line = summary.splitlines()
    assert head.split(" | ")[3:] == ["latentdial OIP gRPC", "latentdial v1 Encode", "Triton (PyTriton) OIP gRPC",
                                     "KServe ModelServer OIP gRPC |"]
    assert line == "| encoder | 64 | 8 | 4,000 (3.2) | 5,000 (3.2) | 2,000 (3.2) | not run |"


def test_report_files_hold_the_table_the_rows_and_the_load(tmp_path):
    rows = [_row("latentdial", "oip-grpc", "decoder", 1, 1, 800.0)]
    text = report.markdown(rows, {"model": "m/1"}, "load line: quiet", "0.10 0.20 0.30", "0.40 0.50 0.60")
    md, js = report.write(tmp_path, rows, {"model": "m/1"}, {"busy": False}, text)
    assert "load average before: 0.10 0.20 0.30" in md.read_text()
    assert "load average after: 0.40 0.50 0.60" in md.read_text()
    assert md.read_text().index("before") < md.read_text().index("| decoder | 1 | 1 | 800")
    assert json.loads(js.read_text())["rows"][0]["items_per_s"] == 800.0


def test_median_round_is_reported_and_failed_rounds_do_not_count():
    rounds = [[_row("triton", "oip-grpc", "encoder", 1, 1, x)] for x in (300.0, 100.0, 200.0)]
    rounds.append([{"server": "triton", "protocol": "oip-grpc", "graph": "encoder", "batch": 1, "callers": 1,
                    "status": "client failed"}])
    (row,) = bench_peers.median_rows(rounds)
    assert row["items_per_s"] == 200.0
    assert row["rounds_items_per_s"] == [300.0, 100.0, 200.0, None]


@pytest.mark.parametrize("graph", ["encoder", "decoder"])
def test_peer_graph_computes_what_latentdial_serves(graph):
    """The peers' OnnxGraph, in the OIP layout, equals latentdial's runtime on the same file."""
    from latentdial.manifest import Manifest
    from latentdial.serving.repository import SERVING_RUNTIME_OPTIONS
    from latentdial.serving.runtimes import load_runtime

    files, sessions = bench_peers.served_graphs(MODEL_DIR)
    peer = OnnxGraph(MODEL_DIR / files[graph], graph, sessions[graph])
    runtime = load_runtime(MODEL_DIR, Manifest.load(MODEL_DIR), graph, preference="onnxruntime-cpu",
                           options=SERVING_RUNTIME_OPTIONS)
    assert (runtime.path.name, runtime.session_set) == (files[graph], sessions[graph]["set"])
    rng = np.random.default_rng(1)
    if graph == "encoder":
        x = rng.random((3, *peer.image_hwc), dtype=np.float32)
        got, want = peer.infer(x), runtime.run({"images": x.transpose(0, 3, 1, 2)})
    else:
        x = rng.standard_normal((3, peer.latent_dim)).astype(np.float32)
        got = peer.infer(x)
        want = {"images": runtime.run({"latents": x})["images"].transpose(0, 2, 3, 1)}
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=1e-5)
    assert set(peer.signature()[1]) == set(want)


def test_answers_are_checked_against_onnx_runtime_on_the_same_file(tmp_path):
    from load_client import input_array

    files, sessions = bench_peers.served_graphs(MODEL_DIR)
    reference = {"model_dir": MODEL_DIR, "files": files, "sessions": sessions}
    cell = bench_peers.plan("dsprites", ["encoder"], [3], [1], [64, 64, 1], 6)[0]
    good = OnnxGraph(MODEL_DIR / files["encoder"], "encoder", sessions["encoder"]).infer(input_array(cell))
    row = cell | _row("triton", "oip-grpc", "encoder", 3, 1, 100.0)
    np.savez(tmp_path / "encoder-b3.npz", **good)
    (checked,) = bench_peers.check_answers([row], tmp_path, reference)
    assert checked["max_abs_diff"] < 1e-5 and report.measured(checked)
    np.savez(tmp_path / "encoder-b3.npz", mean=good["mean"] + 0.01, log_var=good["log_var"])
    (wrong,) = bench_peers.check_answers([row], tmp_path, reference)
    assert wrong["status"].startswith("wrong answers: max abs diff 1.00e-02") and not report.measured(wrong)


def test_peer_that_exits_reports_its_log(tmp_path):
    script = tmp_path / "peer.py"
    script.write_text("import sys\nprint('cannot bind the port')\nsys.exit(3)\n")
    with pytest.raises(PeerStartError, match=r"code 3(.|\n)*cannot bind the port"):
        PeerProcess(Path(sys.executable), script, [], tmp_path / "peer.log", startup_timeout_s=30).start()


def test_peer_is_stopped_with_sigterm_after_ready(tmp_path):
    script = tmp_path / "peer.py"
    script.write_text("import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(7))\n"
                      f"print({READY!r}, flush=True)\nwhile True: time.sleep(0.1)\n")
    with PeerProcess(Path(sys.executable), script, [], tmp_path / "peer.log", startup_timeout_s=30) as peer:
        assert peer.proc is not None and peer.proc.poll() is None
    assert peer.proc.returncode == 7


def test_ready_is_seen_inside_a_line_another_process_left_half_written(tmp_path):
    """tritonserver shares the peer's pipe: its log line can be split around the peer's ready."""
    script = tmp_path / "peer.py"
    script.write_text("import sys, time\nsys.stdout.write('I1205 model_lifecycle.cc:839] successfully')\n"
                      f"sys.stdout.flush()\nprint({READY!r}, flush=True)\nprint(' loaded', flush=True)\n"
                      "print('already started', flush=True)\ntime.sleep(60)\n")
    with PeerProcess(Path(sys.executable), script, [], tmp_path / "peer.log", startup_timeout_s=20) as peer:
        assert peer.proc is not None and peer.proc.poll() is None


@pytest.mark.integration
@pytest.mark.slow
def test_latentdial_column_measured_end_to_end(tmp_path):
    """A real latentdial server and the real load clients, 0.3 s per cell."""
    code = bench_peers.main(["--servers", "latentdial", "--graphs", "encoder", "--callers", "1", "2",
                             "--batches", "1", "--duration", "0.3", "--warmup", "0.1", "--out", str(tmp_path)])
    rows = json.loads((tmp_path / "bench_peers.json").read_text())["rows"]
    assert code == 0
    by = {(r["protocol"], r["callers"]): r for r in rows}
    assert set(by) == {("oip-grpc", 1), ("oip-grpc", 2), ("v1-grpc", 1), ("v1-grpc", 2)}
    v1 = [by[("v1-grpc", c)] for c in (1, 2)]
    assert all(report.measured(r) and r["errors"] == 0 and r["items_per_s"] > 0 for r in v1), v1
    assert all(r["max_abs_diff"] <= bench_peers.ANSWER_TOLERANCE for r in v1)
    for c in (1, 2):
        oip = by[("oip-grpc", c)]
        if (ROOT / bench_peers.CLIENT_VENV / "bin" / "python").exists():
            assert report.measured(oip) and oip["errors"] == 0, oip
        else:
            assert "make tritonclient-venv" in oip["status"]
    md = (tmp_path / "bench_peers.md").read_text()
    assert "load average before:" in md and "load average after:" in md and "latentdial v1 Encode" in md


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("peer", ["triton", "kserve"])
def test_peer_column_measured_end_to_end(tmp_path, peer):
    """One tiny cell against a real peer server, where its venv and the client's exist."""
    venv = bench_peers.PEER_VENVS[peer][0]
    for v in (venv, bench_peers.CLIENT_VENV):
        if not (ROOT / v / "bin" / "python").exists():
            pytest.skip(f"{v} missing (make {bench_peers.MAKE_TARGET[v]})")
    bench_peers.main(["--servers", peer, "--callers", "2", "--batches", "3", "--duration", "0.3",
                      "--warmup", "0.1", "--out", str(tmp_path)])
    rows = json.loads((tmp_path / "bench_peers.json").read_text())["rows"]
    assert {r["graph"] for r in rows} == {"encoder", "decoder"}
    assert all(report.measured(r) and r["errors"] == 0 and r["server"] == peer for r in rows), rows
    assert all(r["max_abs_diff"] <= bench_peers.ANSWER_TOLERANCE for r in rows)  # the same work as latentdial


def test_latentdial_queue_holds_every_callers_request():
    cells = bench_peers.plan("m", ["encoder"], [1, 64], [1, 8, 64], [64, 64, 1], 6)
    flags = bench_peers.latentdial_flags(cells)
    assert flags[flags.index("--max-queue-size") + 1] == str(64 * 64)
    assert int(flags[flags.index("--max-request-items") + 1]) >= 64
