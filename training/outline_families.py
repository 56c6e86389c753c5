"""dSprites drawn from their factors by randomised renderers: the encoder's view of a labelled image.

The training renderer (``data/dsprites.py``) draws each shape one way: one square, one ellipse,
one heart curve, binary pixels, whole-pixel placement. Images drawn by any other renderer differ
in exactly those conventions, and small warps of the training image cannot reach another
outline family (docs/models.md, "Images drawn elsewhere"). This module draws the *same factors*
with the conventions drawn at random for each image, so that the real renderer is one more
variation (domain randomisation: Tobin et al. 2017, "Domain Randomization for Transferring Deep
Neural Networks from Simulation to the Real World"); the encoder sees the redrawn image while the
decoder reconstructs the training render (the denoising split of Vincent et al. 2008).

What is drawn at random, each image on its own:

- **outline**: one of ``VARIANTS`` outlines of its shape, the first of each the training
  renderer's own. Squares get rounded corners (radius up to ``0.35`` of the half side);
  ellipses become superellipses (exponent 1.7-2.5, axis ratio 1.85-2.15); hearts are two
  lobes (ellipses of vertical stretch 0.85-1.15, centres 0.35-0.85 lobe radii from the axis:
  the nearer, the deeper the cleft) joined to a tip 1.5-2.6 lobe radii below their centres by
  their outer tangents, bowed out by up to 20 % of the half-width between.
  The family is drawn once from ``FAMILY_SEED`` and is the same in every run.
- **size**: ``SIZE_RANGE`` of the training renderer's size at the same scale (a third of a
  scale step either way at scale 1; centred on 1, so the encoder does not learn to read every
  sprite as larger than it looks; the largest still fits the canvas at every position).
- **placement**: the centre moved by up to ``OFFSET_PX`` on each axis, off the pixel grid
  (a position step is one pixel).
- **orientation**: turned by up to ``ANGLE_JITTER_DEG`` (an orientation step is 9 degrees).
- **grey levels**: the pixel's coverage (``SUPERSAMPLE`` x ``SUPERSAMPLE`` bilinear samples of a
  fine mask) or, for a share ``BINARY_SHARE``, that coverage thresholded at one half.

Every outline is centred on its upright bounding box (as the training renderer's) and scaled so
that its farthest point from that centre is ``REACH_PX`` at scale 1, the training heart's reach
(squares keep the training side, ellipses the training long axis).

The outlines are rasterised once into a bank of fine masks (``BANK_SIZE`` px over
+-``BANK_HALF_PX`` px of the sprite's frame at scale 1); an image is the bank's mask sampled
through one affine map per image (``torch.nn.functional.affine_grid`` / ``grid_sample``), so a
batch is drawn on the training device in a few vectorised calls.

Tensor shapes: factors (N, 5) int64 dSprites grid indices (shape, scale, orientation, pos_x,
pos_y); images (N, 1, 64, 64) float32 in [0, 1].
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latentdial.training.data.dsprites import (
    IMAGE_SIZE,
    ORIENTATIONS,
    SCALES,
    SHAPES,
    ProceduralDSprites,
    inside_sprite,
)

#: dSprites' factor layout, the only one these renderers draw
FACTOR_NAMES = ProceduralDSprites.factor_names
FACTOR_SIZES = ProceduralDSprites.factors_num_values

BANK_SIZE = 256
BANK_HALF_PX = 16.5
VARIANTS = 48
FAMILY_SEED = 0
REACH_PX = 15.5
SQUARE_SIDE_PX = 22.0
ELLIPSE_SEMI_MAJOR_PX = 15.5
SIZE_RANGE = (0.97, 1.03)
OFFSET_PX = 0.5
ANGLE_JITTER_DEG = 2.0
BINARY_SHARE = 0.5
SUPERSAMPLE = 2
#: the training renderer's sprite centre, continuous canvas coordinates of position index 0
#: (pixel 16's centre; pixel i spans [i, i + 1))
CENTRE_AT_ZERO = 16.5


def bank_frame() -> tuple[np.ndarray, np.ndarray]:
    """(u, v): (BANK_SIZE, BANK_SIZE) sprite-frame coordinates (px at scale 1, u right, v up) of
    the bank's pixel centres, row 0 at the top."""
    centres = ((2 * np.arange(BANK_SIZE) + 1) / BANK_SIZE - 1) * BANK_HALF_PX
    return np.broadcast_to(centres[None, :], (BANK_SIZE, BANK_SIZE)), np.broadcast_to(-centres[:, None], (BANK_SIZE, BANK_SIZE))


def rounded_square(u: np.ndarray, v: np.ndarray, corner: float) -> np.ndarray:
    """Inside the square of side ``SQUARE_SIDE_PX`` whose corners are arcs of ``corner`` x its half side."""
    half = SQUARE_SIDE_PX / 2
    radius = corner * half
    qx, qy = np.abs(u) - (half - radius), np.abs(v) - (half - radius)
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)
    return outside <= radius


