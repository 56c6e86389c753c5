"""Infinite dSprites on a fixed factor grid, rendered by the ``idsprites`` package.

Infinite dSprites (Dziadzio et al. 2023, PyPI package ``idsprites``) draws
procedurally generated 2D shapes (random polygons or closed splines) with a
colour, scale, orientation and position. This dataset fixes a finite set of K
shapes and a grid for every other factor, so that it follows the
``GroundTruthData`` contract:

============  ======================  ==========================================  ===========
factor        values                  grid                                        kind
============  ======================  ==========================================  ===========
shape         K (``num_shapes``, 3)   shape_0 .. shape_{K-1} (``factor_labels``)  categorical
color         4                       red, green, blue, yellow (``COLORS``)       categorical
scale         6                       ``np.linspace(0.5, 1, 6)``                  continuous
orientation   40                      ``np.arange(40) * 2 pi / 40`` (radians)     circular
pos_x         16                      ``np.linspace(0, 1, 16)``                   continuous
pos_y         16                      ``np.linspace(0, 1, 16)``                   continuous
============  ======================  ==========================================  ===========

Conventions (those of the package)
- the background is the package's default dark grey (RGB 169, 169, 169); the shape is
  filled with its colour, and one half of it is painted black (the package's
  orientation marker: at orientation 0 the right half), so a turn by any angle short
  of a full turn changes the image: orientation has period 2 pi and no symmetry,
  which is why its grid stops one step short of 2 pi.
- orientation turns the shape, marker included, clockwise on screen; ``pos_x`` moves
  it right and ``pos_y`` down, the centre going from a quarter to three quarters of
  the canvas (pixel 16 to 48 at 64 x 64, about 2 px per step).
- at scale 1 a shape spans about 0.45 of the canvas (29 px at 64 x 64); at scale 1 and
  a corner position a few per cent of a shape's pixels can fall off the canvas
  (at most 7 % over 20 shapes and 40 orientations).
- the shapes are generated once, at construction, by the package's own generator
  with NumPy's global random state seeded with ``shape_seed`` (the state is restored
  afterwards), always on a 256 x 256 canvas so that ``image_size`` does not change
  them. The same seed gives the same shapes with the same versions of ``idsprites``,
  NumPy, SciPy and scikit-learn (the generator uses their spline fit and PCA).

Observations are (N, 3, S, S) float32 in [0, 1] with S = ``image_size`` (64), every
value a multiple of 1/255; no anti-aliasing. Rendering is deterministic: the
generator passed to ``sample_observations_from_factors`` is not used.

Speed: the package draws one image per call with OpenCV and a numba kernel:
2,000 to 7,700 images/s at 64 x 64 (``sample_observations_from_factors`` on batches
of 256; measured on a 2-core x86-64 machine that other jobs kept busy, load average
3.5 to 4, so a quiet machine should do at least the upper figure), some 100 times
slower than ``dsprites`` but enough to write image folders or train on small budgets.
The first render of a process compiles the numba kernel (1.5 to 5 s), and importing
the package (done at construction: it imports torch, OpenCV, numba and scikit-learn)
takes 3 to 7 s on that machine.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import GroundTruthData
from .checks import check_factors, uniform_factors

#: Shape colours: label -> RGB in [0, 1].
COLORS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
}
#: Background and orientation marker: the package's defaults (matplotlib colour names) and their 8-bit RGB.
BACKGROUND, BACKGROUND_RGB8 = "darkgray", (169, 169, 169)
MARKER, MARKER_RGB8 = "black", (0, 0, 0)
SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = np.arange(40, dtype=np.float64) * (2.0 * np.pi / 40)
POSITIONS = np.linspace(0.0, 1.0, 16)
#: Canvas the shapes are generated on, whatever ``image_size`` is.
_GENERATION_SIZE = 256


def _package() -> Any:
    """The ``idsprites`` package, imported on first use (it pulls torch, OpenCV, numba)."""
    try:
        import idsprites
    except ImportError as e:
        raise ImportError(
            "the idsprites dataset needs the idsprites package: pip install 'latentdial[examples]'"
        ) from e
    return idsprites


def generate_shapes(num_shapes: int, seed: int) -> list[np.ndarray]:
    """``num_shapes`` shapes from the package's generator, seeded with ``seed``.

    NumPy's global random state (which the generator draws from) is seeded for the
    call and restored afterwards, so callers' global randomness is untouched.

    Returns:
        ``num_shapes`` arrays (2, P) float64: outline points (x right, y down) in units
        of the shape's size, centred on the shape.
    """
    generator = _package().InfiniteDSprites(img_size=_GENERATION_SIZE)
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        return [generator.generate_shape() for _ in range(num_shapes)]
    finally:
        np.random.set_state(state)


class InfiniteDSpritesData(GroundTruthData):
    """K procedurally generated shapes on the grid of the module docstring, drawn by ``idsprites``.

    Args:
        num_shapes: K, the number of shapes (at least 2).
        shape_seed: seed of the shape generator; the same seed gives the same shapes.
        image_size: side S of the square (3, S, S) observations (at least 16).
    """

    name = "idsprites"
    factor_names = ("shape", "color", "scale", "orientation", "pos_x", "pos_y")
    factor_kinds = ("categorical", "categorical", "continuous", "circular", "continuous", "continuous")

    def __init__(self, num_shapes: int = 3, shape_seed: int = 0, image_size: int = 64) -> None:
        if isinstance(num_shapes, bool) or not isinstance(num_shapes, int) or num_shapes < 2:
            raise ValueError(f"idsprites: num_shapes must be an integer >= 2, got {num_shapes!r}")
        if isinstance(shape_seed, bool) or not isinstance(shape_seed, int) or shape_seed < 0:
            raise ValueError(f"idsprites: shape_seed must be a non-negative integer, got {shape_seed!r}")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 16:
            raise ValueError(f"idsprites: image_size must be an integer >= 16, got {image_size!r}")
        self.num_shapes, self.shape_seed, self.image_size = num_shapes, shape_seed, image_size
        self.factors_num_values = (num_shapes, len(COLORS), len(SCALES), len(ORIENTATIONS),
                                   len(POSITIONS), len(POSITIONS))
        self.observation_shape = (3, image_size, image_size)
        self._shapes = generate_shapes(num_shapes, shape_seed)
        package = _package()
        self._factors = package.Factors
        self._renderer = package.InfiniteDSprites(
            img_size=image_size, background_color=BACKGROUND, orientation_marker_color=MARKER
        )
        self._colors = np.array(list(COLORS.values()), dtype=np.float64)

    def factor_grid(self, factor: int) -> np.ndarray:
        grids = (np.arange(self.num_shapes, dtype=np.float64), np.arange(len(COLORS), dtype=np.float64),
                 SCALES, ORIENTATIONS, POSITIONS, POSITIONS)
        return grids[factor].copy()

    def factor_labels(self, factor: int) -> list[str]:
        if factor == 0:
            return [f"shape_{k}" for k in range(self.num_shapes)]
        return list(COLORS) if factor == 1 else []

    def sample_factors(self, num: int, rng: np.random.Generator) -> np.ndarray:
        """(num, 6) int64 factor indices, each factor uniform over its grid."""
        return uniform_factors(num, self.factors_num_values, rng)

    def sample_observations_from_factors(
        self, factors: np.ndarray, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """(N, 6) factor indices -> (N, 3, S, S) float32 in [0, 1], one package call per row."""
        factors = check_factors(factors, self.factors_num_values, self.name)
        out = np.empty((len(factors), *self.observation_shape), np.float32)
        for i, (shape, color, scale, orientation, x, y) in enumerate(factors):
            out[i] = self._renderer.draw(self._factors(
                shape=self._shapes[shape], color=self._colors[color], shape_id=int(shape),
                scale=float(SCALES[scale]), orientation=float(ORIENTATIONS[orientation]),
                position_x=float(POSITIONS[x]), position_y=float(POSITIONS[y]),
            ))
        return out
