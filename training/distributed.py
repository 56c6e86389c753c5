"""Data-parallel training with ``torchrun``: process group, DDP wrapping, rank-0-only I/O.

``torchrun --nproc_per_node=N -m latentdial.cli train --config ... --out ...`` starts N
copies of the same command; each reads RANK / WORLD_SIZE / LOCAL_RANK from the
environment, joins a process group (gloo on CPU, nccl on CUDA), draws its own batches
(``BatchStream(rank=...)``) and averages gradients through ``DistributedDataParallel``.
Only rank 0 writes files. Without those variables everything runs in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistContext:
    """Where this process stands among the data-parallel ranks."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "cpu") -> DistContext:
    """Join the process group described by torchrun's environment, or run alone.

    ``device`` is the config's ("cpu" or "cuda"); on CUDA each rank takes GPU LOCAL_RANK.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("config asks for device='cuda' but no CUDA device is visible; use --set device=cpu")
        device = f"cuda:{local_rank}" if world_size > 1 else device
        if torch.device(device).index is not None:  # plain "cuda" is the current device already
            torch.cuda.set_device(torch.device(device))
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistContext(rank, world_size, local_rank, local_world, device)


def wrap_objective(objective: nn.Module, ctx: DistContext) -> nn.Module:
    """The callable the trainer runs each step: the objective itself, or a DDP wrapper of it.

    Auxiliary networks (FactorVAE's discriminator) get their own DDP wrapper through the
    objective's ``distribute`` hook and are excluded from the objective's.
    """
    if not ctx.enabled:
        return objective
    ids = [torch.device(ctx.device).index] if ctx.device.startswith("cuda") else None

    def wrap(module: nn.Module) -> nn.Module:
        return DistributedDataParallel(module, device_ids=ids)

    ignored = objective.ddp_ignored_names()  # type: ignore[operator]
    if ignored:
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(objective, ignored)
    objective.distribute(wrap)  # type: ignore[operator]
    return wrap(objective)


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj`` (a picklable value), in rank order, on every rank."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True on every rank if ``flag`` is true on any rank (one tiny all-reduce)."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