def superellipse(u: np.ndarray, v: np.ndarray, ratio: float, power: float) -> np.ndarray:
    """Inside |u / a|^power + |v / b|^power <= 1, a = ``ELLIPSE_SEMI_MAJOR_PX``, b = a / ratio."""
    a = ELLIPSE_SEMI_MAJOR_PX
    return np.abs(u / a) ** power + np.abs(v / (a / ratio)) ** power <= 1.0


@dataclass(frozen=True)
class HeartShape:
    """Two lobes and the sides that join them to the tip, in lobe radii (x right, y up, lobe centres at y 0).

    lobe_offset: the lobes' centres' distance from the axis (the nearer, the deeper the cleft);
    stretch: the lobes' vertical semi-axis (their horizontal one is 1);
    tip: the tip's distance below the lobes' centres;
    bulge: how far the sides bow out between the tip and the lobes, a share of their half-width
        there (0: the straight tangents from the tip to the lobes).
    """

    lobe_offset: float
    stretch: float
    tip: float
    bulge: float

    def tangent(self) -> tuple[float, float]:
        """(slope dx/dy of the right side, y where it touches the right lobe): the outer tangent from
        the tip, found where the lobe is a unit circle (y divided by ``stretch``)."""
        tip = self.tip / self.stretch
        length = math.hypot(self.lobe_offset, tip)
        towards = math.atan2(self.lobe_offset, tip) + math.asin(1.0 / length)  # from the downward axis
        along = math.sqrt(length**2 - 1.0)
        touch_y = -tip + along * math.cos(towards)
        return math.tan(towards) / self.stretch, touch_y * self.stretch

    def inside(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        lobes = (np.abs(x) - self.lobe_offset) ** 2 + (y / self.stretch) ** 2 <= 1.0
        slope, touch = self.tangent()
        rise = np.clip((y + self.tip) / (touch + self.tip), 0.0, 1.0)  # 0 at the tip, 1 where the side meets the lobe
        sides = (y >= -self.tip) & (y <= touch) & (
            np.abs(x) <= (y + self.tip) * slope * (1.0 + 4.0 * self.bulge * rise * (1.0 - rise)))
        middle = (y > touch) & (y <= 0) & (np.abs(x) <= self.lobe_offset)  # between the lobes, under the cleft
        return lobes | sides | middle

    def placed(self) -> tuple[float, float, float]:
        """(centre x, centre y, units per px at scale 1): the upright bounding box's centre, and the
        scale that puts the farthest point from it ``REACH_PX`` away."""
        step = 0.004
        xs = np.arange(-3.0, 3.0, step) + step / 2
        ys = np.arange(-self.tip - 0.1, self.stretch + 0.1, step) + step / 2
        inside = self.inside(xs[None, :], ys[:, None])
        rows, cols = np.nonzero(inside)
        cx = (xs[cols].min() + xs[cols].max()) / 2
        cy = (ys[rows].min() + ys[rows].max()) / 2
        reach = np.hypot(xs[cols] - cx, ys[rows] - cy).max() + step
        return cx, cy, reach / REACH_PX


def draw_family(rng: np.random.Generator, variants: int) -> tuple[list[float], list[tuple[float, float]], list[HeartShape]]:
    """The random outlines of each shape but the first (the training renderer's): square corners,
    (ratio, power) of ellipses, hearts."""
    n = variants - 1
    corners = list(rng.uniform(0.0, 0.35, n))
    ellipses = list(zip(rng.uniform(1.85, 2.15, n), rng.uniform(1.7, 2.5, n), strict=True))
    hearts = [
        HeartShape(lobe_offset=float(d), stretch=float(e), tip=float(t), bulge=float(b))
        for d, e, t, b in zip(rng.uniform(0.35, 0.85, n), rng.uniform(0.85, 1.15, n), rng.uniform(1.5, 2.6, n),
                              rng.uniform(0.0, 0.2, n), strict=True)
    ]
    return corners, ellipses, hearts


def build_bank(variants: int = VARIANTS, seed: int = FAMILY_SEED) -> np.ndarray:
    """(3, variants, BANK_SIZE, BANK_SIZE) float32 masks in {0, 1}: [shape, 0] the training renderer's sprite
    at scale 1 and orientation 0, [shape, k > 0] the family's outlines, all in the bank's frame.

    Rasterised once per process for each (variants, seed) (about a second); each call returns a copy."""
    return _bank(variants, seed).copy()


@functools.lru_cache(maxsize=2)
def _bank(variants: int, seed: int) -> np.ndarray:
    if variants < 1:
        raise ValueError(f"variants must be >= 1, got {variants}")
    u, v = bank_frame()
    bank = np.zeros((len(SHAPES), variants, BANK_SIZE, BANK_SIZE), np.float32)
    one = np.ones((1, 1))
    for shape in range(len(SHAPES)):
        bank[shape, 0] = inside_sprite(shape, u, v, one)
    corners, ellipses, hearts = draw_family(np.random.default_rng(seed), variants)
    for k in range(1, variants):
        bank[0, k] = rounded_square(u, v, corners[k - 1])
        bank[1, k] = superellipse(u, v, *ellipses[k - 1])
        cx, cy, units = hearts[k - 1].placed()
        bank[2, k] = hearts[k - 1].inside(u * units + cx, v * units + cy)
    bank.setflags(write=False)
    return bank


def placement(factors: torch.Tensor, scales: torch.Tensor, orientations: torch.Tensor, size: torch.Tensor,
              offset: torch.Tensor, turn: torch.Tensor) -> torch.Tensor:
    """(N, 2, 3) maps from the canvas's normalised coordinates (``affine_grid``, align_corners=False)
    to the bank's: the sprite of ``factors`` (N, 5) (grid values ``scales`` (6,), ``orientations``
    (40,) radians) drawn ``size`` (N,) times the training size, its centre moved by ``offset`` (N, 2)
    px (x right, y down) and turned by ``turn`` (N,) more radians."""
    dtype = torch.float32
    scale = scales[factors[:, 1]] * size
    theta = orientations[factors[:, 2]] + turn
    cx = CENTRE_AT_ZERO + factors[:, 3].to(dtype) + offset[:, 0]
    cy = CENTRE_AT_ZERO + factors[:, 4].to(dtype) + offset[:, 1]
    c, s = torch.cos(theta), torch.sin(theta)
    half = IMAGE_SIZE / 2
    # canvas x = half (x_n + 1), y = half (y_n + 1); the sprite frame is the canvas about the centre,
    # y flipped to point up and turned back by theta; the bank's normalised frame is that over BANK_HALF_PX * scale
    row_x = torch.stack([half * c, -half * s, c * (half - cx) + s * (cy - half)], dim=1)
    row_y = torch.stack([half * s, half * c, s * (half - cx) - c * (cy - half)], dim=1)
    return torch.stack([row_x, row_y], dim=1) / (BANK_HALF_PX * scale)[:, None, None]


class OutlineFamilies(nn.Module):
    """(N, 5) dSprites factor indices -> (N, 1, 64, 64) images drawn with random conventions (module docstring)."""

    def __init__(self, variants: int = VARIANTS, seed: int = FAMILY_SEED) -> None:
        super().__init__()
        self.variants = variants
        self.register_buffer("bank", torch.from_numpy(build_bank(variants, seed)), persistent=False)
        # the grids on the bank's device, so that a step copies nothing from the host
        self.register_buffer("scales", torch.as_tensor(SCALES, dtype=torch.float32), persistent=False)
        self.register_buffer("orientations", torch.as_tensor(ORIENTATIONS, dtype=torch.float32), persistent=False)

    def forward(self, factors: torch.Tensor) -> torch.Tensor:
        n, device = factors.shape[0], factors.device

        def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
            return low + (high - low) * torch.rand(*shape, device=device)

        return self.draw(
            factors,
            variant=torch.randint(self.variants, (n,), device=device),
            size=uniform(*SIZE_RANGE, n),
            offset=uniform(-OFFSET_PX, OFFSET_PX, n, 2),
            turn=uniform(-1.0, 1.0, n) * math.radians(ANGLE_JITTER_DEG),
            binary=torch.rand(n, device=device) < BINARY_SHARE,
        )

    def draw(self, factors: torch.Tensor, variant: torch.Tensor, size: torch.Tensor, offset: torch.Tensor,
             turn: torch.Tensor, binary: torch.Tensor) -> torch.Tensor:
        """The images of ``factors`` (N, 5) with the given conventions: ``variant`` (N,) outline index,
        ``size`` (N,), ``offset`` (N, 2) px, ``turn`` (N,) radians, ``binary`` (N,) bool."""
        n = factors.shape[0]
        masks = self.bank[factors[:, 0], variant].unsqueeze(1)  # (N, 1, B, B)
        fine = IMAGE_SIZE * SUPERSAMPLE
        grid = F.affine_grid(placement(factors, self.scales, self.orientations, size, offset, turn), [n, 1, fine, fine], align_corners=False)
        sampled = F.grid_sample(masks, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        cover = F.avg_pool2d(sampled, SUPERSAMPLE)  # (N, 1, 64, 64)
        return torch.where(binary[:, None, None, None], (cover >= 0.5).to(cover.dtype), cover)


def check_dsprites_grid(dataset: object) -> None:
    """Raise ValueError unless ``dataset`` draws dSprites' factor grid as (1, 64, 64) images."""
    names = tuple(getattr(dataset, "factor_names", ()))
    sizes = tuple(getattr(dataset, "factors_num_values", ()))
    shape = tuple(getattr(dataset, "observation_shape", ()))
    if names != FACTOR_NAMES or sizes != FACTOR_SIZES or shape != (1, IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(
            f"augment.families redraws dSprites' factor grid {dict(zip(FACTOR_NAMES, FACTOR_SIZES, strict=True))} "
            f"as (1, 64, 64) images; dataset {getattr(dataset, 'name', type(dataset).__name__)!r} has "
            f"{dict(zip(names, sizes, strict=False))} as {shape}"
        )
