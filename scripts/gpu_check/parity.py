"""A runtime's outputs against ONNX Runtime CPU fp32 on the same seeded batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: GPU kernels use TF32 and other algorithms (fp32); fp16 as in export/variants.py
TOLERANCE = {"fp32": 1e-3, "fp16": 1e-2}


def batches_of(manifest: Any) -> list[int]:
    """1, 7 and the profile's opt and max batch."""
    prof = manifest.batch_profile
    return sorted({1, 7, int(prof["opt"]), int(prof["max"])})


def inputs_for(manifest: Any, graph: str, batches: list[int], seed: int = 0) -> dict[int, np.ndarray]:
    """Seeded graph inputs per batch: images in [0, 1] (N, C, H, W) or N(0, 1) latents (N, D)."""
    rng = np.random.default_rng(seed)
    if graph == "encoder":
        return {b: rng.random((b, *manifest.image_shape), dtype=np.float32) for b in batches}
    return {b: rng.standard_normal((b, manifest.latent_dim), dtype=np.float32) for b in batches}


def cpu_reference(model_dir: Path, manifest: Any, graph: str,
                  inputs: dict[int, np.ndarray]) -> dict[int, dict[str, np.ndarray]]:
    """ONNX Runtime CPU fp32 outputs for every batch: the main file with the tuned options (not the
    host's measured graph choice, which would time every candidate first)."""
    from latentdial.serving.runtimes.onnxruntime_cpu import OrtCpuRuntime

    ref = OrtCpuRuntime(Path(model_dir) / manifest.graph_file(graph, "fp32", "onnx").path)
    name = ref.input_names[0]
    try:
        return {b: ref.run({name: x}) for b, x in inputs.items()}
    finally:
        ref.close()


def max_abs_diff(runtime: Any, inputs: dict[int, np.ndarray], want: dict[int, dict[str, np.ndarray]]) -> float:
    """Largest |runtime - reference| over every batch and output."""
    name = runtime.input_names[0]
    return max(float(np.max(np.abs(runtime.run({name: x})[k] - want[b][k])))
               for b, x in inputs.items() for k in want[b])
