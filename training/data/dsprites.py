"""Procedural dSprites: the official factor grid, rendered on demand.

dSprites (Matthey et al. 2017, https://github.com/deepmind/dsprites-dataset) is
the grid 3 shapes x 6 scales x 40 orientations x 32 x 32 positions of white 2D
sprites on a black 64x64 canvas. This module reproduces that grid exactly, so no
download is needed:

====================  ======  =======================================  ===========
factor                values  grid                                     kind
====================  ======  =======================================  ===========
shape                 3       0 square, 1 ellipse, 2 heart              categorical
scale                 6       ``np.linspace(0.5, 1, 6)``                continuous
orientation           40      ``np.linspace(0, 2 * pi, 40)`` (radians)  circular
pos_x                 32      ``np.linspace(0, 1, 32)``                 continuous
pos_y                 32      ``np.linspace(0, 1, 32)``                 continuous
====================  ======  =======================================  ===========

Conventions
- ``pos_x`` moves the sprite to the right (column index grows), ``pos_y`` moves
  it *down* (row index grows, image coordinates). Each position step is exactly
  one pixel: the sprite centre sits at pixel ``16 + index`` on both axes, so the
  whole sprite stays inside the canvas for every position.
- orientation turns the sprite counter-clockwise as seen on screen, about the
  sprite centre; orientation 0 and 2 pi render identically, as in the official data.
- at scale 1 the square has a 22 px side (about 1/3 of the canvas) and the
  ellipse a 31 px major axis (about 1/2); every sprite fits a 33 x 33 box at any
  orientation.

Speed: the 3 x 6 x 40 = 720 (shape, scale, orientation) sprites are rendered
once per process (binary, no anti-aliasing) into zero-padded 95 x 95 tiles; an
image at any position is then a 64 x 64 window of its tile, gathered for a whole
batch with one vectorised index operation (see ``benchmarks/bench_data.py``).
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .base import GroundTruthData
from .checks import check_factors, uniform_factors

IMAGE_SIZE = 64
#: Side of the square box that holds one sprite at any scale and orientation.
SPRITE_SIZE = 33
#: Number of position steps per axis; position index i puts the sprite box at offset i.
NUM_POSITIONS = IMAGE_SIZE - SPRITE_SIZE + 1
_HALF = SPRITE_SIZE // 2  # 16: the sprite centre inside its box
_PAD = NUM_POSITIONS - 1  # 31: zero border around a sprite so that a window covers any position

SHAPES = ("square", "ellipse", "heart")
#: Rotational symmetry order of each shape: it looks the same after a turn of 2 pi / order.
SHAPE_SYMMETRY = (4, 2, 1)
SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = np.linspace(0.0, 2.0 * np.pi, 40)
POSITIONS = np.linspace(0.0, 1.0, 32)

# Sizes in pixels at scale 1 (all radii from the rotation centre stay below 16 px).
_SQUARE_SIDE = 22.0
_ELLIPSE_AXES = (15.5, 7.75)  # semi-major, semi-minor
# Heart curve (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0: bounding box x in [-1.139, 1.139],
# y in [-1, 1.236]; centred on the box, its farthest point is 1.337 units away.
_HEART_CENTRE_Y = 0.118
_HEART_UNIT = 15.5 / 1.337
_EPS = 1e-9  # pixel centres exactly on an outline count as inside


def inside_sprite(shape: int, x: np.ndarray, y: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Point-in-shape test in sprite-local coordinates (pixels, x right, y up).

    Args:
        shape: 0 square, 1 ellipse, 2 heart.
        x, y: (K, S, S) coordinates already rotated into the shape's frame.
        scale: (K, 1, 1) scale factor of each sprite.
    Returns:
        (K, S, S) bool mask.
    """
    if shape == 0:
        half = _SQUARE_SIDE * scale / 2.0
        return (np.abs(x) <= half + _EPS) & (np.abs(y) <= half + _EPS)
    if shape == 1:
        a, b = _ELLIPSE_AXES[0] * scale, _ELLIPSE_AXES[1] * scale
        return (x / a) ** 2 + (y / b) ** 2 <= 1.0 + _EPS
    unit = _HEART_UNIT * scale
    hx, hy = x / unit, y / unit + _HEART_CENTRE_Y
    return (hx * hx + hy * hy - 1.0) ** 3 - hx * hx * hy**3 <= _EPS


