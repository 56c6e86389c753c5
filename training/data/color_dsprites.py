"""Colour dSprites: dSprites whose object hue and background hue are factors.

The five dSprites factors (see ``dsprites.py``) plus two circular factors:

- ``object_hue``: 8 hues ``np.arange(8) / 8`` in [0, 1); the object is drawn
  fully saturated and bright (HSV saturation 1, value 1).
- ``background_hue``: 8 hues ``np.arange(8) / 8``; the background is a muted,
  dark colour (HSV saturation 0.6, value 0.35).

Because the object is always bright (largest channel 1.0) and the background
always dark (largest channel 0.35), object and background stay distinguishable
at every hue combination, including equal hues. Observations are
(N, 3, 64, 64) float32 in [0, 1]; rendering is deterministic.
"""

from __future__ import annotations

import colorsys

import numpy as np

from .base import GroundTruthData
from .checks import check_factors, uniform_factors
from .dsprites import IMAGE_SIZE, ProceduralDSprites, render_masks

NUM_HUES = 8
HUES = np.arange(NUM_HUES, dtype=np.float64) / NUM_HUES
OBJECT_SATURATION, OBJECT_VALUE = 1.0, 1.0
BACKGROUND_SATURATION, BACKGROUND_VALUE = 0.6, 0.35


def hue_palette(saturation: float, value: float) -> np.ndarray:
    """(NUM_HUES, 3) float32 RGB colours of the hue grid at one saturation and value."""
    return np.array([colorsys.hsv_to_rgb(h, saturation, value) for h in HUES], dtype=np.float32)


class ColorDSprites(GroundTruthData):
    """dSprites with object and background hue as ground-truth factors (3 channels)."""

    name = "color_dsprites"
    factor_names = ProceduralDSprites.factor_names + ("object_hue", "background_hue")
    factors_num_values = ProceduralDSprites.factors_num_values + (NUM_HUES, NUM_HUES)
    factor_kinds = ProceduralDSprites.factor_kinds + ("circular", "circular")
    observation_shape = (3, IMAGE_SIZE, IMAGE_SIZE)

    def __init__(self) -> None:
        self._shapes = ProceduralDSprites()
        self._object_rgb = hue_palette(OBJECT_SATURATION, OBJECT_VALUE)
        self._background_rgb = hue_palette(BACKGROUND_SATURATION, BACKGROUND_VALUE)

    def factor_grid(self, factor: int) -> np.ndarray:
        if factor < 5:
            return self._shapes.factor_grid(factor)
        return HUES.copy()

    def factor_labels(self, factor: int) -> list[str]:
        return self._shapes.factor_labels(factor) if factor < 5 else []

    def circular_symmetry(self, factor: int) -> tuple[int, tuple[int, ...]] | None:
        return self._shapes.circular_symmetry(factor)  # hues are colours: no symmetry

    def sample_factors(self, num: int, rng: np.random.Generator) -> np.ndarray:
        """(num, F) int64 factor indices, each factor uniform over its grid."""
        return uniform_factors(num, self.factors_num_values, rng)

    def sample_observations_from_factors(
        self, factors: np.ndarray, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """(N, 7) factor indices -> (N, 3, 64, 64) float32 in [0, 1]."""
        factors = check_factors(factors, self.factors_num_values, self.name)
        mask = render_masks(factors[:, :5])  # (N, 64, 64) uint8
        obj = self._object_rgb[factors[:, 5]]  # (N, 3)
        bg = self._background_rgb[factors[:, 6]]  # (N, 3)
        out = np.empty((len(factors), 3, IMAGE_SIZE, IMAGE_SIZE), np.float32)
        np.multiply(mask[:, None], (obj - bg)[:, :, None, None], out=out)
        out += bg[:, :, None, None]
        return out
