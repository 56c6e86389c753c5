"""dSprites drawn elsewhere: the dSprites factor grid rendered by a second, independent renderer.

Every shipped model was trained on the procedural renderers (``dsprites``, ``color_dsprites``),
and the attribute reader that judges edits was trained on the same images. Production images
never come from that renderer. This module draws the *same factors* with *other drawing
conventions*, written without the training renderer's code, so that a model (and the reader)
can be measured on images it has never seen the like of: a held-out test set, not training data.

What stays the same (the meaning of the factors):

- the grid: shape 3 (square, ellipse, heart), scale 6 in ``linspace(0.5, 1, 6)``, orientation
  40 in ``linspace(0, 2 pi, 40)``, pos_x and pos_y 32 each in ``linspace(0, 1, 32)``; colour
  adds object_hue and background_hue, 8 each in ``arange(8) / 8``;
- pos_x moves the sprite right, pos_y moves it down, orientation turns it counter-clockwise
  on screen about its centre, and the whole sprite stays inside the canvas at every value;
- at orientation 0 the ellipse's long axis is horizontal and the heart's tip points down;
- colour: the object at HSV saturation 1, value 1, the background at saturation 0.6, value 0.35.

What differs from the training renderer, and why:

- **grey levels**: each pixel holds the sprite's coverage of that pixel, estimated by
  supersampling (``supersample`` x ``supersample`` points per pixel, 4 x 4 by default, so
  17 grey levels), instead of a binary mask; edges are anti-aliased as a camera or a
  resampled photo would make them.
- **size**: at scale 1 the square's side is 19.8 px (training: 22), the ellipse's axes
  27.9 x 13.95 px (2 : 1; training's long axis 31), the heart 25.6 px wide: 10 % smaller
  than the training renderer. That is the largest difference that keeps the scale factor's
  meaning: at scale 1 a 10 % smaller sprite is one grid step (0.1) smaller, the edit
  tolerance of scale; a larger one would relabel sizes rather than draw the same factor
  differently.
- **placement**: the centre of the sprite (the centre of its upright bounding box) sits at
  ``16 + 32 * pos`` px on the continuous canvas [0, 64], i.e. from 16 to 48 px (training:
  one whole pixel per grid step, from pixel 16 to pixel 47); a grid step is 1.032 px, so
  most positions are off the pixel grid and rely on the anti-aliasing. The mapping keeps
  the sprite at least 1.4 px from every edge. A centre differs from the training renderer's
  by at most half a pixel, so both put a grid value at the same pixel once rounded.
- **heart**: the classic parametric heart ``x = 16 sin^3 t, y = 13 cos t - 5 cos 2t -
  2 cos 3t - cos 4t`` (a deeper cleft and a thinner tip than the training heart), sampled as
  a 720-gon and filled by coverage like the other shapes.
- **colour**: the grey coverage is an alpha: ``background + coverage * (object - background)``
  per channel, so edge pixels hold mixed hues the training images never have.

Tensor shapes: factors (N, 5) or (N, 7) int64 grid indices; observations (N, 1, 64, 64)
(``ElsewhereDSprites``) or (N, 3, 64, 64) (``ElsewhereColorDSprites``) float32 in [0, 1].
Rendering is deterministic (the same factors give the same image; the generator is not used)
and vectorised: each image's sprite is supersampled in a 32 x 32 px window around its centre,
in chunks of ``CHUNK`` images.
"""

from __future__ import annotations

import colorsys

import numpy as np

from .base import GroundTruthData
from .checks import check_factors, uniform_factors

SIZE = 64
SHAPE_NAMES = ("square", "ellipse", "heart")
SCALE_GRID = np.linspace(0.5, 1.0, 6)
ORIENTATION_GRID = np.linspace(0.0, 2.0 * np.pi, 40)
POSITION_GRID = np.linspace(0.0, 1.0, 32)

#: Centre of the sprite on the continuous canvas [0, SIZE]: MARGIN + TRAVEL * pos (pixel i spans [i, i + 1)).
MARGIN, TRAVEL = 16.0, 32.0
#: Square side and ellipse axes at scale 1 (pixels).
SQUARE_SIDE = 19.8
ELLIPSE_AXES = (27.9, 13.95)
#: Heart width at scale 1 (pixels); the parametric heart is 32 units wide.
HEART_WIDTH = 25.6
#: Side of the window (pixels) around the sprite centre in which it is supersampled; every
#: sprite reaches less than 15 px from its centre.
WINDOW = 32
CHUNK = 256
#: Resolution of the heart's inside table: cells per parametric unit.
HEART_TABLE_CELLS = 24

NUM_HUES = 8
HUES = np.arange(NUM_HUES, dtype=np.float64) / NUM_HUES
OBJECT_HSV_SV = (1.0, 1.0)
BACKGROUND_HSV_SV = (0.6, 0.35)


