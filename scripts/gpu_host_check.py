"""GPU host check: every GPU runtime against ONNX Runtime CPU on one model directory.

    python scripts/gpu_host_check.py MODEL_DIR [--cache-dir DIR] [--json out.json]

For each runtime in (tensorrt, onnxruntime-tensorrt, onnxruntime-cuda, torch-cuda)
and precision (fp32, fp16) that loads here: max abs difference against ONNX Runtime
CPU fp32 for batches 1, 7, opt and max of the manifest's profile, and images/s at
the opt batch. Exits non-zero if a runtime that loaded exceeds its tolerance
(fp32 1e-3: GPU kernels use TF32/other algorithms; fp16 1e-2, see export/variants.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from latentdial.manifest import Manifest
from latentdial.serving.runtimes import available_runtimes, load_runtime

TOLERANCE = {"fp32": 1e-3, "fp16": 1e-2}
GPU_RUNTIMES = ("tensorrt", "onnxruntime-tensorrt", "onnxruntime-cuda", "torch-cuda")


def images_per_s(runtime, x: np.ndarray, seconds: float = 2.0) -> float:
    name = runtime.input_names[0]
    runtime.run({name: x})
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        runtime.run({name: x})
        n += 1
    return n * len(x) / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_dir", type=Path)
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    manifest = Manifest.load(args.model_dir)
    manifest.verify_files(args.model_dir)
    print("available runtimes:")
    for name, reason in available_runtimes(manifest).items():
        print(f"  {name:22s} {'yes' if reason is None else 'no: ' + reason}")
    prof = manifest.batch_profile
    batches = sorted({1, 7, prof["opt"], prof["max"]})
    rng = np.random.default_rng(0)
    results, failed = [], False
    for graph in ("encoder", "decoder"):
        ref = load_runtime(args.model_dir, manifest, graph, preference="onnxruntime-cpu")
        name = ref.input_names[0]
        shape = manifest.image_shape if graph == "encoder" else (manifest.latent_dim,)
        inputs = {b: (rng.random((b, *shape), dtype=np.float32) if graph == "encoder"
                      else rng.standard_normal((b, *shape), dtype=np.float32)) for b in batches}
        want = {b: ref.run({name: x}) for b, x in inputs.items()}
        cpu_speed = images_per_s(ref, inputs[prof["opt"]])
        print(f"{graph}: onnxruntime-cpu {cpu_speed:,.0f} images/s at batch {prof['opt']}")
        for runtime_name in GPU_RUNTIMES:
            for precision in ("fp32", "fp16"):
                try:
                    rt = load_runtime(args.model_dir, manifest, graph, preference=runtime_name,
                                      precision=precision, engine_cache_dir=args.cache_dir)
                    rt.warmup({name: inputs[1]})
                except (RuntimeError, ValueError, OSError) as e:
                    print(f"{graph}: {runtime_name} {precision}: not run ({e})")
                    continue
                diff = max(float(np.max(np.abs(rt.run({name: x})[k] - want[b][k])))
                           for b, x in inputs.items() for k in want[b])
                speed = images_per_s(rt, inputs[prof["opt"]])
                ok = diff <= TOLERANCE[precision]
                failed |= not ok
                print(f"{graph}: {rt.describe()} {precision}: max abs diff {diff:.2e} "
                      f"({'ok' if ok else 'FAIL'}), {speed:,.0f} images/s = {speed / cpu_speed:.1f}x ORT CPU")
                results.append({"graph": graph, "runtime": runtime_name, "precision": precision,
                                "max_abs_diff": diff, "images_per_s": speed, "vs_ort_cpu": speed / cpu_speed})
                rt.close()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
