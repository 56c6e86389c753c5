"""The codes StarGAN is conditioned on: the semi-supervised VAE's label codes, one layout.

The generator's target codes, the classifier's output and the factor card all use the code
layout of :func:`latentdial.training.objectives.semi_supervised.factor_codes` (a categorical
factor at ``linspace(-1, 1, K)[k]`` or one-hot, a continuous one at ``linspace(-1, 1, K)[k]``,
a circular one as (cos, sin)), and the card is that objective's :func:`supervision_card`, so
a server dials a StarGAN editor by name exactly as it dials the semi-supervised VAE's named
dims. Nothing here encodes a factor a second way.

The discriminator's auxiliary head predicts each factor in the form that suits its kind
(Choi et al. 2018 use a cross-entropy over domain labels; here that is the categorical case):

- categorical: K logits; cross-entropy against the class; the code is the table row of the
  arg max;
- continuous: one value; squared error to the label code; the code is the value clipped to
  [-1, 1], the range of the table;
- circular: a (cos, sin) pair; the semi-supervised objective's :func:`circular_loss` (which
  knows a square looks the same a quarter turn on); the code is the pair on the unit circle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latentdial.factor_card import FactorCard
from latentdial.training.objectives.semi_supervised import (
    FactorCode,
    circular_loss,
    factor_codes,
    supervision_card,
)


@dataclass(frozen=True)
class HeadSlot:
    """Where one factor sits in the auxiliary head's output and in the code vector."""

    kind: str
    head: tuple[int, int]  # [start, stop) of the head output (N, H)
    dims: tuple[int, int]  # [start, stop) of the codes (N, D)
    table: np.ndarray  # (K, stop - start of dims) the factor's code table


def head_slots(entries: list[tuple[str, tuple[int, ...], np.ndarray]]) -> list[HeadSlot]:
    """Slots of (kind, code dims, code table) per factor, in code order."""
    slots, start = [], 0
    for kind, dims, table in entries:
        width = len(table) if kind == "categorical" else len(dims)
        slots.append(HeadSlot(kind, (start, start + width), (dims[0], dims[-1] + 1),
                              np.asarray(table, dtype=np.float32)))
        start += width
    return slots


class CodeLayout:
    """The factors a StarGAN run is conditioned on, from a dataset (training) or a card (export)."""

    def __init__(self, slots: list[HeadSlot], code_dim: int, factors: list[FactorCode] | None = None) -> None:
        self.slots = slots
        self.code_dim = code_dim
        self.head_dim = slots[-1].head[1] if slots else 0
        self.factors = factors or []  # with a dataset: the factors' columns and symmetry

    @classmethod
    def from_dataset(cls, dataset: Any, names: list[str], categorical_code: str = "centre") -> CodeLayout:
        """The semi-supervised objective's named-dim layout of ``names`` ([] = every factor)."""
        if getattr(dataset, "num_factors", 0) == 0:
            raise ValueError("StarGAN needs a dataset with ground-truth factors (its domains); "
                             f"{getattr(dataset, 'name', 'this dataset')} has none")
        codes = factor_codes(dataset, names, 1 << 30, categorical_code)
        code_dim = sum(len(c.dims) for c in codes)
        return cls(head_slots([(c.kind, c.dims, c.table) for c in codes]), code_dim, codes)

    @classmethod
    def from_card(cls, card: FactorCard) -> CodeLayout:
        """The layout a run's factor card describes (what export rebuilds the classifier from)."""
        entries = [(f.kind, tuple(f.dims), np.asarray(f.latent_table)) for f in card.factors]
        return cls(head_slots(entries), card.latent_dim)

    def card(self) -> FactorCard:
        """The factor card: the semi-supervised objective's :func:`supervision_card` of these codes."""
        return supervision_card(self.factors, self.code_dim)

    # -- indices -> codes ------------------------------------------------------------------
    def codes_of(self, labels: torch.Tensor) -> torch.Tensor:
        """Label codes of factor indices: (N, F) int64 (dataset columns) -> (N, D) float32."""
        parts = [torch.as_tensor(f.table, device=labels.device)[labels[:, f.column]] for f in self.factors]
        return torch.cat(parts, dim=1)

    # -- head -> codes, and the classification loss --------------------------------------
    def codes_from_head(self, head: torch.Tensor) -> torch.Tensor:
        """The classifier's codes from the auxiliary head: (N, H) -> (N, D), in the card's values."""
        return CodesFromHead(self).to(head.device)(head)

    def classification_loss(self, head: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Sum over factors of the per-kind loss (module docstring), averaged over rows.

        head: (N, H) auxiliary head outputs; labels: (N, F) int64 factor indices, all known.
        Returns (loss (), {factor name: its term}).
        """
        total = head.new_zeros(())
        logs: dict[str, float] = {}
        for slot, code in zip(self.slots, self.factors, strict=True):
            out = head[:, slot.head[0]:slot.head[1]]
            idx = labels[:, code.column]
            if slot.kind == "categorical":
                term = F.cross_entropy(out, idx)
            elif slot.kind == "circular":
                table = torch.as_tensor(slot.table, device=head.device)[idx]
                theta = torch.atan2(table[:, 1], table[:, 0])
                order = torch.ones_like(idx)
                if code.symmetry is not None:
                    col, orders = code.symmetry
                    order = torch.as_tensor(orders, device=head.device)[labels[:, col]]
                term = circular_loss(out, theta, order).mean()
            else:
                target = torch.as_tensor(slot.table, device=head.device)[idx]
                term = (out - target).pow(2).sum(dim=1).mean()
            logs[code.name] = float(term.detach())
            total = total + term
        return total, logs


class CodesFromHead(nn.Module):
    """:meth:`CodeLayout.codes_from_head` as a module with its tables as buffers (for export)."""

    def __init__(self, layout: CodeLayout) -> None:
        super().__init__()
        self.kinds = [s.kind for s in layout.slots]
        self.heads = [s.head for s in layout.slots]
        for i, slot in enumerate(layout.slots):
            self.register_buffer(f"table{i}", torch.as_tensor(slot.table), persistent=False)

    def forward(self, head: torch.Tensor) -> torch.Tensor:
        parts = []
        for i, (kind, (a, b)) in enumerate(zip(self.kinds, self.heads, strict=True)):
            out = head[:, a:b]
            if kind == "categorical":
                parts.append(getattr(self, f"table{i}")[out.argmax(dim=1)])
            elif kind == "circular":
                parts.append(out / torch.sqrt(out.pow(2).sum(dim=1, keepdim=True) + 1e-12))
            else:
                parts.append(out.clamp(-1.0, 1.0))
        return torch.cat(parts, dim=1)
