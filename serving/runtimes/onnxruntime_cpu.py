"""ONNX Runtime on the CPU: the reference runtime, always available where serving is installed.

Intra-op threads = the CPUs this process may use (``os.sched_getaffinity``, which respects
container CPU sets) unless told; threads and spinning come from ``RuntimeOptions`` (base.py);
with several server workers on one host, give each ``intra_op_threads = cores // workers`` so
that workers do not oversubscribe. The rest of the session options is one of
``latentdial.graph_choice.SESSION_SETS``; which one, and which of the model's equivalent graph
files, is chosen by measurement on the host (latentdial/graph_choice.py; selection.py passes it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from latentdial.graph_choice import DEFAULT_SET, session_options, usable_cpus
from latentdial.serving.runtimes.base import Runtime, RuntimeFailure, RuntimeOptions

__all__ = ["OrtCpuRuntime", "OrtSessionRuntime", "usable_cpus"]


class OrtSessionRuntime(Runtime):
    """What every ONNX Runtime runtime shares once its session is open: run() and describe().

    Subclasses set ``_session`` (an ``onnxruntime.InferenceSession``), ``path``, ``name``,
    ``max_batch_size``, ``input_names`` and ``output_names``.
    """

    _session: Any
    path: Path

    def _run(self, inputs: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        """Feed the inputs as contiguous float32."""
        feed = {k: np.ascontiguousarray(inputs[k], dtype=np.float32) for k in self.input_names}
        try:
            outs = self._session.run(list(self.output_names), feed)
        except Exception as e:
            raise RuntimeFailure(f"{self.name}: {self.path.name} failed: {e}") from e
        return dict(zip(self.output_names, outs, strict=True))

    def describe(self) -> str:
        extra = f", {self.session_set} options" if hasattr(self, "session_set") else ""
        return f"{self.name} ({self.path.name}{extra}, max batch {self.max_batch_size})"


class OrtCpuRuntime(OrtSessionRuntime):
    """One ONNX graph in an ``onnxruntime.InferenceSession`` with the CPU execution provider."""

    name = "onnxruntime-cpu"

    def __init__(
        self,
        onnx_path: Path,
        *,
        max_batch_size: int = 256,
        options: RuntimeOptions | None = None,
        tuned: bool = True,
        session: str | None = None,
    ) -> None:
        """options: intra-op threads and spinning (see RuntimeOptions; None = its defaults).
        session: the option set of latentdial.graph_choice.SESSION_SETS (graph optimisation level, inter-op
        threads, execution mode); None = "tuned", or ONNX Runtime's defaults with tuned=False
        (the benchmark baseline)."""
        import onnxruntime as ort

        self.session_set = session or (DEFAULT_SET if tuned else "ort-default")
        options = options or RuntimeOptions()
        opts = session_options(self.session_set, options.intra_op_threads, options.allow_spinning)
        try:
            self._session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise RuntimeFailure(f"ONNX Runtime cannot load {onnx_path}: {e}") from e
        self.path = Path(onnx_path)
        self.max_batch_size = max_batch_size
        self.input_names = tuple(i.name for i in self._session.get_inputs())
        self.output_names = tuple(o.name for o in self._session.get_outputs())
