"""A whole training step captured in one CUDA graph, for GPU hosts.

The shipped models are small (conv64 at batch 64): on a GPU an eager step is a few
hundred tiny kernels, each launched from Python, so the GPU waits on the CPU. Capturing
forward, backward and the Adam update once in a ``torch.cuda.CUDAGraph`` and replaying it
makes a step one launch (PyTorch's "whole network capture",
https://pytorch.org/docs/stable/notes/cuda.html#whole-network-capture).

How a step runs here:

- the first ``warmup`` steps run eagerly on a side stream (the allocator and cuBLAS
  settle), each a real training step on its own batch;
- the next step is captured (nothing runs during capture) and then replayed, so it too
  is a real step; every later step copies its batch into the static input tensors and
  replays;
- the logged terms are read from a static (T,) tensor only when the trainer logs
  (``log_every``), so no step waits for the device; a NaN or infinite term is therefore
  reported at the next log step rather than the step it appeared.

The objective must be :attr:`VAEObjective.graph_safe` and the optimizer an Adam built
with ``capturable=True``. If capture fails, :meth:`GraphedStep.run` says why once and
runs every later step eagerly: training goes on, only slower.

Randomness: the reparameterisation noise comes from the default CUDA generator, which
graphs advance on every replay, so ``torch.cuda.get_rng_state`` in a checkpoint is where
an uninterrupted run would be. Bit-exact resume is verified on CPU (tests/training/test_train.py);
on a GPU, kernel choice may differ between a captured and an eager step.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from latentdial.training.objectives.base import VAEObjective, stack_terms

log = logging.getLogger("latentdial.train")

HostBatch = np.ndarray | tuple[np.ndarray, ...]


def _as_tuple(batch: HostBatch) -> tuple[np.ndarray, ...]:
    return tuple(batch) if isinstance(batch, tuple) else (batch,)


class GraphedStep:
    """One optimisation step of ``objective`` with ``optimizer``, replayed from a CUDA graph.

    Args:
        objective: a graph-safe objective already on ``device``.
        optimizer: Adam over ``objective.vae_parameters()`` with ``capturable=True``.
        device: a CUDA device string.
        warmup: eager steps before capture (PyTorch's notes use 3; at least 1).
    """

    def __init__(self, objective: VAEObjective, optimizer: torch.optim.Optimizer, device: str,
                 warmup: int = 3) -> None:
        if not type(objective).graph_safe:
            raise ValueError(f"{objective.name} is not graph-safe: train it eagerly")
        if not device.startswith("cuda"):
            raise ValueError(f"CUDA graphs need a CUDA device, got {device!r}")
        groups = optimizer.param_groups
        if not all(g.get("capturable", False) for g in groups):
            raise ValueError("build the optimizer with capturable=True to capture its step")
        self.objective, self.optimizer, self.device = objective, optimizer, device
        self.warmup = max(1, int(warmup))
        self.steps_run = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.failed: str | None = None
        self._static: tuple[torch.Tensor, ...] = ()
        self._terms: torch.Tensor | None = None
        self._names: list[str] = []
        self._side = torch.cuda.Stream(device=device)

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def run(self, batch: HostBatch, step: int) -> torch.Tensor:
        """Train on one host batch; returns the (T,) terms tensor of this step (on the device).

        ``step`` is passed to the objective (graph-safe losses do not depend on it).
        """
        arrays = _as_tuple(batch)
        if self.graph is not None:
            for static, array in zip(self._static, arrays, strict=True):
                static.copy_(torch.from_numpy(array), non_blocking=True)
            self.graph.replay()
            self.steps_run += 1
            assert self._terms is not None
            return self._terms
        if self.failed is None and self.steps_run >= self.warmup:
            try:
                return self._capture_and_replay(arrays, step)
            except Exception as e:  # noqa: BLE001 - capture is an optimisation: fall back and say so
                self.failed = f"{type(e).__name__}: {e}"
                self.graph = None
                torch.cuda.synchronize(self.device)
                log.warning("CUDA graph capture failed (%s); training on eagerly", self.failed)
        return self._eager(arrays, step)

    def term_names(self) -> list[str]:
        """Names of the entries of the terms tensor, in order (known after the first step)."""
        return list(self._names)

    def _device_batch(self, arrays: Sequence[np.ndarray]) -> tuple[torch.Tensor, ...]:
        return tuple(torch.from_numpy(a).to(self.device, non_blocking=True) for a in arrays)

    def _objective_batch(self, tensors: tuple[torch.Tensor, ...]):
        return tensors if len(tensors) > 1 else tensors[0]

    def _step_body(self, tensors: tuple[torch.Tensor, ...], step: int) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        loss, terms = self.objective.loss_terms(self._objective_batch(tensors), step)
        loss.backward()
        self.optimizer.step()
        if not self._names:
            self._names = list(terms)
        elif list(terms) != self._names:
            raise RuntimeError(f"the logged terms changed between steps: {self._names} -> {list(terms)}")
        return stack_terms(terms)

    def _eager(self, arrays: Sequence[np.ndarray], step: int) -> torch.Tensor:
        tensors = self._device_batch(arrays)
        if self.failed is None:  # warm-up runs on a side stream, as capture will
            self._side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(self._side):
                out = self._step_body(tensors, step)
            torch.cuda.current_stream(self.device).wait_stream(self._side)
        else:
            out = self._step_body(tensors, step)
        self.steps_run += 1
        return out

    def _capture_and_replay(self, arrays: Sequence[np.ndarray], step: int) -> torch.Tensor:
        self._static = self._device_batch(arrays)
        torch.cuda.synchronize(self.device)
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            self._terms = self._step_body(self._static, step)
        self.graph = graph
        graph.replay()  # the captured step had not run yet: this is its real run
        self.steps_run += 1
        log.info("training step captured in a CUDA graph after %d eager steps", self.warmup)
        return self._terms
