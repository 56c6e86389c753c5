"""The runtime contract: run one ONNX graph of a model directory on some backend.

``run(inputs) -> outputs`` takes and returns numpy arrays keyed by the graph's
I/O names (manifest.io). The batch axis is the first; a runtime accepts any
batch from 1 to ``max_batch_size`` and returns outputs with the same batch.
Implementations: ONNX Runtime (CPU / CUDA EP / TensorRT EP), TensorRT, torch (CUDA).
Serving code depends on this interface only, never on torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class RuntimeError_(RuntimeError):
    """A runtime failed to load or to run a graph."""


class RuntimeUnavailable(RuntimeError_):
    """This runtime cannot run here (library missing, no GPU, unsupported precision)."""


class Runtime(ABC):
    """One loaded graph (encoder or decoder) of one model version."""

    #: Short identifier reported in logs and GetModelInfo, e.g. "onnxruntime-cpu".
    name: str
    #: Largest batch one run() call accepts.
    max_batch_size: int
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]

    @abstractmethod
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Execute the graph. inputs: name -> (N, ...) float32 with 1 <= N <= max_batch_size."""

    def warmup(self, example_inputs: dict[str, np.ndarray]) -> None:
        """Run once (or a few times) so that the first request does not pay for lazy init."""
        self.run(example_inputs)

    def close(self) -> None:
        """Release native resources. Idempotent."""

    def describe(self) -> str:
        return f"{self.name} (max batch {self.max_batch_size})"
