"""Run one stage of the GPU host check in this process: ``python scripts/gpu_check/stage.py STAGE ...``.

Stages: ``env``, ``engines``, ``serve-<runtime>`` (tensorrt, onnxruntime-cuda, torch-cuda, or
onnxruntime-cpu to run the serving path on a CPU host), ``train-cooldown``. The parent
(scripts/gpu_host_check.py) starts each in its own process with a time limit, so that a crash or a
hang in one (a TensorRT build, a CUDA error) does not stop the others. The stage writes
``<out>/<stage>.jsonl`` and ``<out>/<stage>.json`` (record.py); an exception ends it ``failed``
with its traceback recorded, ``Skip`` ends it ``skipped: no CUDA``.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

from record import Skip, StageRecord, cuda_reason


def env(rec: StageRecord) -> None:
    """Host, GPU (nvidia-smi), library versions, CUDA, and which runtimes can run."""
    rec.figure(python=platform.python_version(), machine=platform.machine(), cuda=cuda_reason() or "usable")
    if shutil.which("nvidia-smi"):
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=30)
        rec.figure(nvidia_smi=q.stdout.strip() or q.stderr.strip())
    for module in ("torch", "onnxruntime", "tensorrt", "cuda"):
        try:
            version = getattr(__import__(module), "__version__", "installed")
        except Exception as e:  # noqa: BLE001 - a missing or broken library is a fact to record
            version = f"not importable ({type(e).__name__})"
        rec.figure(library=module, version=version)
    from latentdial.serving.runtimes import available_runtimes

    for name, reason in available_runtimes().items():
        rec.figure(runtime=name, available=reason is None, reason=reason)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stage")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--repository", type=Path, required=True)
    p.add_argument("--cache-dir", type=Path, required=True)
    p.add_argument("--callers", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    p.add_argument("--duration", type=float, default=2.0)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--train-steps", type=int, default=300)
    p.add_argument("--cooldown-steps", type=int, default=200)
    p.add_argument("--train-device", default="cuda", help="cpu runs the same checks eagerly (no CUDA graph)")
    p.add_argument("--train-batch-size", type=int, default=None, help="default: the recipe's")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    rec = StageRecord(a.out, a.stage)
    work = a.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    try:
        if a.stage == "env":
            env(rec)
        elif a.stage == "engines":
            import engines

            engines.run(rec, a.repository, a.cache_dir)
        elif a.stage.startswith("serve-"):
            import serve

            serve.run(rec, a.stage.removeprefix("serve-"), a.repository, a.cache_dir, work, a.callers, a.batches,
                      a.duration, a.warmup)
        elif a.stage == "train-cooldown":
            import train_lr

            run_dir = work / "train-cooldown"
            shutil.rmtree(run_dir, ignore_errors=True)
            train_lr.run(rec, a.train_steps, a.cooldown_steps, a.train_device, run_dir, a.train_batch_size)
        else:
            rec.fail(f"unknown stage {a.stage!r}")
    except Skip as e:
        print(f"[{a.stage}] {e}", flush=True)
        return 1 if rec.finish("failed" if rec.failures else str(e))["status"] == "failed" else 0
    except Exception as e:  # noqa: BLE001 - the stage ends failed with its traceback on record
        rec.fail(f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
    return 0 if rec.finish()["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
