"""Loaders for the official dSprites and 3dshapes files, for users who have them.

- dSprites (Matthey et al. 2017): ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``
  with ``imgs`` (N, 64, 64) uint8 in {0, 1}, ``latents_classes`` (N, 6) int and
  ``latents_values`` (N, 6) float; columns colour, shape, scale, orientation,
  pos_x, pos_y. The constant colour column is dropped, as in disentanglement_lib.
- 3dshapes (Burgess & Kim 2018): ``3dshapes.h5`` with ``images`` (N, 64, 64, 3)
  uint8 and ``labels`` (N, 6) float; columns floor_hue (10), wall_hue (10),
  object_hue (10), scale (8), shape (4), orientation (15).

Both files store every factor combination exactly once in row-major
(mixed-radix) order, the last factor varying fastest. The grid sizes are derived
from the file (so a reduced grid in the same layout loads too), the order is
validated, and an observation is found as ``index = factors @ strides`` like
disentanglement_lib's ``StateSpaceAtomIndex``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import GroundTruthData
from .checks import check_factors, uniform_factors

DSPRITES_FACTORS = ("shape", "scale", "orientation", "pos_x", "pos_y")
DSPRITES_KINDS = ("categorical", "continuous", "circular", "continuous", "continuous")
SHAPES3D_FACTORS = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
SHAPES3D_KINDS = ("circular", "circular", "circular", "continuous", "categorical", "continuous")


def mixed_radix_strides(sizes: Sequence[int]) -> np.ndarray:
    """Row-major strides of a factor grid: ``index = factors @ strides``.

    Example: sizes (3, 6, 40) -> strides (240, 40, 1).
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    return np.concatenate([np.cumprod(sizes[::-1])[::-1][1:], [1]]).astype(np.int64)


def _check_grid_order(classes: np.ndarray, sizes: Sequence[int], what: str) -> None:
    """Raise unless row i of ``classes`` (N, F) is the i-th combination in row-major order."""
    total = int(np.prod(sizes))
    if len(classes) != total:
        raise ValueError(
            f"{what}: {len(classes)} rows but the factor grid {tuple(sizes)} has {total} "
            "combinations; the file must hold every combination exactly once"
        )
    order = classes.astype(np.int64) @ mixed_radix_strides(sizes)
    if not np.array_equal(order, np.arange(total)):
        first = int(np.nonzero(order != np.arange(total))[0][0])
        raise ValueError(
            f"{what}: rows are not in row-major factor order (last factor fastest); "
            f"row {first} holds factor classes {classes[first].tolist()}"
        )


class _GridFile(GroundTruthData):
    """Shared part of the file-backed datasets: grid values, strides, index lookup."""

    name = "official"

    def _set_grid(self, sizes: Sequence[int], grids: Sequence[np.ndarray]) -> None:
        self.factors_num_values = tuple(int(s) for s in sizes)
        self._grids = [np.asarray(g, dtype=np.float64) for g in grids]
        self._strides = mixed_radix_strides(self.factors_num_values)

    def factor_grid(self, factor: int) -> np.ndarray:
        return self._grids[factor].copy()

    def sample_factors(self, num: int, rng: np.random.Generator) -> np.ndarray:
        """(num, F) int64 factor indices, each factor uniform over its grid."""
        return uniform_factors(num, self.factors_num_values, rng)

    def index_of(self, factors: np.ndarray) -> np.ndarray:
        """(N, F) factor indices -> (N,) row indices into the file (validated)."""
        factors = check_factors(factors, self.factors_num_values, self.name)
        return factors @ self._strides

    def __len__(self) -> int:
        return int(np.prod(self.factors_num_values))


