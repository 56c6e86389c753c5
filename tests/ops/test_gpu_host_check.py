"""scripts/gpu_host_check.py on a CPU host: every stage runs up to its first CUDA call and says
``skipped: no CUDA``; the serving and training paths run through on the CPU stand-ins; stages are
isolated (a failing or hanging stage does not stop the next); the lr probe reads the lr Adam used.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "scripts" / "gpu_check"))

import gpu_host_check
from record import NO_CUDA, cuda_reason
from train_lr import adam_lr_read

torch = pytest.importorskip("torch")
needs_no_cuda = pytest.mark.skipif(cuda_reason() is None, reason="a CUDA host runs the real stages")


def _result(out: Path, stage: str) -> dict:
    return json.loads((out / f"{stage}.json").read_text())


@needs_no_cuda
@pytest.mark.slow
def test_every_stage_runs_up_to_cuda_and_reports_skipped(tmp_path):
    code = gpu_host_check.main(["--out", str(tmp_path)])
    assert code == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    status = {s["stage"]: s["status"] for s in summary["stages"]}
    assert list(status) == list(gpu_host_check.STAGES)
    assert status.pop("env") == "ok"
    assert all(s.startswith(NO_CUDA) for s in status.values()), status
    # what runs before CUDA ran: the CPU references of every model, the training recipe's schedule
    (refs,) = _result(tmp_path, "engines")["figures"]
    assert refs["models"] == len(list((ROOT / "models").glob("*/*/manifest.json")))
    (recipe,) = _result(tmp_path, "train-cooldown")["figures"]
    assert recipe["cooldown_start"] == 100 and recipe["steps"] == 300
    assert "skipped: no CUDA" in (tmp_path / "summary.md").read_text()
    assert summary["seconds"] < summary["budget_s"]


@pytest.mark.integration
@pytest.mark.slow
def test_serving_stage_runs_through_on_the_cpu_runtime(tmp_path):
    code = gpu_host_check.main(["--out", str(tmp_path), "--stages", "serve-onnxruntime-cpu", "--callers", "1", "4",
                                "--batches", "1", "64", "--duration", "0.3", "--warmup", "0.1"])
    r = _result(tmp_path, "serve-onnxruntime-cpu")
    assert code == 0 and r["status"] == "ok", r["failures"]
    parity = [f for f in r["figures"] if "max_abs_diff_vs_ort_cpu" in f]
    assert {f["graph"] for f in parity} == {"encoder", "decoder"} and all(f["ok"] for f in parity)
    cells = {(f["batch"], f["callers"]): f for f in r["figures"] if f.get("rpc") == "Encode"}
    assert set(cells) == {(1, 1), (1, 4), (64, 1), (64, 4)}
    assert all(c["errors"] == 0 and c["img_per_s"] > 0 for c in cells.values())


@pytest.mark.slow
def test_training_stage_checks_every_steps_lr_on_the_cpu(tmp_path):
    code = gpu_host_check.main(["--out", str(tmp_path), "--stages", "train-cooldown", "--train-device", "cpu",
                                "--train-steps", "5", "--cooldown-steps", "3", "--train-batch-size", "8"])
    r = _result(tmp_path, "train-cooldown")
    assert code == 0 and r["status"] == "ok", r["failures"]
    done = r["figures"][-1]
    assert done["worst_lr_error_of_peak"] < 1e-3
    last = done["lr_samples"][-1]
    assert last["step"] == 4 and last["scheduled"] == 0.0 and abs(last["read"]) < 1e-9


def test_a_failing_stage_and_a_hanging_stage_do_not_stop_the_next(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["--repository", str(empty), "--cache-dir", str(tmp_path / "engines")]
    failed = gpu_host_check.run_stage("engines", 60, tmp_path, args)
    assert failed["status"] == "failed" and "no model directory" in failed["failures"][0]
    hung = gpu_host_check.run_stage("train-cooldown", 0.5, tmp_path, args + ["--train-device", "cpu"])
    assert hung["status"] == "failed" and hung["failures"] == ["timed out after 0.5 s"]
    after = gpu_host_check.run_stage("env", 60, tmp_path, args)
    assert after["status"] == "ok" and any("runtime" in f for f in after["figures"])
    assert json.loads((tmp_path / "train-cooldown.json").read_text())["status"] == "failed"


def test_budget_shares_fit_the_budget():
    limits = gpu_host_check.limits(list(gpu_host_check.STAGES), 480)
    assert sum(limits.values()) <= 480 - 30  # room for process starts and the summary
    assert gpu_host_check.limits(["engines"], 240)["engines"] == pytest.approx(155 / 2)


@pytest.mark.parametrize("lr", [1e-3, 2.5e-4, 0.0])
def test_adam_lr_read_recovers_the_lr_of_the_step(lr):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(50, 40))
    opt = torch.optim.Adam([w], lr=1e-3)
    for step_lr in (1e-3, 7e-4, lr):  # a schedule that changes between steps
        for g in opt.param_groups:
            g["lr"] = step_lr
        before = w.detach().clone()
        opt.zero_grad()
        (w.sin() * torch.randn(50, 40)).sum().backward()
        opt.step()
        read = adam_lr_read(before, w.detach(), opt.state[w], 0.9, 0.999, 1e-8)
        assert read == pytest.approx(step_lr, rel=1e-4, abs=1e-10)
