"""The factor schema of a labelled image folder: ``factors.toml``, one table per factor.

A user's labels arrive as cells of a spreadsheet (``metadata.csv``); the schema says what
each column means, so that a cell becomes a grid index of the ``GroundTruthData`` contract
(factor indices ``(N, F)`` int64, ``-1`` where a cell is empty)::

    [factors.shape]
    kind = "categorical"
    labels = ["square", "ellipse", "heart"]

    [factors.scale]
    kind = "continuous"
    range = [0.5, 1.0]        # [min, max]; a value outside is an error
    levels = 6                # optional: the grid the values are placed on (default 32)

    [factors.orientation]
    kind = "circular"
    period = 6.283185307179586  # values wrap around: v and v + period are the same
    levels = 40

Tables come in the order the named latent dims are laid out. A continuous value is placed
on the nearest of ``levels`` evenly spaced points of its range (so ``levels`` bounds the
precision an edit can ask for); a circular value on the nearest of ``levels`` points of
``[0, period)``, wrapping; a categorical cell must be one of ``labels``, exactly.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

KINDS = ("categorical", "continuous", "circular")
#: Grid points of a continuous or circular factor when the schema does not say.
DEFAULT_LEVELS = 32


class SchemaError(ValueError):
    """``factors.toml`` is malformed; the message names the file, the factor and the fix."""


class CellError(ValueError):
    """A label cell does not fit its factor (unknown label, not a number, out of range)."""


@dataclass(frozen=True)
class FactorSpec:
    """One factor of the schema.

    Attributes:
        name: the column of ``metadata.csv`` and the name edits use.
        kind: "categorical", "continuous" or "circular".
        labels: a categorical factor's labels, in code order.
        low, high: a continuous factor's range (inclusive); a circular one's is [0, period).
        period: a circular factor's period (e.g. 360 for degrees, 2 pi for radians).
        levels: number of grid values (``len(labels)`` for a categorical factor).
    """

    name: str
    kind: str
    labels: tuple[str, ...] = ()
    low: float = 0.0
    high: float = 1.0
    period: float | None = None
    levels: int = DEFAULT_LEVELS

    def grid(self) -> np.ndarray:
        """The physical value of each grid index, shape (levels,) float64."""
        if self.kind == "categorical":
            return np.arange(len(self.labels), dtype=np.float64)
        if self.kind == "circular":
            assert self.period is not None
            return np.arange(self.levels, dtype=np.float64) * (self.period / self.levels)
        return np.linspace(self.low, self.high, self.levels)

    def index_of(self, cell: Any) -> int:
        """A non-empty cell -> its grid index; raises CellError saying what is wrong."""
        if self.kind == "categorical":
            text = str(cell).strip()
            if text not in self.labels:
                raise CellError(f"{self.name}: unknown label {text!r}; the schema's labels are {list(self.labels)}")
            return self.labels.index(text)
        try:
            value = float(cell)
        except (TypeError, ValueError):
            raise CellError(f"{self.name}: {cell!r} is not a number") from None
        if not math.isfinite(value):
            raise CellError(f"{self.name}: {cell!r} is not a finite number")
        if self.kind == "circular":
            assert self.period is not None
            step = self.period / self.levels
            return int(round((value % self.period) / step)) % self.levels
        if not self.low <= value <= self.high:
            raise CellError(f"{self.name}: {value!r} is outside the declared range [{self.low}, {self.high}]")
        step = (self.high - self.low) / (self.levels - 1)
        return int(round((value - self.low) / step))


@dataclass(frozen=True)
class FactorSchema:
    """The factors of a labelled folder, in layout order."""

    factors: tuple[FactorSpec, ...]
    source: str = "factors.toml"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.factors)

    def to_dict(self) -> dict[str, Any]:
        """The schema as plain data (recorded in run and model directories)."""
        out: dict[str, Any] = {}
        for f in self.factors:
            entry: dict[str, Any] = {"kind": f.kind}
            if f.kind == "categorical":
                entry["labels"] = list(f.labels)
            elif f.kind == "circular":
                entry.update(period=f.period, levels=f.levels)
            else:
                entry.update(range=[f.low, f.high], levels=f.levels)
            out[f.name] = entry
        return {"factors": out}


def load_schema(path: Path | str) -> FactorSchema:
    """Read and check ``factors.toml``; raises SchemaError naming the file and the factor."""
    path = Path(path)
    if not path.is_file():
        raise SchemaError(
            f"no factor schema at {path}: write a factors.toml with one [factors.<name>] table per "
            "metadata column (kind = \"categorical\" | \"continuous\" | \"circular\"; see docs/datasets.md)"
        )
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SchemaError(f"{path} is not valid TOML: {e}") from e
    return parse_schema(raw, str(path))


def parse_schema(raw: dict[str, Any], source: str = "factors.toml") -> FactorSchema:
    """A schema from parsed TOML (``{"factors": {name: table}}``)."""
    unknown = sorted(set(raw) - {"factors"})
    if unknown:
        raise SchemaError(f"{source}: unknown top-level key(s) {unknown}; the schema has only [factors.<name>] tables")
    tables = raw.get("factors")
    if not isinstance(tables, dict) or not tables:
        raise SchemaError(f"{source}: no factors; add one [factors.<name>] table per labelled column")
    return FactorSchema(tuple(_spec(name, table, source) for name, table in tables.items()), source)


def _spec(name: str, table: Any, source: str) -> FactorSpec:
    where = f"{source}: [factors.{name}]"
    if not isinstance(table, dict):
        raise SchemaError(f"{where} must be a table with a kind")
    if name == "file_name" or not name.strip():
        raise SchemaError(f"{where}: {name!r} cannot name a factor")
    kind = table.get("kind")
    if kind not in KINDS:
        raise SchemaError(f"{where}: kind must be one of {list(KINDS)}, got {kind!r}")
    allowed = {"categorical": {"kind", "labels"}, "continuous": {"kind", "range", "levels"},
               "circular": {"kind", "period", "levels"}}[kind]
    extra = sorted(set(table) - allowed)
    if extra:
        raise SchemaError(f"{where}: key(s) {extra} do not apply to a {kind} factor; it takes {sorted(allowed)}")
    if kind == "categorical":
        labels = table.get("labels")
        if (not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(v, str) and v.strip() for v in labels)
                or len(set(labels)) != len(labels)):
            raise SchemaError(f"{where}: labels must list at least two distinct non-empty strings, got {labels!r}")
        return FactorSpec(name, kind, labels=tuple(labels), levels=len(labels))
    levels = table.get("levels", DEFAULT_LEVELS)
    if not isinstance(levels, int) or isinstance(levels, bool) or levels < 2:
        raise SchemaError(f"{where}: levels must be an integer >= 2, got {levels!r}")
    if kind == "circular":
        period = table.get("period")
        if not _number(period) or period <= 0:
            raise SchemaError(f"{where}: period must be a positive number (360 for degrees, 6.283185307179586 "
                              f"for radians), got {period!r}")
        return FactorSpec(name, kind, low=0.0, high=float(period), period=float(period), levels=levels)
    bounds = table.get("range")
    if not (isinstance(bounds, list) and len(bounds) == 2 and all(map(_number, bounds)) and bounds[0] < bounds[1]):
        raise SchemaError(f"{where}: range must be [min, max] with min < max, got {bounds!r}")
    return FactorSpec(name, kind, low=float(bounds[0]), high=float(bounds[1]), levels=levels)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