class DSpritesNPZ(_GridFile):
    """The official dSprites ``.npz``, colour column dropped: 5 factors, (N, 1, 64, 64).

    The whole file is loaded into memory (about 300 MB for the official grid).
    """

    name = "dsprites_npz"
    factor_names = DSPRITES_FACTORS
    factor_kinds = DSPRITES_KINDS

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"dSprites file not found: {path} (expected "
                "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz from github.com/deepmind/dsprites-dataset)"
            )
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("imgs", "latents_classes", "latents_values") if k not in data.files]
            if missing:
                raise ValueError(
                    f"{path} is not in the official dSprites layout: missing keys {missing} "
                    f"(found {sorted(data.files)})"
                )
            imgs = data["imgs"]
            classes = data["latents_classes"]
            values = data["latents_values"]
        if imgs.ndim != 3 or classes.ndim != 2 or classes.shape[1] != 6 or values.shape != classes.shape:
            raise ValueError(
                f"{path}: expected imgs (N, H, W), latents_classes and latents_values (N, 6); got "
                f"{imgs.shape}, {classes.shape}, {values.shape}"
            )
        if len(imgs) != len(classes):
            raise ValueError(f"{path}: {len(imgs)} images but {len(classes)} rows of latents_classes")
        sizes = classes.max(axis=0).astype(np.int64) + 1
        if classes.min() < 0:
            raise ValueError(f"{path}: latents_classes must be non-negative grid indices")
        if sizes[0] != 1:
            raise ValueError(
                f"{path}: the colour column (latents_classes[:, 0]) must be constant, "
                f"found {sizes[0]} colours"
            )
        _check_grid_order(classes, sizes, str(path))
        strides = mixed_radix_strides(sizes)
        grids = [values[np.arange(n) * strides[f], f] for f, n in enumerate(sizes)]
        self._set_grid(sizes[1:], grids[1:])
        self.observation_shape = (1, int(imgs.shape[1]), int(imgs.shape[2]))
        self._imgs = imgs
        self._scale = np.float32(1.0 if imgs.max(initial=0) <= 1 else 1.0 / 255.0)
        self.path = path

    def factor_labels(self, factor: int) -> list[str]:
        if factor == 0 and self.factors_num_values[0] == 3:
            return ["square", "ellipse", "heart"]
        return []

    def sample_observations_from_factors(
        self, factors: np.ndarray, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """(N, 5) factor indices -> (N, 1, 64, 64) float32 in [0, 1]."""
        out = self._imgs[self.index_of(factors)][:, None].astype(np.float32)
        if self._scale != 1:
            out *= self._scale
        return out


class Shapes3D(_GridFile):
    """The official ``3dshapes.h5``: 6 factors, observations (N, 3, 64, 64).

    Args:
        path: the ``.h5`` file.
        in_memory: load all images at once (about 5.9 GB for the official file, the
            fastest to sample) instead of reading each batch from the file.
    """

    name = "shapes3d"
    factor_names = SHAPES3D_FACTORS
    factor_kinds = SHAPES3D_KINDS

    def __init__(self, path: str | Path, in_memory: bool = False) -> None:
        import h5py  # training extra; imported here so the data package loads without it

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"3dshapes file not found: {path} (expected 3dshapes.h5 from github.com/deepmind/3d-shapes)"
            )
        self._file: Any = h5py.File(path, "r")
        try:
            self._read_layout(path, in_memory)
        except Exception:
            self._file.close()
            raise
        self.path = path
        self.in_memory = in_memory

    def __getstate__(self) -> dict:
        """Pickle by path: the file is reopened on unpickling (e.g. in a worker process)."""
        return {"path": self.path, "in_memory": self.in_memory}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["in_memory"])

    def _read_layout(self, path: Path, in_memory: bool) -> None:
        """Derive and validate the factor grid from ``labels``; keep ``images``."""
        missing = [k for k in ("images", "labels") if k not in self._file]
        if missing:
            raise ValueError(
                f"{path} is not in the 3dshapes layout: missing datasets {missing} "
                f"(found {sorted(self._file.keys())})"
            )
        images, labels = self._file["images"], np.asarray(self._file["labels"][()], dtype=np.float64)
        if images.ndim != 4 or images.shape[3] != 3 or labels.shape != (images.shape[0], 6):
            raise ValueError(
                f"{path}: expected images (N, H, W, 3) and labels (N, 6), got {images.shape} and "
                f"{labels.shape}"
            )
        grids = [np.unique(np.round(labels[:, f], 8)) for f in range(6)]
        classes = np.stack(
            [np.searchsorted(g, np.round(labels[:, f], 8)) for f, g in enumerate(grids)], axis=1
        )
        _check_grid_order(classes, [len(g) for g in grids], str(path))
        self._set_grid([len(g) for g in grids], grids)
        self.observation_shape = (3, int(images.shape[1]), int(images.shape[2]))
        self._images = images[()] if in_memory else images

    def sample_observations_from_factors(
        self, factors: np.ndarray, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """(N, 6) factor indices -> (N, 3, 64, 64) float32 in [0, 1]."""
        index = self.index_of(factors)
        if isinstance(self._images, np.ndarray):
            batch = self._images[index]
        else:  # h5py reads increasing, unique indices only
            unique, inverse = np.unique(index, return_inverse=True)
            batch = self._images[unique][inverse] if len(unique) else np.empty(
                (0,) + self._images.shape[1:], np.uint8
            )
        return batch.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)

    def close(self) -> None:
        """Close the underlying HDF5 file."""
        self._file.close()
