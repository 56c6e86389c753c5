"""Stage ``engines``: TensorRT engines (fp32 and fp16) for every shipped model, checked against ORT CPU.

For every model version in the repository and both graphs: the ONNX Runtime CPU reference at
batches 1, 7, opt and max (runs anywhere), then, on a CUDA host, the TensorRT runtime at fp32
and fp16, which builds its engine into the cache on first load (the time is recorded), and its
max abs difference against the reference (fp32 within 1e-3, fp16 within 1e-2).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from parity import TOLERANCE, batches_of, cpu_reference, inputs_for, max_abs_diff
from record import StageRecord, require_cuda


def run(rec: StageRecord, repository: Path, cache: Path) -> None:
    from latentdial.manifest import Manifest, iter_model_dirs
    from latentdial.serving.runtimes import load_runtime

    refs: list[tuple[str, Path, Any, str, dict, dict]] = []
    for name, version, model_dir in iter_model_dirs(repository):
        manifest = Manifest.load(model_dir)
        manifest.verify_files(model_dir)
        for graph in ("encoder", "decoder"):
            inputs = inputs_for(manifest, graph, batches_of(manifest))
            refs.append((f"{name}/{version}", model_dir, manifest, graph, inputs,
                         cpu_reference(model_dir, manifest, graph, inputs)))
    if not refs:
        rec.fail(f"no model directory under {repository}")
        return
    batches = ", ".join(str(b) for b in batches_of(refs[0][2]))
    rec.figure(models=len(refs) // 2, references=f"onnxruntime-cpu fp32 at batches {batches}")
    require_cuda()
    for model, model_dir, manifest, graph, inputs, want in refs:
        for precision in ("fp32", "fp16"):
            try:
                t0 = time.perf_counter()
                rt = load_runtime(model_dir, manifest, graph, preference="tensorrt", precision=precision,
                                  engine_cache_dir=cache)
                load_s = time.perf_counter() - t0
                diff = max_abs_diff(rt, inputs, want)
                rt.close()
            except Exception as e:  # noqa: BLE001 - one engine's failure is recorded, the rest go on
                rec.fail(f"{model} {graph} {precision}: {type(e).__name__}: {e}")
                continue
            ok = diff <= TOLERANCE[precision]
            rec.figure(model=model, graph=graph, precision=precision, build_or_load_s=round(load_s, 2),
                       max_abs_diff=f"{diff:.2e}", tolerance=TOLERANCE[precision], ok=ok)
            if not ok:
                rec.fail(f"{model} {graph} {precision}: max abs diff {diff:.2e} > {TOLERANCE[precision]}")
