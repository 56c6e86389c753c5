"""The runtime contract: run one ONNX graph of a model directory on some backend.

``run(inputs) -> outputs`` takes and returns numpy arrays keyed by the graph's
I/O names (manifest.io). The batch axis is the first; a runtime accepts any
batch from 1 to ``max_batch_size`` and returns outputs with the same batch.
Implementations: ONNX Runtime (CPU / CUDA EP / TensorRT EP), TensorRT, torch (CUDA).
Serving code depends on this interface only, never on torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


class RuntimeFailure(RuntimeError):
    """A runtime failed to load or to run a graph."""


class RuntimeUnavailable(RuntimeFailure):
    """This runtime cannot run here (library missing, no GPU, unsupported precision)."""


@dataclass(frozen=True)
class RuntimeOptions:
    """How a runtime may use the host's CPUs; runtimes without such a setting ignore it.

    intra_op_threads: threads one graph execution may use; 0 = every CPU this process may
    use (ONNX Runtime CPU). With several server workers on one host, give each
    ``cores // workers``. allow_spinning: let idle intra-op threads spin briefly for the
    next op (lower latency in a tight loop, CPU burnt while idle); a server turns it off
    because the spinning steals CPU from the event loop that parses requests and forms
    batches between runs.
    """

    intra_op_threads: int = 0
    allow_spinning: bool = True

    def __post_init__(self) -> None:
        if self.intra_op_threads < 0:
            raise ValueError(f"intra_op_threads must be >= 0 (0 = every usable CPU), got {self.intra_op_threads}")


class Runtime(ABC):
    """One loaded graph (encoder or decoder) of one model version.

    ``run`` is a template method: it checks the call against the contract (every input
    name present, 1 <= N <= max_batch_size) in one place for every backend, then calls
    the backend's ``_run``.
    """

    #: Short identifier reported in logs and GetModelInfo, e.g. "onnxruntime-cpu".
    name: str
    #: Largest batch one run() call accepts.
    max_batch_size: int
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Execute the graph. inputs: name -> (N, ...) float32 with 1 <= N <= max_batch_size.

        Returns name -> (N, ...) float32 for every output name. RuntimeFailure on a call that
        breaks the contract or a backend failure.
        """
        return self._run(inputs, self.check_batch(inputs))

    def check_batch(self, inputs: dict[str, np.ndarray]) -> int:
        """Validate a run() call against the I/O names and max batch; return the batch N."""
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise RuntimeFailure(f"{self.name}: missing input(s) {missing}; expected {list(self.input_names)}")
        n = int(inputs[self.input_names[0]].shape[0])
        if not 1 <= n <= self.max_batch_size:
            raise RuntimeFailure(f"{self.name}: batch {n} is outside 1..{self.max_batch_size}; split it")
        return n

    @abstractmethod
    def _run(self, inputs: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        """The backend's execution of a call ``run`` has validated; ``n`` is its batch size."""

    def warmup(self, example_inputs: dict[str, np.ndarray]) -> None:
        """Run once (or a few times) so that the first request does not pay for lazy init."""
        self.run(example_inputs)

    def close(self) -> None:
        """Release native resources. Idempotent."""

    def describe(self) -> str:
        return f"{self.name} (max batch {self.max_batch_size})"
