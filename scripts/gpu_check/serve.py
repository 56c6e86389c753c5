"""Stage ``serve-<runtime>``: the default model served on one runtime, and the service benchmark.

The default model's newest version, alone in a temporary repository, is first run in this
process on the runtime and compared with ONNX Runtime CPU (batches 1 and 64); then
``latentdial serve --runtime <runtime>`` starts as its own process, must report that runtime
for the model, and v1 Encode is driven closed loop at 1, 8 and 64 callers with single images
and batches of 64 (the load client of ``benchmarks/bench_peers.py``). Everything up to the
first CUDA call runs on any host; ``onnxruntime-cpu`` runs through on a CPU host.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from parity import TOLERANCE, cpu_reference, inputs_for, max_abs_diff
from record import StageRecord, require_cuda

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_peers  # noqa: E402

CPU_RUNTIMES = ("onnxruntime-cpu",)


def served_runtime(log_text: str, model: str) -> str | None:
    """The runtime ``latentdial serve`` reported for ``model`` (its line ``model <m>/<v>...: <runtime> (...)``)."""
    for line in log_text.splitlines():
        line = line.strip()
        if line.startswith(f"model {model}/") and ": " in line:
            return line.split(": ", 1)[1].split(" ", 1)[0]
    return None


def check_parity(rec: StageRecord, runtime: str, model_dir: Path, manifest: Any, cache: Path) -> None:
    """The runtime in this process against ONNX Runtime CPU on both graphs, batches 1 and 64."""
    from latentdial.serving.runtimes import load_runtime

    for graph in ("encoder", "decoder"):
        inputs = inputs_for(manifest, graph, [1, 64], seed=1)
        want = cpu_reference(model_dir, manifest, graph, inputs)
        rt = load_runtime(model_dir, manifest, graph, preference=runtime, engine_cache_dir=cache)
        try:
            diff = max_abs_diff(rt, inputs, want)
        finally:
            rt.close()
        ok = diff <= TOLERANCE["fp32"]
        rec.figure(runtime=runtime, graph=graph, max_abs_diff_vs_ort_cpu=f"{diff:.2e}", ok=ok)
        if not ok:
            rec.fail(f"{runtime} {graph}: max abs diff {diff:.2e} > {TOLERANCE['fp32']}")


def run(rec: StageRecord, runtime: str, repository: Path, cache: Path, work: Path, callers: list[int],
        batches: list[int], duration: float, warmup: float) -> None:
    from latentdial.manifest import Manifest
    from latentdial.serving.embedded import ServerProcess
    from latentdial.serving.runtimes import available_runtimes

    model_dir = bench_peers.default_model(repository)
    manifest = Manifest.load(model_dir)
    c, h, w = manifest.image_shape
    cells = bench_peers.plan(manifest.name, ["encoder"], batches, callers, [h, w, c], manifest.latent_dim)
    repo = work / f"repository-{runtime}"
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(model_dir, repo / manifest.name / model_dir.name)
    if runtime not in CPU_RUNTIMES:
        require_cuda()
    reason = available_runtimes(manifest).get(runtime, f"unknown runtime {runtime!r}")
    if reason is not None:
        rec.fail(f"{runtime} cannot run here: {reason}")
        return
    check_parity(rec, runtime, model_dir, manifest, cache)
    log = work / f"serve-{runtime}.log"
    env = os.environ | {"LATENTDIAL_ENGINE_CACHE": str(cache)}
    with ServerProcess(repository=repo, args=["--runtime", runtime, *bench_peers.latentdial_flags(cells)],
                       log_path=log, env=env, cwd=work, startup_timeout_s=180) as server:
        got = None
        for _ in range(50):  # the model lines are printed around the time health turns SERVING
            got = served_runtime(log.read_text(), manifest.name)
            if got is not None:
                break
            time.sleep(0.1)
        if got != runtime:
            rec.fail(f"the server runs {manifest.name} on {got}, not {runtime}")
            return
        for row in bench_peers.run_client("v1", server.address, cells, duration, warmup, work):
            if "status" in row:
                rec.fail(f"{runtime} batch {row['batch']} x{row['callers']}: {row['status']}")
                continue
            rec.figure(runtime=runtime, rpc="Encode", batch=row["batch"], callers=row["callers"],
                       req_per_s=round(row["req_per_s"], 1), img_per_s=round(row["items_per_s"], 1),
                       p50_ms=round(row["p50_ms"], 2), p99_ms=round(row["p99_ms"], 2), errors=row["errors"])
            if row["errors"]:
                rec.fail(f"{runtime} batch {row['batch']} x{row['callers']}: {row['errors']} failed calls "
                         f"{row.get('error_kinds')}")
