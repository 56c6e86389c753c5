"""Runtimes that execute a model directory's ONNX graphs (see base.Runtime).

``load_runtime`` is the one entry point serving uses; it picks the best
available backend or the configured one.
"""

from __future__ import annotations

from pathlib import Path

from latentdial.manifest import Graph, Manifest
from latentdial.serving.runtimes.base import Runtime, RuntimeError_, RuntimeUnavailable

__all__ = ["Runtime", "RuntimeError_", "RuntimeUnavailable", "load_runtime"]


def load_runtime(
    model_dir: Path,
    manifest: Manifest,
    graph: Graph,
    *,
    preference: str = "auto",
    max_batch_size: int | None = None,
) -> Runtime:
    """Load ``graph`` of the model in ``model_dir`` on the runtime named by ``preference``.

    preference: "auto" or a runtime name ("onnxruntime-cpu", ...).
    """
    from latentdial.serving.runtimes.onnxruntime_cpu import OrtCpuRuntime

    if preference not in ("auto", OrtCpuRuntime.name):
        raise RuntimeUnavailable(f"runtime {preference!r} is not available; valid: ['auto', 'onnxruntime-cpu']")
    path = Path(model_dir) / manifest.graph_file(graph).path
    return OrtCpuRuntime(path, max_batch_size=max_batch_size or manifest.batch_profile["max"])
