"""Figures of a training run: loss curves, reconstructions and latent traversals.

Image grids are small Pillow PNGs; the loss plot uses matplotlib's Agg backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from latentdial.images import to_uint8
from latentdial.training.model import VAEModel

PAD = 2
LABEL_WIDTH = 84


def _to_uint8(images: np.ndarray) -> np.ndarray:
    """(..., C, H, W) float in [0, 1] -> (..., H, W, 3) uint8 (grey images repeated to RGB)."""
    images = np.clip(np.nan_to_num(images), 0.0, 1.0)
    images = np.moveaxis(images, -3, -1)
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return to_uint8(images)


def image_grid(images: np.ndarray, row_labels: Sequence[str] | None = None) -> Image.Image:
    """Tile (R, K, C, H, W) images in [0, 1] into one RGB image, R rows of K, with optional
    text labels to the left of each row."""
    if images.ndim != 5:
        raise ValueError(f"image_grid takes (rows, cols, C, H, W), got shape {images.shape}")
    rows, cols, _, h, w = images.shape
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"{len(row_labels)} row labels for {rows} rows")
    left = LABEL_WIDTH if row_labels else 0
    canvas = Image.new("RGB", (left + cols * (w + PAD) + PAD, rows * (h + PAD) + PAD), "white")
    tiles = _to_uint8(images)
    for r in range(rows):
        for c in range(cols):
            canvas.paste(Image.fromarray(tiles[r, c]), (left + PAD + c * (w + PAD), PAD + r * (h + PAD)))
    if row_labels:
        draw, font = ImageDraw.Draw(canvas), ImageFont.load_default()
        for r, label in enumerate(row_labels):
            draw.text((4, PAD + r * (h + PAD) + h // 2 - 6), label[:14], fill="black", font=font)
    return canvas


@torch.no_grad()
def reconstruction_figure(model: VAEModel, images: np.ndarray) -> Image.Image:
    """Row 1: inputs (N, C, H, W); row 2: reconstructions sigmoid(decoder(mean))."""
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    mean, _ = model.encoder(x)
    recon = torch.sigmoid(model.decoder(mean)).numpy()
    return image_grid(np.stack([images, recon]), ["input", "recon"])


@torch.no_grad()
def traversal_figure(
    model: VAEModel,
    image: np.ndarray,
    row_labels: Sequence[str] | None = None,
    *,
    num_steps: int = 9,
    limit: float = 2.0,
) -> Image.Image:
    """One row per latent dimension: decode the posterior mean of ``image`` (C, H, W) with
    that dimension swept over ``linspace(-limit, limit, num_steps)``, the others fixed."""
    model.eval()
    mean, _ = model.encoder(torch.from_numpy(np.ascontiguousarray(image[None], dtype=np.float32)))
    d = mean.shape[1]
    values = torch.linspace(-limit, limit, num_steps)
    z = mean.repeat(d * num_steps, 1).view(d, num_steps, d)  # (D, K, D)
    for dim in range(d):
        z[dim, :, dim] = values
    decoded = torch.sigmoid(model.decoder(z.view(d * num_steps, d)))  # (D*K, C, H, W)
    grid = decoded.view(d, num_steps, *decoded.shape[1:]).numpy()
    labels = list(row_labels) if row_labels is not None else [f"z{i}" for i in range(d)]
    return image_grid(grid, labels)


def traversal_labels(latent_dim: int, factor_card_path: Path | None) -> list[str]:
    """Row labels: the factor(s) a dimension carries per the factor card, else "z<i>"."""
    labels = [f"z{i}" for i in range(latent_dim)]
    if factor_card_path is None or not Path(factor_card_path).is_file():
        return labels
    from latentdial.factor_card import FactorCard

    card = FactorCard.load(factor_card_path)
    named: dict[int, list[str]] = {}
    for factor in card.factors:
        for dim in factor.dims:
            named.setdefault(dim, []).append(factor.name)
    return [f"z{i} {'/'.join(named[i])}" if i in named else labels[i] for i in range(latent_dim)]


def loss_plot(rows: Sequence[dict[str, float]], path: Path) -> None:
    """One small panel per logged term against the step; writes a PNG to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("no loss rows to plot; was log_every larger than the number of steps?")
    terms = [k for k in rows[0] if k != "step"]
    cols = min(3, len(terms))
    nrows = math.ceil(len(terms) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.2 * nrows), squeeze=False)
    steps = [r["step"] for r in rows]
    for ax, term in zip(axes.flat, terms, strict=False):
        ax.plot(steps, [r.get(term, float("nan")) for r in rows], linewidth=1.0)
        ax.set_title(term, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(terms):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