def render_sprites() -> np.ndarray:
    """Render every (shape, scale, orientation) sprite in its own box.

    Returns:
        (3, 6, 40, 33, 33) uint8 in {0, 1}; the sprite centre is pixel (16, 16).
    """
    offsets = np.arange(SPRITE_SIZE, dtype=np.float64) - _HALF
    u = offsets[None, :]  # column offset: x to the right
    v = -offsets[:, None]  # row offset flipped: y up
    # Reduce the angle first so that 0 and 2 pi give bit-identical sprites.
    theta = np.mod(ORIENTATIONS, 2.0 * np.pi)
    cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    # Rotating the sprite by +theta == rotating the sampling grid by -theta.
    x = cos * u + sin * v  # (40, 33, 33)
    y = -sin * u + cos * v
    out = np.zeros((len(SHAPES), len(SCALES), len(ORIENTATIONS), SPRITE_SIZE, SPRITE_SIZE), np.uint8)
    for s in range(len(SHAPES)):
        for k, scale in enumerate(SCALES):
            out[s, k] = inside_sprite(s, x, y, np.full((1, 1, 1), scale))
    return out


@functools.lru_cache(maxsize=1)
def _tiles() -> np.ndarray:
    """(720, 95, 95) uint8 sprites in zero-padded tiles, rendered once per process."""
    sprites = render_sprites().reshape(-1, SPRITE_SIZE, SPRITE_SIZE)
    side = SPRITE_SIZE + 2 * _PAD
    tiles = np.zeros((sprites.shape[0], side, side), np.uint8)
    tiles[:, _PAD : _PAD + SPRITE_SIZE, _PAD : _PAD + SPRITE_SIZE] = sprites
    tiles.setflags(write=False)
    return tiles


@functools.lru_cache(maxsize=1)
def _windows() -> np.ndarray:
    """Read-only view (720, 32, 32, 64, 64): [sprite, PAD - pos_y, PAD - pos_x] is an image."""
    return sliding_window_view(_tiles(), (IMAGE_SIZE, IMAGE_SIZE), axis=(1, 2))


def render_masks(factors: np.ndarray) -> np.ndarray:
    """Binary dSprites images for valid (N, 5) factor indices.

    Args:
        factors: (N, 5) int64 (shape, scale, orientation, pos_x, pos_y) indices.
    Returns:
        (N, 64, 64) uint8 in {0, 1}.
    """
    sprite = (factors[:, 0] * len(SCALES) + factors[:, 1]) * len(ORIENTATIONS) + factors[:, 2]
    return _windows()[sprite, _PAD - factors[:, 4], _PAD - factors[:, 3]]


class ProceduralDSprites(GroundTruthData):
    """dSprites rendered on demand with the official factor grid (see module docstring).

    Observations are (N, 1, 64, 64) float32 in {0, 1}. Rendering is deterministic:
    the generator passed to ``sample_observations_from_factors`` is not used.
    """

    name = "dsprites"
    factor_names = ("shape", "scale", "orientation", "pos_x", "pos_y")
    factors_num_values = (len(SHAPES), len(SCALES), len(ORIENTATIONS), len(POSITIONS), len(POSITIONS))
    factor_kinds = ("categorical", "continuous", "circular", "continuous", "continuous")
    observation_shape = (1, IMAGE_SIZE, IMAGE_SIZE)

    def factor_grid(self, factor: int) -> np.ndarray:
        grids = (np.arange(len(SHAPES), dtype=np.float64), SCALES, ORIENTATIONS, POSITIONS, POSITIONS)
        return grids[factor].copy()

    def factor_labels(self, factor: int) -> list[str]:
        return list(SHAPES) if factor == 0 else []

    def circular_symmetry(self, factor: int) -> tuple[int, tuple[int, ...]] | None:
        return (0, SHAPE_SYMMETRY) if factor == 2 else None

    def sample_factors(self, num: int, rng: np.random.Generator) -> np.ndarray:
        """(num, F) int64 factor indices, each factor uniform over its grid."""
        return uniform_factors(num, self.factors_num_values, rng)

    def render(self, factors: np.ndarray) -> np.ndarray:
        """(N, 5) factor indices -> (N, 64, 64) uint8 binary masks (validated)."""
        factors = check_factors(factors, self.factors_num_values, self.name)
        return render_masks(factors)

    def sample_observations_from_factors(
        self, factors: np.ndarray, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """(N, 5) factor indices -> (N, 1, 64, 64) float32 in {0, 1}."""
        return self.render(factors)[:, None].astype(np.float32)
