"""ONNX Runtime on the CPU: the reference runtime, always available where serving is installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from latentdial.serving.runtimes.base import Runtime


class OrtCpuRuntime(Runtime):
    """One ONNX graph in an ``onnxruntime.InferenceSession`` with the CPU execution provider."""

    name = "onnxruntime-cpu"

    def __init__(self, onnx_path: Path, *, max_batch_size: int = 256, intra_op_threads: int = 0) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads:
            opts.intra_op_num_threads = intra_op_threads
        self._session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self.max_batch_size = max_batch_size
        self.input_names = tuple(i.name for i in self._session.get_inputs())
        self.output_names = tuple(o.name for o in self._session.get_outputs())

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()}
        outs = self._session.run(list(self.output_names), feed)
        return dict(zip(self.output_names, outs, strict=True))
