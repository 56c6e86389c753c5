"""ONNX Runtime on the CPU: the reference runtime, always available where serving is installed.

Thread settings are tuned for serving one graph per session behind a dynamic
batcher: intra-op threads = the CPUs this process may use (``os.sched_getaffinity``,
which respects container CPU sets), one inter-op thread and sequential execution
(the graphs are a plain chain of convolutions; parallel execution of independent
nodes only adds scheduling overhead). Threads and spinning come from
``RuntimeOptions`` (base.py); with several server workers on one host, give each
``intra_op_threads = cores // workers`` so that workers do not oversubscribe.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from latentdial.serving.runtimes.base import Runtime, RuntimeFailure, RuntimeOptions


def usable_cpus() -> int:
    """CPUs this process may run on (container CPU sets included)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


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
        return f"{self.name} ({self.path.name}, max batch {self.max_batch_size})"


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
    ) -> None:
        """options: intra-op threads and spinning (see RuntimeOptions; None = its defaults).
        tuned=False keeps ONNX Runtime's default session options (the benchmark baseline;
        only ``options.intra_op_threads`` is applied, when non-zero)."""
        import onnxruntime as ort

        options = options or RuntimeOptions()
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if tuned:
            opts.intra_op_num_threads = options.intra_op_threads or usable_cpus()
            opts.inter_op_num_threads = 1
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.allow_spinning else "0")
        elif options.intra_op_threads:
            opts.intra_op_num_threads = options.intra_op_threads
        try:
            self._session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise RuntimeFailure(f"ONNX Runtime cannot load {onnx_path}: {e}") from e
        self.path = Path(onnx_path)
        self.max_batch_size = max_batch_size
        self.input_names = tuple(i.name for i in self._session.get_inputs())
        self.output_names = tuple(o.name for o in self._session.get_outputs())
