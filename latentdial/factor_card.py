"""The factor card: which latent dimensions carry each named factor, and how to dial them.

Training computes it on labelled data (``latentdial.training.factor_card_fit``);
export copies it into the manifest; serving uses it to turn "scale = 0.8" into
latent values. For unlabelled data a user names dimensions by hand in a small
JSON file (:func:`FactorCard.from_hand_named`). Pure numpy: serving imports it.

Calibration table: for each value v_k of a factor's grid, ``latent_table[k]`` is
the mean latent (over the other factors) of the factor's dimensions. Setting a
factor to v interpolates the table (linearly for continuous factors, on the
circle for circular ones, nearest entry for categorical ones); reading a
factor's current value from latents projects them onto that same piecewise-linear
curve (the nearest point of the nearest segment between two neighbouring grid
values; the nearest entry for categorical factors), so that reading inverts setting:
``value_from_latents(latent_for(v)) == v`` for every v in range, not only on the grid.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

FactorKind = Literal["continuous", "categorical", "circular"]
KINDS: tuple[str, ...] = ("continuous", "categorical", "circular")
#: Latent units swept by a traversal of a plain dimension or of a factor without calibration, and
#: the value range of a hand-named factor: about two prior standard deviations either side of 0.
DEFAULT_LATENT_RANGE: tuple[float, float] = (-2.0, 2.0)


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
            return DEFAULT_LATENT_RANGE  # latent units for hand-named dims
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
        if self.kind == "continuous" and not lo - 1e-9 <= value <= hi + 1e-9:
            raise FactorCardError(f"factor {self.name!r}: value {value} is outside [{lo}, {hi}]")
        return self.latents_along(np.asarray([value], dtype=np.float64))[0]

    def latents_along(self, values: np.ndarray) -> np.ndarray:
        """Points (N, len(dims)) float32 of the calibration curve at ``values`` (N,).

        Linear interpolation of the table in value order; circular values wrap onto the
        period (the curve closes from the last grid value back to the first), continuous
        ones are clipped to the calibrated range; categorical values take the nearest entry.
        """
        self._require_calibration()
        grid, table = self._curve()
        v = np.asarray(values, dtype=np.float64)
        if self.kind == "categorical":
            return table[np.argmin(np.abs(v[:, None] - grid[None, :]), axis=1)].astype(np.float32)
        if self.kind == "circular":
            v = grid[0] + np.mod(v - grid[0], grid[-1] - grid[0])
        out = np.stack([np.interp(v, grid, table[:, j]) for j in range(table.shape[1])], axis=-1)
        return out.astype(np.float32)

    def value_from_latents(self, latents: np.ndarray) -> np.ndarray:
        """Read the factor value of each row of ``latents`` (N, D) -> (N,) in factor units.

        Categorical: the value of the nearest table entry. Continuous and circular: the
        latents' projection onto the calibration curve, the piecewise-linear path through
        the table in value order (closed into a loop for circular factors) that
        :meth:`latent_for` interpolates; the value is interpolated along the nearest segment.
        """
        self._require_calibration()
        z = np.asarray(latents, dtype=np.float64)[:, self.dims]  # (N, d)
        values, table = self._curve()  # (K,), (K, d)
        if self.kind == "categorical" or len(values) == 1:
            dist = ((z[:, None, :] - table[None, :, :]) ** 2).sum(-1)  # (N, K)
            return values[np.argmin(dist, axis=1)]
        start, step = table[:-1], np.diff(table, axis=0)  # (S, d) segment starts and directions
        length2 = (step**2).sum(-1)  # (S,)
        t = np.einsum("nsd,sd->ns", z[:, None, :] - start[None], step) / np.where(length2 > 0, length2, 1.0)
        t = np.clip(t, 0.0, 1.0)  # (N, S) position along each segment
        gap = z[:, None, :] - (start[None] + t[:, :, None] * step[None])  # (N, S, d)
        best = np.argmin((gap**2).sum(-1), axis=1)  # (N,)
        rows = np.arange(len(z))
        value = values[best] + t[rows, best] * np.diff(values)[best]
        if self.kind == "circular":
            lo, hi = self.value_range
            value = lo + np.mod(value - lo, self.period or (hi - lo))
        return value

    def _curve(self) -> tuple[np.ndarray, np.ndarray]:
        """Calibration points in value order (K,), (K, d); circular factors repeat the first point a period on."""
        values = np.asarray(self.values, dtype=np.float64)
        table = np.asarray(self.latent_table, dtype=np.float64)
        order = np.argsort(values, kind="stable")
        values, table = values[order], table[order]
        if self.kind == "circular":
            lo, hi = self.value_range
            values = np.append(values, values[0] + (self.period or (hi - lo)))
            table = np.vstack([table, table[:1]])
        return values, table

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
    source: str = "labelled"  # "labelled" (computed from ground truth), "supervised" (the labels' codes) or "hand-named"

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
