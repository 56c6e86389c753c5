"""benchmarks/bench_edit_kinds.py: its pieces, and one tiny run end to end against a real server.

The end-to-end run does everything the full benchmark does (trains the shipped StarGAN recipe
for 2 steps, exports it, serves it beside models/dsprites/5 from one server, edits through the
SDK) with one 0.2 s cell of one round.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_edit_kinds as bench  # noqa: E402


def _row(kind: str, callers: int, images: int, ips: float, p50: float = 2.0) -> dict:
    return {"kind": kind, "callers": callers, "images": images, "images_per_s": ips, "p50_ms": p50, "p99_ms": 2 * p50}


def test_cells_are_callers_by_images():
    assert bench.Cell.parse("16x1") == bench.Cell(16, 1)
    assert str(bench.Cell.parse("1X64")) == "1x64"
    for bad in ("16", "0x1", "ax2"):
        with pytest.raises(argparse.ArgumentTypeError):
            bench.Cell.parse(bad)


def test_defaults_are_the_three_cells_of_the_task():
    args = bench.parse_args([])
    assert [str(c) for c in args.cells] == ["1x1", "16x1", "1x64"]
    assert args.editor_model is None and args.vae_model == ROOT / "models" / "dsprites" / "5"


def test_ratio_is_editor_over_vae_per_cell():
    rows = [_row("vae", 1, 1, 400.0, 2.0), _row("editor", 1, 1, 100.0, 8.0), _row("vae", 1, 64, 1000.0)]
    assert bench.ratios(rows) == [{"callers": 1, "images": 1, "editor_over_vae_images_per_s": 0.25,
                                   "editor_over_vae_p50": 4.0}]  # 1x64 has no editor row: no ratio


def test_median_round_reports_the_middle_round_and_every_rounds_errors():
    rounds = [bench.Round("vae", 1, 1, n, 1.0, ips, 1.0, 2.0, e, 0, [[[1, 64, 64, 1], [1, 6]]])
              for n, ips, e in ((10, 30.0, 0), (12, 10.0, 1), (11, 20.0, 0))]
    row = bench.median_round(rounds)
    assert row["images_per_s"] == 20.0 and row["rounds_images_per_s"] == [30.0, 10.0, 20.0]
    assert row["errors"] == 1 and row["answers"] == 32
    assert row["answer_shapes"] == [[[1, 64, 64, 1], [1, 6]]]


def test_served_files_are_read_from_the_server_log():
    log = ("2026-12-05 03:44:29,268 INFO latentdial.serving.runtimes [-] dsprites/5 encoder runs on onnxruntime-cpu "
           "(encoder.int8.onnx, tuned options, max batch 64)\n"
           "2026-12-05 03:44:30,712 INFO latentdial.serving.runtimes [-] dsprites_stargan/1 classifier: runtime "
           "tensorrt skipped: tensorrt runs the encoder and decoder of a VAE\n")
    assert bench.served_files(log) == {("dsprites", "5", "encoder"): "encoder.int8.onnx (onnxruntime-cpu, tuned options)"}


@pytest.mark.integration
@pytest.mark.slow
def test_tiny_run_measures_both_kinds_on_one_real_server(tmp_path):
    code = bench.main(["--cells", "1x1", "--duration", "0.2", "--warmup", "0.05", "--repeat", "1",
                       "--out", str(tmp_path)])
    result = json.loads((tmp_path / "bench_edit_kinds.json").read_text())
    assert code == 0
    assert set(result["models"]) == {"vae", "editor"}
    assert (result["models"]["vae"]["name"], result["models"]["vae"]["version"]) == ("dsprites", "5")
    assert result["models"]["editor"]["kind"] == "editor"
    for kind, m in result["models"].items():
        graphs = {g["graph"] for g in m["graphs"]}
        assert graphs == ({"encoder", "decoder"} if kind == "vae" else {"classifier", "editor"})
        assert all(g["bytes"] > 0 and g["parameters"] > 0 for g in m["graphs"])
        assert set(m["served"]) == graphs  # every graph's served file was read from the log
        assert m["edit"] == {"scale": pytest.approx(0.8)}  # the card's middle scale (0.5 .. 1.0)
    cells = {r["kind"]: r for r in result["cells"]}
    assert set(cells) == {"vae", "editor"}
    for r in cells.values():
        assert (r["callers"], r["images"]) == (1, 1)
        assert r["images_per_s"] > 0 and r["answers"] > 0 and r["p99_ms"] >= r["p50_ms"] > 0
        assert r["errors"] == 0 and r["bad_answers"] == 0, r
        assert r["answer_shapes"] == [[[1, 64, 64, 1], [1, 6]]]  # one image and its six codes, every answer
    assert [(q["callers"], q["images"]) for q in result["ratios"]] == [(1, 1)]
    assert result["ratios"][0]["editor_over_vae_images_per_s"] > 0
    assert "load average (1/5/15 min) before" in result["load"]["line"]
    md = (tmp_path / "bench_edit_kinds.md").read_text()
    assert "| 1 x 1 |" in md and "editor.onnx" in md and "encoder.onnx" in md
