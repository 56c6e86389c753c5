"""Reading factors off images, and the one rule for "reads as".

An :class:`AttributeReader` turns images into a :class:`Reading`: the grid index of every
factor of its dataset, plus the orientation angle modulo the read shape's symmetry.
:func:`agreement` decides, factor by factor, whether a reading matches known factors within
a tolerance in grid steps; edit evaluation (``EDIT_TOLERANCE``) and the reader's own held-out
accuracy (``EXACT``) both go through it.

Two kinds of reader share that rule. The dSprites readers (``READABLE``) know their factors
by name (``EDIT_TOLERANCE``). The generic reader (:mod:`.generic`, any dataset that renders
from factors) knows them by kind, from the dataset's :class:`FactorLayout`, which its
readings carry: categorical exactly, continuous within one grid step, circular within two
grid steps around the circle, modulo the dataset's ``circular_symmetry`` when it has one
(``EDIT_TOLERANCE_BY_KIND``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from latentdial.training.data.dsprites import ORIENTATIONS

from .network import SYMMETRY, Heads, ReaderNet, centre_crop

#: Factors the reader reads, in each dataset's own order.
READABLE = {
    "dsprites": ("shape", "scale", "orientation", "pos_x", "pos_y"),
    "color_dsprites": ("shape", "scale", "orientation", "pos_x", "pos_y", "object_hue", "background_hue"),
}
#: Distance between orientation grid values (the grid is linspace(0, 2 pi, 40): 0 and 2 pi coincide).
ORIENTATION_STEP = float(ORIENTATIONS[1] - ORIENTATIONS[0])

#: Grid steps within which a factor counts as read correctly in edit evaluation: categorical
#: factors and hues exactly (one hue step is a visibly different colour), scale and position
#: within one step, orientation within two steps modulo the shape's symmetry.
EDIT_TOLERANCE: Mapping[str, int] = {
    "shape": 0, "scale": 1, "orientation": 2, "pos_x": 1, "pos_y": 1, "object_hue": 0, "background_hue": 0,
}
#: The same rule for the generic reader, which knows a factor by its kind, not its name:
#: categorical exactly, continuous within one grid step, circular within two steps around the
#: circle (modulo the dataset's symmetry, if any). A reading carries its layout, and
#: :func:`agreement` applies this rule to it (:meth:`FactorLayout.tolerance`).
EDIT_TOLERANCE_BY_KIND: Mapping[str, int] = {"categorical": 0, "continuous": 1, "circular": 2}


class _Exact(Mapping[str, int]):
    """Zero grid steps for every factor name, whichever reader (it lists the dSprites names)."""

    def __getitem__(self, name: str) -> int:
        return 0

    def __iter__(self) -> Iterator[str]:
        return iter(EDIT_TOLERANCE)

    def __len__(self) -> int:
        return len(EDIT_TOLERANCE)


#: Exact reading: every factor on its own grid value (orientation: the nearest value modulo symmetry).
EXACT: Mapping[str, int] = _Exact()


@dataclass(frozen=True)
class FactorLayout:
    """A dataset's factors as the generic reader knows them, and how two readings of them compare.

    Attributes:
        names, kinds: per factor ("categorical", "continuous" or "circular").
        grids: per factor, its grid values (physical units, the dataset's ``factor_grid``).
        labels: per factor, a categorical factor's labels (else empty).
        symmetry: per circular factor, the dataset's ``circular_symmetry`` ``(f, orders)``: a
            row whose factor f has index i looks the same after period / orders[i]; else None.
        image_shape: (C, H, W) of the images.
    """

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    grids: tuple[tuple[float, ...], ...]
    labels: tuple[tuple[str, ...], ...]
    symmetry: tuple[tuple[int, tuple[int, ...]] | None, ...]
    image_shape: tuple[int, int, int]

    @classmethod
    def of(cls, dataset: Any) -> FactorLayout:
        """The layout of a ``GroundTruthData``."""
        names = tuple(str(n) for n in dataset.factor_names)
        kinds = tuple(str(k) for k in getattr(dataset, "factor_kinds", ("continuous",) * len(names)))
        symmetry = []
        for f, kind in enumerate(kinds):
            sym = dataset.circular_symmetry(f) if kind == "circular" else None
            symmetry.append(None if sym is None else (int(sym[0]), tuple(int(o) for o in sym[1])))
        return cls(names, kinds,
                   tuple(tuple(float(v) for v in dataset.factor_grid(f)) for f in range(len(names))),
                   tuple(tuple(str(v) for v in dataset.factor_labels(f)) for f in range(len(names))),
                   tuple(symmetry), tuple(int(v) for v in dataset.observation_shape))

    @property
    def num_values(self) -> tuple[int, ...]:
        return tuple(len(g) for g in self.grids)

    def period(self, factor: int) -> float:
        """A circular factor's period (``factor_card_fit.circular_period``: 2 pi for an orientation)."""
        from latentdial.training.factor_card_fit import circular_period

        return circular_period(np.asarray(self.grids[factor]))

    def step(self, factor: int) -> float:
        """Distance between neighbouring grid values (the median gap of the sorted grid)."""
        grid = np.sort(np.asarray(self.grids[factor]))
        return float(np.median(np.diff(grid))) if len(grid) > 1 else 1.0

    def orders(self, factor: int, factors: np.ndarray, also: np.ndarray | None = None) -> np.ndarray:
        """(N,) rotational symmetry order of circular ``factor`` in each row of ``factors`` (N, F):
        1 without symmetry. With ``also`` (the rows of a second image, e.g. an edit's source), the
        order under which both are the same image: the least common multiple of the two."""
        factors = np.asarray(factors)
        sym = self.symmetry[factor]
        if sym is None:
            return np.ones(len(factors), dtype=np.int64)
        on, orders = sym
        table = np.asarray(orders, dtype=np.int64)
        k = table[factors[:, on]]
        return k if also is None else np.lcm(k, table[np.asarray(also)[:, on]])

    def circular_distance(self, factor: int, a: np.ndarray, b: np.ndarray, orders: np.ndarray) -> np.ndarray:
        """Distance in grid steps between grid indices ``a`` and ``b`` (N,) of a circular factor,
        around the circle of period / ``orders`` (N,)."""
        grid = np.asarray(self.grids[factor])
        period = self.period(factor) / np.asarray(orders, np.float64)
        d = np.mod(grid[np.asarray(a)] - grid[np.asarray(b)], period)
        return np.minimum(d, period - d) / self.step(factor)

    def tolerance(self, edit: bool = True) -> dict[str, int]:
        """Grid steps per factor name: ``EDIT_TOLERANCE_BY_KIND`` (``edit``) or 0 everywhere."""
        return {n: EDIT_TOLERANCE_BY_KIND[k] if edit else 0 for n, k in zip(self.names, self.kinds, strict=True)}

    def mismatch(self, dataset: Any) -> str | None:
        """Why ``dataset`` does not draw this layout's factors and images (None if it does)."""
        other = FactorLayout.of(dataset)
        if other.names != self.names:
            return f"factors {other.names}, the reader reads {self.names}"
        for f, name in enumerate(self.names):
            if other.kinds[f] != self.kinds[f]:
                return f"{name} is {other.kinds[f]}, the reader's is {self.kinds[f]}"
            if len(other.grids[f]) != len(self.grids[f]) or not np.allclose(other.grids[f], self.grids[f],
                                                                            rtol=0, atol=1e-9):
                return f"{name} has another grid ({len(other.grids[f])} values, the reader's {len(self.grids[f])})"
            if other.labels[f] != self.labels[f]:
                return f"{name} has labels {list(other.labels[f])}, the reader's are {list(self.labels[f])}"
            if other.symmetry[f] != self.symmetry[f]:
                return f"{name} has another symmetry than the reader's"
        if other.image_shape != self.image_shape:
            return f"images {other.image_shape}, the reader reads {self.image_shape}"
        return None

    def to_json(self) -> str:
        return json.dumps({"names": self.names, "kinds": self.kinds, "grids": self.grids, "labels": self.labels,
                           "symmetry": self.symmetry, "image_shape": self.image_shape})

    @classmethod
    def from_json(cls, text: str) -> FactorLayout:
        d = json.loads(text)
        return cls(tuple(d["names"]), tuple(d["kinds"]), tuple(tuple(map(float, g)) for g in d["grids"]),
                   tuple(tuple(map(str, ls)) for ls in d["labels"]),
                   tuple(None if s is None else (int(s[0]), tuple(map(int, s[1]))) for s in d["symmetry"]),
                   tuple(map(int, d["image_shape"])))


@dataclass(frozen=True)
class Reading:
    """What the reader sees in N images.

    Attributes:
        factors: (N, F) int64 grid indices in the dataset's factor order; orientation is the
            nearest grid index to ``angle``.
        angle: (N,) float64 orientation in radians, in [0, 2 pi / k) for the read shape's symmetry k
            (a dSprites reader's; zeros from the generic reader, whose circular factors are grid
            indices like the others).
        layout: the factors' layout when the generic reader read them (its rule applies, see
            :func:`agreement`); None for a dSprites reader.
    """

    factors: np.ndarray
    angle: np.ndarray
    layout: FactorLayout | None = None


def symmetric_distance(a: np.ndarray, b: np.ndarray, shape: np.ndarray,
                       also: np.ndarray | None = None) -> np.ndarray:
    """Angular distance (radians) between orientations ``a`` and ``b`` modulo each shape's symmetry.

    Args:
        a, b: (N,) radians; shape: (N,) shape index (0 square, 1 ellipse, 2 heart).
        also: (N,) a second shape index whose symmetry also applies (the larger of the two
            symmetries wins: 1, 2 and 4 each divide the next).
    """
    k = np.asarray(SYMMETRY)[shape]
    if also is not None:
        k = np.maximum(k, np.asarray(SYMMETRY)[also])
    period = 2 * np.pi / k
    d = np.mod(np.asarray(a) - np.asarray(b), period)
    return np.minimum(d, period - d)


def agreement(names: tuple[str, ...], reading: Reading, factors: np.ndarray,
              tolerance: Mapping[str, int] | None = None, *, sources: np.ndarray | None = None) -> np.ndarray:
    """Per image and factor: does the reading match ``factors`` within ``tolerance`` grid steps?

    Orientation is compared as an angle modulo the symmetry of the shape in ``factors`` (the
    shape that should be there); tolerance 0 means within half a step. For an edit, pass the
    factors of the image it started from as ``sources``: a square's orientation is only known
    modulo 90 degrees, so a heart drawn from it may take any of the four, and orientation is
    then compared modulo the symmetry of both shapes.

    A generic reader's reading (``reading.layout`` set) is compared by kind instead: categorical
    and continuous factors by their grid index, circular ones by the distance around the circle
    (modulo the symmetry of the row in ``factors`` and, with ``sources``, of the source's too).

    Args:
        names: the factor names of the columns; factors, sources: (N, F) int grid indices.
        tolerance: grid steps per factor name; default: the edit tolerance of the reading's reader
            (``EDIT_TOLERANCE``, or ``EDIT_TOLERANCE_BY_KIND`` for the generic reader).
    Returns:
        (N, F) bool.
    """
    if reading.layout is not None:
        return _agreement_by_kind(reading.layout, names, reading, factors, tolerance, sources)
    if tolerance is None:
        tolerance = EDIT_TOLERANCE
    factors = np.asarray(factors)
    out = np.zeros(factors.shape, dtype=bool)
    for f, name in enumerate(names):
        steps = tolerance[name]
        if name == "orientation":
            shape = names.index("shape")
            d = symmetric_distance(reading.angle, ORIENTATIONS[factors[:, f]], factors[:, shape],
                                   None if sources is None else np.asarray(sources)[:, shape])
            out[:, f] = d <= max(steps, 0.5) * ORIENTATION_STEP + 1e-9
        else:
            out[:, f] = np.abs(reading.factors[:, f] - factors[:, f]) <= steps
    return out


def _agreement_by_kind(layout: FactorLayout, names: Sequence[str], reading: Reading, factors: np.ndarray,
                       tolerance: Mapping[str, int] | None, sources: np.ndarray | None) -> np.ndarray:
    """:func:`agreement` for a generic reader's reading (``EDIT_TOLERANCE_BY_KIND``)."""
    if tuple(names) != layout.names:
        raise ValueError(f"the reading is of the factors {layout.names}, not {tuple(names)}")
    tolerance = layout.tolerance() if tolerance is None else tolerance
    missing = [n for n in names if n not in tolerance]
    if missing:
        raise ValueError(f"the tolerance names no {missing}; pass the reader's own (reader.tolerance)")
    factors = np.asarray(factors)
    out = np.zeros(factors.shape, dtype=bool)
    for f, (name, kind) in enumerate(zip(names, layout.kinds, strict=True)):
        steps = tolerance[name]
        if kind == "circular":
            orders = layout.orders(f, factors, sources)
            d = layout.circular_distance(f, reading.factors[:, f], factors[:, f], orders)
            out[:, f] = d <= max(steps, 0.5) + 1e-9
        else:
            out[:, f] = np.abs(reading.factors[:, f] - factors[:, f]) <= steps
    return out


class AttributeReader:
    """A trained reader for one dataset: ``read(images) -> Reading``."""

    #: The generic reader's factor layout (:class:`.generic.GenericReader`); None for a dSprites reader.
    layout: FactorLayout | None = None

    def __init__(self, dataset: str, net: ReaderNet, metadata: Mapping[str, str] | None = None) -> None:
        if dataset not in READABLE:
            raise ValueError(f"no attribute reader for dataset {dataset!r}; readable: {', '.join(READABLE)}")
        self.dataset, self.net = dataset, net.eval()
        self.factor_names = READABLE[dataset]
        self.metadata = dict(metadata or {})

    @property
    def tolerance(self) -> dict[str, int]:
        """The edit tolerance of this reader's factors, in grid steps (``EDIT_TOLERANCE``)."""
        return {n: EDIT_TOLERANCE[n] for n in self.factor_names}

    @staticmethod
    def build(dataset: str) -> AttributeReader:
        """An untrained reader of the right shape for ``dataset``."""
        hues = 8 if dataset == "color_dsprites" else 0
        return AttributeReader(dataset, ReaderNet(3 if hues else 1, Heads(num_hues=hues)))

    @torch.no_grad()
    def outputs(self, images: np.ndarray | torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Raw head outputs and centres of mass for (N, C, 64, 64) float images in [0, 1]."""
        x = torch.as_tensor(np.asarray(images, dtype=np.float32))
        crops, centres = centre_crop(x)
        return self.net(crops), centres

    def read(self, images: np.ndarray, batch_size: int = 512) -> Reading:
        """(N, C, 64, 64) float32 in [0, 1] (NCHW, like the dataset) -> :class:`Reading`."""
        images = np.asarray(images)
        expected = 3 if self.net.heads.num_hues else 1
        if images.ndim != 4 or images.shape[1] != expected or images.shape[2:] != (64, 64):
            raise ValueError(f"the {self.dataset} reader reads (N, {expected}, 64, 64) images; got {images.shape}")
        parts = [self._read(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        return Reading(np.concatenate([p.factors for p in parts]), np.concatenate([p.angle for p in parts]))

    def _read(self, images: np.ndarray) -> Reading:
        out, centres = self.outputs(images)
        shape = out["shape"].argmax(1).numpy()
        k = np.asarray(SYMMETRY)[shape]
        pair = out["orientation"].view(-1, self.net.heads.num_shapes, 2).numpy()[np.arange(len(shape)), shape]
        angle = np.mod(np.arctan2(pair[:, 1], pair[:, 0]), 2 * np.pi) / k
        position = centres.numpy() + out["offset"].numpy() - 16.0  # grid index = centre pixel - 16
        columns = {
            "shape": shape,
            "scale": out["scale"].argmax(1).numpy(),
            "orientation": np.mod(np.rint(angle / ORIENTATION_STEP), len(ORIENTATIONS) - 1),
            "pos_x": np.clip(np.rint(position[:, 0]), 0, 31),
            "pos_y": np.clip(np.rint(position[:, 1]), 0, 31),
        }
        if self.net.heads.num_hues:
            columns |= {"object_hue": out["object_hue"].argmax(1).numpy(),
                        "background_hue": out["background_hue"].argmax(1).numpy()}
        factors = np.stack([columns[n] for n in self.factor_names], axis=1).astype(np.int64)
        return Reading(factors, angle.astype(np.float64))
