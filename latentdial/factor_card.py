"""The factor card: which latent dimensions carry each named factor, and how to dial them.

Training computes it on labelled data (``latentdial.training.factor_card_fit``);
export copies it into the manifest; serving uses it to turn "scale = 0.8" into
latent values. For unlabelled data a user names dimensions by hand in a small
JSON file (:func:`FactorCard.from_hand_named`). Pure numpy: serving imports it.

Calibration table: for each value v_k of a factor's grid, ``latent_table[k]`` is
the mean latent (over the other factors) of the factor's dimensions. Setting a
factor to v interpolates the table (linearly for continuous factors, on the
circle for circular ones, nearest entry for categorical ones); reading a
factor's current value from latents is the nearest table entry, refined by
interpolation between the two neighbouring grid values for ordered factors.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

FactorKind = Literal["continuous", "categorical", "circular"]
KINDS: tuple[str, ...] = ("continuous", "categorical", "circular")


class FactorCardError(ValueError):
    """Bad factor name, value or card."""


@dataclass
class FactorEntry:
    """One factor: its dimensions and its calibration table.

    Shapes: ``values`` (K,), ``latent_table`` (K, len(dims)); both empty for a
    hand-named factor without calibration.
    """

    name: str
    kind: FactorKind
    dims: list[int]
    values: list[float] = field(default_factory=list)
    latent_table: list[list[float]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # categorical only, one per value
    importance: list[float] = field(default_factory=list)  # per dim, from DCI / MI
    period: float | None = None  # circular only, e.g. 2*pi

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FactorCardError(f"factor {self.name!r}: kind {self.kind!r} is not one of {KINDS}")
        if not self.dims:
            raise FactorCardError(f"factor {self.name!r} names no latent dimension")
        if self.latent_table and np.shape(self.latent_table) != (len(self.values), len(self.dims)):
            raise FactorCardError(
                f"factor {self.name!r}: latent_table shape {np.shape(self.latent_table)} != "
                f"(len(values), len(dims)) = ({len(self.values)}, {len(self.dims)})"
            )
        if self.labels and len(self.labels) != len(self.values):
            raise FactorCardError(f"factor {self.name!r}: {len(self.labels)} labels for {len(self.values)} values")

    @property
    def calibrated(self) -> bool:
        return bool(self.latent_table)

    @property
    def value_range(self) -> tuple[float, float]:
        if not self.values:
            return (-2.0, 2.0)  # latent units for hand-named dims
        return (float(min(self.values)), float(max(self.values)))

    def _require_calibration(self) -> None:
        if not self.calibrated:
            raise FactorCardError(
                f"factor {self.name!r} has no calibration table (hand-named); set its latent directly"
            )

    def value_of_label(self, label: str) -> float:
        if label not in self.labels:
            raise FactorCardError(f"factor {self.name!r} has no label {label!r}; labels: {self.labels}")
        return float(self.values[self.labels.index(label)])

    def latent_for(self, value: float) -> np.ndarray:
        """Latent values (len(dims),) that put the factor at ``value`` (factor units)."""
        self._require_calibration()
        values = np.asarray(self.values, dtype=np.float64)
        table = np.asarray(self.latent_table, dtype=np.float64)
        if self.kind == "categorical":
            k = int(np.argmin(np.abs(values - value)))
            if abs(values[k] - value) > 1e-6:
                raise FactorCardError(
                    f"factor {self.name!r} is categorical; value {value} is not one of {self.values}"
                    + (f" (labels {self.labels})" if self.labels else "")
                )
            return table[k].astype(np.float32)
        lo, hi = self.value_range
        if self.kind == "circular":
            period = self.period or (hi - lo)
            v = lo + np.mod(value - lo, period)
            # extend the table by one wrap-around point so that interpolation closes the circle
            values = np.append(values, values[0] + period)
            table = np.vstack([table, table[:1]])
        else:
            if not lo - 1e-9 <= value <= hi + 1e-9:
                raise FactorCardError(f"factor {self.name!r}: value {value} is outside [{lo}, {hi}]")
            v = value
        order = np.argsort(values)
        out = [np.interp(v, values[order], table[order, j]) for j in range(table.shape[1])]
        return np.asarray(out, dtype=np.float32)

    def value_from_latents(self, latents: np.ndarray) -> np.ndarray:
        """Estimate the factor value of each row of ``latents`` (N, D) -> (N,) by nearest table entry."""
        self._require_calibration()
        z = np.asarray(latents, dtype=np.float64)[:, self.dims]  # (N, d)
        table = np.asarray(self.latent_table, dtype=np.float64)  # (K, d)
        dist = ((z[:, None, :] - table[None, :, :]) ** 2).sum(-1)  # (N, K)
        return np.asarray(self.values, dtype=np.float64)[np.argmin(dist, axis=1)]

    def shift_value(self, current: np.ndarray, delta: float) -> np.ndarray:
        """current + delta, wrapped for circular factors and clipped to the range otherwise."""
        lo, hi = self.value_range
        if self.kind == "circular":
            period = self.period or (hi - lo)
            return lo + np.mod(current + delta - lo, period)
        if self.kind == "categorical":
            values = np.asarray(self.values, dtype=np.float64)
            idx = np.argmin(np.abs(values[None, :] - current[:, None]), axis=1)
            return values[np.clip(idx + int(round(delta)), 0, len(values) - 1)]
        return np.clip(current + delta, lo, hi)


@dataclass
class FactorCard:
    """All named factors of a model."""

    factors: list[FactorEntry]
    latent_dim: int
    source: str = "labelled"  # "labelled" (computed from ground truth) or "hand-named"

    def __post_init__(self) -> None:
        names = [f.name for f in self.factors]
        if len(set(names)) != len(names):
            raise FactorCardError(f"duplicate factor names in {names}")
        for f in self.factors:
            bad = [d for d in f.dims if not 0 <= d < self.latent_dim]
            if bad:
                raise FactorCardError(f"factor {f.name!r}: dims {bad} outside 0..{self.latent_dim - 1}")

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.factors]

    def __getitem__(self, name: str) -> FactorEntry:
        for f in self.factors:
            if f.name == name:
                return f
        raise FactorCardError(f"unknown factor {name!r}; this model's factors are {self.names}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FactorCard:
        try:
            return cls(
                factors=[FactorEntry(**f) for f in d["factors"]],
                latent_dim=int(d["latent_dim"]),
                source=d.get("source", "labelled"),
            )
        except (KeyError, TypeError) as e:
            raise FactorCardError(f"malformed factor card: {e}") from e

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> FactorCard:
        return cls.from_dict(json.loads(Path(path).read_text()))

    @classmethod
    def from_hand_named(cls, names: dict[str, int | list[int]], latent_dim: int) -> FactorCard:
        """A card for unlabelled data: ``{"smile": 3, "hair": [5, 7]}`` names dimensions by hand.

        Hand-named factors have no calibration: they are edited in latent units.
        """
        factors = [
            FactorEntry(name=n, kind="continuous", dims=[d] if isinstance(d, int) else list(d))
            for n, d in names.items()
        ]
        return cls(factors=factors, latent_dim=latent_dim, source="hand-named")