def heart_outline(points: int = 720) -> np.ndarray:
    """(points, 2) vertices (x right, y up, parametric units) of the classic heart, centred on its
    bounding box: 32 units wide, about 28.9 tall, tip down."""
    t = np.linspace(0.0, 2.0 * np.pi, points, endpoint=False)
    x = 16.0 * np.sin(t) ** 3
    y = 13.0 * np.cos(t) - 5.0 * np.cos(2 * t) - 2.0 * np.cos(3 * t) - np.cos(4 * t)
    tt = np.linspace(0.0, 2.0 * np.pi, 20001)  # the bounding box from a finer sampling
    yy = 13.0 * np.cos(tt) - 5.0 * np.cos(2 * tt) - 2.0 * np.cos(3 * tt) - np.cos(4 * tt)
    return np.stack([x, y - (yy.max() + yy.min()) / 2.0], axis=1)


def fill_polygon(vertices: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """(len(ys), len(xs)) bool: which grid points lie inside the closed polygon (even-odd rule).

    One scan line per row: the x of every edge crossing the line, sorted; a point is inside
    where an odd number of crossings lie to its left.
    """
    x0, y0 = vertices[:, 0], vertices[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    out = np.zeros((len(ys), len(xs)), dtype=bool)
    for r, y in enumerate(ys):
        crosses = (y0 <= y) != (y1 <= y)
        if not crosses.any():
            continue
        a, b, c, d = x0[crosses], y0[crosses], x1[crosses], y1[crosses]
        at = np.sort(a + (y - b) * (c - a) / (d - b))
        out[r] = np.searchsorted(at, xs, side="right") % 2 == 1
    return out


class _HeartTable:
    """Inside test of the parametric heart by lookup in a fine raster (filled once, 24 cells a unit)."""

    def __init__(self) -> None:
        outline = heart_outline()
        self.lo = outline.min(axis=0) - 1.0
        hi = outline.max(axis=0) + 1.0
        self.step = 1.0 / HEART_TABLE_CELLS
        xs = np.arange(self.lo[0], hi[0], self.step) + self.step / 2
        ys = np.arange(self.lo[1], hi[1], self.step) + self.step / 2
        self.table = fill_polygon(outline, xs, ys)  # (rows = y up, cols = x)

    def inside(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Points in parametric units (u right, v up) -> bool, False outside the table."""
        col = np.floor((u - self.lo[0]) / self.step).astype(np.int64)
        row = np.floor((v - self.lo[1]) / self.step).astype(np.int64)
        rows, cols = self.table.shape
        ok = (row >= 0) & (row < rows) & (col >= 0) & (col < cols)
        out = np.zeros(u.shape, dtype=bool)
        out[ok] = self.table[row[ok], col[ok]]
        return out


_HEART: _HeartTable | None = None


def _heart() -> _HeartTable:
    global _HEART
    if _HEART is None:
        _HEART = _HeartTable()
    return _HEART


def _inside(shape: int, u: np.ndarray, v: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Is the sprite-frame point (u right, v up; pixels) inside shape ``shape`` at ``scale``?

    u, v: (n, S, S); scale: (n, 1, 1).
    """
    if shape == 0:
        half = SQUARE_SIDE / 2.0 * scale
        return np.maximum(np.abs(u), np.abs(v)) <= half
    if shape == 1:
        a, b = ELLIPSE_AXES[0] / 2.0 * scale, ELLIPSE_AXES[1] / 2.0 * scale
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0
    units = scale * (HEART_WIDTH / 32.0)  # pixels per parametric unit
    return _heart().inside(u / units, v / units)


def render_coverage(factors: np.ndarray, supersample: int = 4) -> np.ndarray:
    """(N, 5) dSprites factor indices -> (N, 64, 64) float32 coverage in [0, 1]."""
    factors = np.asarray(factors, np.int64)
    out = np.zeros((len(factors), SIZE, SIZE), np.float32)
    sub = (np.arange(WINDOW * supersample) + 0.5) / supersample  # sample offsets inside the window
    for start in range(0, len(factors), CHUNK):
        f = factors[start:start + CHUNK]
        n = len(f)
        scale = SCALE_GRID[f[:, 1]]
        theta = ORIENTATION_GRID[f[:, 2]]
        cx = MARGIN + TRAVEL * POSITION_GRID[f[:, 3]]
        cy = MARGIN + TRAVEL * POSITION_GRID[f[:, 4]]
        c0 = np.clip(np.floor(cx - WINDOW / 2), 0, SIZE - WINDOW).astype(np.int64)
        r0 = np.clip(np.floor(cy - WINDOW / 2), 0, SIZE - WINDOW).astype(np.int64)
        dx = (c0[:, None] + sub[None, :] - cx[:, None])[:, None, :]  # (n, 1, S) right
        dy = (cy[:, None] - (r0[:, None] + sub[None, :]))[:, :, None]  # (n, S, 1) up
        cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
        # The sprite is turned counter-clockwise by theta: undo the turn to reach its own frame.
        u = dx * cos + dy * sin
        v = dy * cos - dx * sin
        inside = np.zeros(u.shape, dtype=bool)
        for shape in np.unique(f[:, 0]):
            m = f[:, 0] == shape
            inside[m] = _inside(int(shape), u[m], v[m], scale[m][:, None, None])
        cover = inside.reshape(n, WINDOW, supersample, WINDOW, supersample).mean(axis=(2, 4), dtype=np.float32)
        rows = (r0[:, None] + np.arange(WINDOW))[:, :, None]
        cols = (c0[:, None] + np.arange(WINDOW))[:, None, :]
        out[start + np.arange(n)[:, None, None], rows, cols] = cover
    return out


class ElsewhereDSprites(GroundTruthData):
    """The dSprites factors drawn by an independent renderer: grey coverage, other sizes,
    placement and heart (see the module docstring). (N, 1, 64, 64) float32 in [0, 1]."""

    name = "dsprites_elsewhere"
    factor_names = ("shape", "scale", "orientation", "pos_x", "pos_y")
    factors_num_values = (3, 6, 40, 32, 32)
    factor_kinds = ("categorical", "continuous", "circular", "continuous", "continuous")
    observation_shape = (1, SIZE, SIZE)

    def __init__(self, supersample: int = 4) -> None:
        if int(supersample) != supersample or supersample < 1:
            raise ValueError(f"supersample must be a positive integer (points per pixel side), got {supersample!r}")
        self.supersample = int(supersample)

    def factor_grid(self, factor: int) -> np.ndarray:
        return [np.arange(3, dtype=np.float64), SCALE_GRID, ORIENTATION_GRID, POSITION_GRID,
                POSITION_GRID][factor].copy()

    def factor_labels(self, factor: int) -> list[str]:
        return list(SHAPE_NAMES) if factor == 0 else []

    def circular_symmetry(self, factor: int) -> tuple[int, tuple[int, ...]] | None:
        return (0, (4, 2, 1)) if factor == 2 else None

    def sample_factors(self, num: int, rng: np.random.Generator) -> np.ndarray:
        return uniform_factors(num, self.factors_num_values, rng)

    def sample_observations_from_factors(self, factors: np.ndarray,
                                         rng: np.random.Generator | None = None) -> np.ndarray:
        """(N, 5) factor indices -> (N, 1, 64, 64) float32 coverage in [0, 1]."""
        factors = check_factors(factors, self.factors_num_values, self.name)
        return render_coverage(factors, self.supersample)[:, None]


def hue_colours(saturation: float, value: float) -> np.ndarray:
    """(NUM_HUES, 3) float32 RGB of the hue grid at one saturation and value."""
    return np.array([colorsys.hsv_to_rgb(float(h), saturation, value) for h in HUES], dtype=np.float32)


class ElsewhereColorDSprites(GroundTruthData):
    """Colour dSprites' factors drawn by the independent renderer: the grey coverage of
    :class:`ElsewhereDSprites` as the alpha of a bright object over a muted background.
    (N, 3, 64, 64) float32 in [0, 1]."""

    name = "color_dsprites_elsewhere"
    factor_names = ElsewhereDSprites.factor_names + ("object_hue", "background_hue")
    factors_num_values = ElsewhereDSprites.factors_num_values + (NUM_HUES, NUM_HUES)
    factor_kinds = ElsewhereDSprites.factor_kinds + ("circular", "circular")
    observation_shape = (3, SIZE, SIZE)

    def __init__(self, supersample: int = 4) -> None:
        self._shapes = ElsewhereDSprites(supersample)
        self._object = hue_colours(*OBJECT_HSV_SV)
        self._background = hue_colours(*BACKGROUND_HSV_SV)

    def factor_grid(self, factor: int) -> np.ndarray:
        return self._shapes.factor_grid(factor) if factor < 5 else HUES.copy()

    def factor_labels(self, factor: int) -> list[str]:
        return self._shapes.factor_labels(factor) if factor < 5 else []

    def circular_symmetry(self, factor: int) -> tuple[int, tuple[int, ...]] | None:
        return self._shapes.circular_symmetry(factor)

    def sample_factors(self, num: int, rng: np.random.Generator) -> np.ndarray:
        return uniform_factors(num, self.factors_num_values, rng)

    def sample_observations_from_factors(self, factors: np.ndarray,
                                         rng: np.random.Generator | None = None) -> np.ndarray:
        """(N, 7) factor indices -> (N, 3, 64, 64) float32 in [0, 1]."""
        factors = check_factors(factors, self.factors_num_values, self.name)
        alpha = render_coverage(factors[:, :5], self._shapes.supersample)[:, None]  # (N, 1, 64, 64)
        obj = self._object[factors[:, 5]][:, :, None, None]
        bg = self._background[factors[:, 6]][:, :, None, None]
        return (bg + alpha * (obj - bg)).astype(np.float32)
