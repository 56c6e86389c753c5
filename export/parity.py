"""Numerical parity between torch and ONNX Runtime, and between precision variants.

Every check runs the same random batches through both sides and reports the
largest absolute difference over all outputs and batch sizes. Batches come from
a seeded generator: images uniform in [0, 1] (N, C, H, W), latents standard
normal (N, D) — the prior the decoder is sampled from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from latentdial.manifest import Graph

#: Batch sizes every exported graph is checked with (odd sizes catch fixed-batch bugs).
PARITY_BATCHES: tuple[int, ...] = (1, 3, 17, 64)
#: fp32 ONNX Runtime vs fp32 torch: both compute in fp32, differences are summation order only.
FP32_TOLERANCE = 1e-4

RunFn = Callable[[np.ndarray], list[np.ndarray]]


class ParityError(RuntimeError):
    """An exported graph does not reproduce its reference within tolerance."""


def random_batch(graph: Graph, image_shape: Sequence[int], latent_dim: int, n: int,
                 rng: np.random.Generator) -> np.ndarray:
    """(n, C, H, W) uniform [0, 1] images for the encoder, (n, D) N(0, 1) latents for the decoder."""
    if graph == "encoder":
        return rng.random((n, *image_shape), dtype=np.float32)
    return rng.standard_normal((n, latent_dim), dtype=np.float32)


def torch_fn(module) -> RunFn:
    """Wrap a torch module (fp32, CPU, eval) as numpy in -> list of numpy outputs."""
    import torch

    @torch.no_grad()
    def fn(x: np.ndarray) -> list[np.ndarray]:
        out = module(torch.from_numpy(np.ascontiguousarray(x)))
        outs = out if isinstance(out, tuple | list) else (out,)
        return [o.detach().cpu().numpy() for o in outs]

    return fn


def ort_fn(onnx_path: Path, *, threads: int = 1) -> RunFn:
    """Wrap an ONNX file in a CPU InferenceSession as numpy in -> list of numpy outputs."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def fn(x: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(o, dtype=np.float32) for o in sess.run(None, {name: x})]

    return fn


def max_abs_diff(a: RunFn, b: RunFn, graph: Graph, image_shape: Sequence[int], latent_dim: int, *,
                 batches: Sequence[int] = PARITY_BATCHES, seed: int = 0) -> float:
    """Largest |a(x) - b(x)| over all outputs and all batch sizes; also checks shapes agree."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for n in batches:
        x = random_batch(graph, image_shape, latent_dim, n, rng)
        out_a, out_b = a(x), b(x)
        if len(out_a) != len(out_b):
            raise ParityError(f"{graph}: {len(out_a)} outputs vs {len(out_b)}")
        for ya, yb in zip(out_a, out_b, strict=True):
            if ya.shape != yb.shape:
                raise ParityError(f"{graph} batch {n}: output shape {ya.shape} vs {yb.shape}")
            if not np.all(np.isfinite(yb)):
                raise ParityError(f"{graph} batch {n}: non-finite outputs")
            worst = max(worst, float(np.max(np.abs(ya.astype(np.float64) - yb.astype(np.float64)))))
    return worst


def require(diff: float, tolerance: float, what: str) -> None:
    """Raise ParityError saying what failed and by how much when ``diff > tolerance``."""
    if not diff <= tolerance:
        raise ParityError(
            f"{what}: max abs difference {diff:.3g} exceeds the tolerance {tolerance:.3g}; "
            "the exported graph does not reproduce the model — nothing was written"
        )
