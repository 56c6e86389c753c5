"""Reading factors off images, and the one rule for "reads as".

An :class:`AttributeReader` turns images into a :class:`Reading`: the grid index of every
factor of its dataset, plus the orientation angle modulo the read shape's symmetry.
:func:`agreement` decides, factor by factor, whether a reading matches known factors within
a tolerance in grid steps; edit evaluation (``EDIT_TOLERANCE``) and the reader's own held-out
accuracy (``EXACT``) both go through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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
#: Exact reading: every factor on its own grid value (orientation: the nearest value modulo symmetry).
EXACT: Mapping[str, int] = dict.fromkeys(EDIT_TOLERANCE, 0)


@dataclass(frozen=True)
class Reading:
    """What the reader sees in N images.

    Attributes:
        factors: (N, F) int64 grid indices in the dataset's factor order; orientation is the
            nearest grid index to ``angle``.
        angle: (N,) float64 orientation in radians, in [0, 2 pi / k) for the read shape's symmetry k.
    """

    factors: np.ndarray
    angle: np.ndarray


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
              tolerance: Mapping[str, int] = EDIT_TOLERANCE, *, sources: np.ndarray | None = None) -> np.ndarray:
    """Per image and factor: does the reading match ``factors`` within ``tolerance`` grid steps?

    Orientation is compared as an angle modulo the symmetry of the shape in ``factors`` (the
    shape that should be there); tolerance 0 means within half a step. For an edit, pass the
    factors of the image it started from as ``sources``: a square's orientation is only known
    modulo 90 degrees, so a heart drawn from it may take any of the four, and orientation is
    then compared modulo the symmetry of both shapes.

    Args:
        names: the factor names of the columns; factors, sources: (N, F) int grid indices.
    Returns:
        (N, F) bool.
    """
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


class AttributeReader:
    """A trained reader for one dataset: ``read(images) -> Reading``."""

    def __init__(self, dataset: str, net: ReaderNet, metadata: Mapping[str, str] | None = None) -> None:
        if dataset not in READABLE:
            raise ValueError(f"no attribute reader for dataset {dataset!r}; readable: {', '.join(READABLE)}")
        self.dataset, self.net = dataset, net.eval()
        self.factor_names = READABLE[dataset]
        self.metadata = dict(metadata or {})

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
