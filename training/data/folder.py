"""Unlabelled image folders: train on your own PNG/JPEG images, without factors.

``ImageFolder(path)`` finds ``*.png``, ``*.jpg`` and ``*.jpeg`` files under
``path`` (recursively, in sorted order), decodes them with Pillow, converts them
to grey (1 channel) or RGB (3 channels) and resizes them to
``image_size x image_size`` (bilinear, aspect ratio not kept). Decoded images
are memoised (up to ``cache_size`` of them), so later epochs do not decode again.

It follows the ``GroundTruthData`` interface with zero factors:
``factor_names == ()``, ``sample_factors`` gives (N, 0) arrays and
``sample_observations(n, rng)`` draws images uniformly with replacement.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from .base import GroundTruthData
from .checks import check_num

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class ImageFolder(GroundTruthData):
    """Unlabelled images from a folder, as (N, C, H, W) float32 in [0, 1].

    Args:
        path: folder searched recursively for PNG/JPEG files.
        channels: 1 (grey) or 3 (RGB).
        image_size: side of the square output images in pixels.
        cache_size: how many decoded images to keep in memory.
    """

    name = "folder"
    factor_names = ()
    factors_num_values = ()
    factor_kinds = ()

    def __init__(
        self, path: str | Path, channels: int = 1, image_size: int = 64, cache_size: int = 50_000
    ) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
        if image_size < 1:
            raise ValueError(f"image_size must be a positive number of pixels, got {image_size}")
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.path}")
        self.files = sorted(
            p for p in self.path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not self.files:
            raise ValueError(
                f"no images in {self.path}: put PNG or JPEG files ({', '.join(IMAGE_SUFFIXES)}) "
                "in it or in its sub-folders"
            )
        self.channels = channels
        self.image_size = image_size
        self.observation_shape = (channels, image_size, image_size)
        self._load = functools.lru_cache(maxsize=cache_size)(self._decode)

    def __len__(self) -> int:
        return len(self.files)

    def __getstate__(self) -> dict:
        """Pickle without the decoded-image cache (e.g. for data-loader worker processes)."""
        state = dict(self.__dict__)
        state["_cache_size"] = self._load.cache_info().maxsize
        del state["_load"]
        return state

    def __setstate__(self, state: dict) -> None:
        cache_size = state.pop("_cache_size")
        self.__dict__.update(state)
        self._load = functools.lru_cache(maxsize=cache_size)(self._decode)

    def _decode(self, index: int) -> np.ndarray:
        """Image ``index`` as (C, H, W) uint8."""
        from PIL import Image

        path = self.files[index]
        try:
            with Image.open(path) as im:
                im = im.convert("L" if self.channels == 1 else "RGB")
                im = im.resize((self.image_size, self.image_size), Image.Resampling.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8)
        except OSError as e:
            raise ValueError(f"cannot read image {path}: {e}") from e
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        arr.setflags(write=False)
        return arr

    def load(self, indices: np.ndarray) -> np.ndarray:
        """Images by file index (into ``self.files``) -> (N, C, H, W) float32 in [0, 1]."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.empty((len(indices),) + self.observation_shape, np.float32)
        for i, index in enumerate(indices):
            out[i] = self._load(int(index))
        out *= np.float32(1.0 / 255.0)
        return out

    def factor_grid(self, factor: int) -> np.ndarray:
        raise IndexError(f"{self.path} is an unlabelled image folder: it has no factors")

    def sample_factors(self, num: int, rng: np.random.Generator) -> np.ndarray:
        """(num, 0) int64: an unlabelled folder has no factors."""
        return np.zeros((check_num(num), 0), np.int64)

    def sample_observations_from_factors(
        self, factors: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        raise ValueError(
            f"{self.path} is an unlabelled image folder: observations cannot be chosen by "
            "factors; use sample_observations(n, rng)"
        )

    def sample(self, num: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """((num, 0) factors, (num, C, H, W) images drawn uniformly with replacement)."""
        return self.sample_factors(num, rng), self.sample_observations(num, rng)

    def sample_observations(self, num: int, rng: np.random.Generator) -> np.ndarray:
        """(num, C, H, W) float32 in [0, 1], files drawn uniformly with replacement."""
        return self.load(rng.integers(0, len(self.files), size=check_num(num)))
