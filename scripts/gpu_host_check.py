"""GPU host check in one bounded command: engines, serving on every GPU runtime, CUDA-graph training.

    python scripts/gpu_host_check.py [--out DIR] [--repository models] [--budget-s 480]

Stages, in order, each in its own process with its own time limit (a share of ``--budget-s``), so
that one failure, crash or hang does not stop the rest:

1. ``env``: GPU, driver, library versions, which runtimes can run;
2. ``engines``: TensorRT engines, fp32 and fp16, for every model in the repository, each checked
   against ONNX Runtime CPU (fp32 within 1e-3, fp16 within 1e-2) at batches 1, 7, opt and max;
3. ``serve-tensorrt``, ``serve-onnxruntime-cuda``, ``serve-torch-cuda``: the default model served on
   that runtime (checked against ONNX Runtime CPU first), v1 Encode at 1, 8 and 64 callers with
   single images and batches of 64;
4. ``train-cooldown``: the default recipe's CUDA-graph training step for 300 steps with an lr
   cooldown over the last 200, checking after every step the lr the update used.

Every figure and failure goes to ``DIR`` (default ``$OUT``, else ``gpu-check``): ``<stage>.jsonl``
as it is measured, ``<stage>.json`` with the stage's status, ``<stage>.log`` (its output), and
``summary.json`` / ``summary.md``. On a host without CUDA each stage runs up to its first CUDA call
and ends ``skipped: no CUDA`` (``--stages env engines serve-onnxruntime-cpu`` runs the serving path
itself on the CPU). Exits 1 when a stage failed or timed out.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
STAGE_DIR = Path(__file__).resolve().parent / "gpu_check"
sys.path.insert(0, str(STAGE_DIR))

from record import read_lines  # noqa: E402

#: stage -> share of the budget (seconds out of 480: the whole check fits in 8 minutes)
SHARES = {"env": 20, "engines": 155, "serve-tensorrt": 60, "serve-onnxruntime-cuda": 55,
          "serve-torch-cuda": 70, "train-cooldown": 75}
STAGES = tuple(SHARES)
SHARE_TOTAL = 480
#: a stage is not started with less time than this left
MIN_STAGE_S = 5.0


def limits(stages: list[str], budget_s: float) -> dict[str, float]:
    """Each stage's time limit: its share of the budget (stages not in SHARES get 60 of 480)."""
    return {s: budget_s * SHARES.get(s, 60) / SHARE_TOTAL for s in stages}


def run_stage(stage: str, limit_s: float, out: Path, stage_args: list[str]) -> dict[str, Any]:
    """One stage in its own process group; its result, or a timeout / crash result with its partial figures."""
    log = out / f"{stage}.log"
    (out / f"{stage}.json").unlink(missing_ok=True)
    cmd = [sys.executable, str(STAGE_DIR / "stage.py"), stage, "--out", str(out), *stage_args]
    t0 = time.monotonic()
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
                                env=os.environ | {"PYTHONUNBUFFERED": "1"})
        try:
            rc = proc.wait(timeout=limit_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc, timed_out = proc.wait(), True
    try:  # what the stage started (a server) goes with it
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    seconds = round(time.monotonic() - t0, 1)
    result_file = out / f"{stage}.json"
    if timed_out:
        result = {"stage": stage, "status": "failed", "failures": [f"timed out after {limit_s:.1f} s"]}
    elif result_file.exists():
        result = json.loads(result_file.read_text())
    else:
        tail = log.read_text(errors="replace").splitlines()[-5:]
        result = {"stage": stage, "status": "failed", "failures": [f"exited with code {rc} without a result: "
                                                                    + " / ".join(tail)]}
    lines = read_lines(out / f"{stage}.jsonl")
    result |= {"seconds": seconds, "limit_s": round(limit_s, 1), "exit_code": rc,
               "figures": [x for x in lines if x["kind"] == "figure"]}
    result["failures"] = list(dict.fromkeys(result.get("failures", []) +
                                            [x["what"] for x in lines if x["kind"] == "failure"]))
    result_file.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return result


def summary_md(results: list[dict[str, Any]], budget_s: float, total_s: float) -> str:
    """One line per stage: status, seconds of its limit, figures, first failure."""
    lines = [f"# GPU host check: {total_s:.0f} s of a {budget_s:.0f} s budget\n",
             "| stage | status | seconds (limit) | figures | first failure |", "|---|---|---:|---:|---|"]
    for r in results:
        first = (r["failures"][0].splitlines()[0][:160] if r["failures"] else "").replace("|", "/")
        lines.append(f"| {r['stage']} | {r['status']} | {r.get('seconds', 0):.0f} ({r.get('limit_s', 0):.0f}) | "
                     f"{len(r.get('figures', []))} | {first} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "gpu-check"))
    p.add_argument("--repository", type=Path, default=REPO / "models")
    p.add_argument("--budget-s", type=float, default=480.0, help="the whole check's time (default 8 minutes)")
    p.add_argument("--stages", nargs="+", default=list(STAGES), help=f"default: {' '.join(STAGES)}")
    p.add_argument("--cache-dir", type=Path, help="TensorRT engine cache (default: OUT/engines)")
    a, stage_args = p.parse_known_args(argv)
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    cache = (a.cache_dir or out / "engines").resolve()
    stage_args += ["--repository", str(a.repository.resolve()), "--cache-dir", str(cache)]
    t0 = time.monotonic()
    results = []
    for stage, limit in limits(a.stages, a.budget_s).items():
        left = a.budget_s - (time.monotonic() - t0)
        if left < MIN_STAGE_S:
            results.append({"stage": stage, "status": "failed", "failures": ["not run: the budget was spent"],
                            "figures": []})
            continue
        print(f"== {stage} (limit {min(limit, left):.0f} s)", flush=True)
        r = run_stage(stage, min(limit, left), out, stage_args)
        print(f"== {stage}: {r['status']} in {r['seconds']:.0f} s"
              + "".join(f"\n   FAIL {f.splitlines()[0]}" for f in r["failures"]), flush=True)
        results.append(r)
    total = time.monotonic() - t0
    (out / "summary.json").write_text(json.dumps({"budget_s": a.budget_s, "seconds": round(total, 1),
                                                  "stages": results}, indent=1, default=str) + "\n")
    text = summary_md(results, a.budget_s, total)
    (out / "summary.md").write_text(text)
    print(text + f"\nresults in {out}/")
    return 1 if any(r["status"] == "failed" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
