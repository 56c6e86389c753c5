"""Example-image grids of a dataset, for docs and for checking data by eye.

``factor_sweeps`` builds the classic traversal: row f sweeps factor f across
its grid while every other factor stays at a fixed base value.
``image_grid`` tiles (N, C, H, W) images into one uint8 picture and
``save_png`` writes it with Pillow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from latentdial.images import to_uint8

from .base import GroundTruthData


def factor_sweeps(
    dataset: GroundTruthData,
    steps: int,
    rng: np.random.Generator,
    base: np.ndarray | None = None,
) -> np.ndarray:
    """Images of a one-factor-at-a-time sweep.

    Args:
        dataset: a labelled dataset with F factors.
        steps: images per sweep (grid indices evenly spaced from first to last value).
        rng: draws the base factors when ``base`` is None (and any observation noise).
        base: (F,) factor indices that stay fixed while one factor sweeps.
    Returns:
        (F * steps, C, H, W) float32; rows of ``steps`` images, one row per factor.
    """
    if dataset.num_factors == 0:
        raise ValueError("factor sweeps need a labelled dataset; use sample_observations instead")
    base = dataset.sample_factors(1, rng)[0] if base is None else np.asarray(base, np.int64)
    rows = []
    for f, n in enumerate(dataset.factors_num_values):
        factors = np.tile(base, (steps, 1))
        factors[:, f] = np.round(np.linspace(0, n - 1, steps)).astype(np.int64)
        rows.append(factors)
    return dataset.sample_observations_from_factors(np.concatenate(rows), rng)


def image_grid(images: np.ndarray, cols: int, pad: int = 2, pad_value: float = 0.5) -> np.ndarray:
    """Tile (N, C, H, W) float images in [0, 1] into a (rows*(H+pad)+pad, ...) uint8 picture.

    Returns:
        (H', W') uint8 for one channel, (H', W', 3) uint8 for three.
    """
    n, c, h, w = images.shape
    rows = -(-n // cols)
    canvas = np.full((c, rows * (h + pad) + pad, cols * (w + pad) + pad), pad_value, np.float32)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        canvas[:, y : y + h, x : x + w] = img
    out = to_uint8(canvas)
    return out[0] if c == 1 else out.transpose(1, 2, 0)


def save_png(picture: np.ndarray, path: str | Path, colors: int | None = None) -> Path:
    """Write a uint8 (H, W) or (H, W, 3) picture as an optimised PNG; return the path.

    Args:
        colors: reduce an RGB picture to this many palette colours first (keeps
            noisy pictures small); None keeps every colour.
    """
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(picture)
    if colors is not None and image.mode == "RGB":
        image = image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    image.save(path, optimize=True)
    return path
