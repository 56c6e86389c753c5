"""One ONNX graph of a latentdial model in ONNX Runtime, behind the tensors latentdial's OIP models use.

The peer servers (PyTriton, KServe) serve the same graph files as latentdial with this class, so
that every server does the same work per request:

| model | input | outputs |
|---|---|---|
| ``<model>.encoder`` | ``images`` (N, H, W, C) FP32 | ``mean``, ``log_var`` (N, D) FP32 |
| ``<model>.decoder`` | ``latents`` (N, D) FP32 | ``images`` (N, H, W, C) FP32 |

The graphs themselves are NCHW, so images are transposed on the way in (encoder) or out (decoder),
as latentdial does. Session options come as a dict (``session_spec``) so the harness can hand the
peers the options latentdial serves with. Needs only numpy and onnxruntime: it runs inside the
peers' own virtual environments, which do not install latentdial.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

#: latentdial's "tuned" set with its serving threads and spinning (serving/runtimes/graph_choice.py);
#: the harness passes the set latentdial chose for this host instead
SERVING_SESSION: dict[str, Any] = {"graph_optimization_level": "ORT_ENABLE_ALL", "intra_op_threads": 0,
                                   "inter_op_threads": 1, "execution_mode": "ORT_SEQUENTIAL",
                                   "allow_spinning": False}


def usable_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def session_options(spec: dict[str, Any]) -> Any:
    """An ``onnxruntime.SessionOptions`` from a spec like :data:`SERVING_SESSION`.

    Keys left out keep ONNX Runtime's defaults; 0 intra-op threads = every usable CPU.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                            spec.get("graph_optimization_level", "ORT_ENABLE_ALL"))
    opts.intra_op_num_threads = int(spec.get("intra_op_threads", 0)) or usable_cpus()
    if "inter_op_threads" in spec:
        opts.inter_op_num_threads = int(spec["inter_op_threads"])
    if "execution_mode" in spec:
        opts.execution_mode = getattr(ort.ExecutionMode, spec["execution_mode"])
    opts.add_session_config_entry("session.intra_op.allow_spinning",
                                  "1" if spec.get("allow_spinning", True) else "0")
    return opts


class OnnxGraph:
    """An encoder or decoder graph with the OIP tensor layout; ``infer`` maps input name -> outputs."""

    def __init__(self, path: Path, graph: str, spec: dict[str, Any] | None = None) -> None:
        import onnxruntime as ort

        if graph not in ("encoder", "decoder"):
            raise ValueError(f"graph must be encoder or decoder, not {graph!r}")
        self.graph = graph
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), session_options(spec or SERVING_SESSION),
                                            providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]
        if graph == "encoder":
            _, c, h, w = self.session.get_inputs()[0].shape
            self.image_hwc = (int(h), int(w), int(c))
            self.latent_dim = int(self.session.get_outputs()[0].shape[1])
        else:
            self.latent_dim = int(self.session.get_inputs()[0].shape[1])
            _, c, h, w = self.session.get_outputs()[0].shape
            self.image_hwc = (int(h), int(w), int(c))

    @property
    def input_name(self) -> str:
        return "images" if self.graph == "encoder" else "latents"

    def signature(self) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
        """(inputs, outputs): name -> shape without the batch axis."""
        images, latents = self.image_hwc, (self.latent_dim,)
        if self.graph == "encoder":
            return {"images": images}, {"mean": latents, "log_var": latents}
        return {"latents": latents}, {"images": images}

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Run one batch given in the OIP layout; return the outputs in the OIP layout."""
        if self.graph == "encoder":
            feed = np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)
            mean, log_var = self.session.run(self.outputs, {"images": feed})
            return {"mean": mean, "log_var": log_var}
        (images,) = self.session.run(self.outputs, {"latents": np.ascontiguousarray(x, dtype=np.float32)})
        return {"images": np.ascontiguousarray(images.transpose(0, 2, 3, 1))}


def load_graphs(model_dir: Path, model: str, files: dict[str, str],
                specs: dict[str, dict[str, Any]] | None) -> dict[str, OnnxGraph]:
    """``<model>.encoder`` and ``<model>.decoder`` from ``files`` (graph -> file name in model_dir),
    each with its session spec (``specs``: graph -> spec; None = :data:`SERVING_SESSION`)."""
    return {f"{model}.{g}": OnnxGraph(Path(model_dir) / name, g, (specs or {}).get(g))
            for g, name in files.items()}
