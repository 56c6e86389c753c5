"""Noisy dSprites, as in disentanglement_lib (Locatello et al. 2019, "Challenging
Common Assumptions in the Unsupervised Learning of Disentangled Representations").

The five dSprites factors (see ``dsprites.py``) on a background of uniform noise:
each background pixel and channel is drawn independently from U[0, 1) with the
generator passed in, and the object is white (1.0 in every channel), i.e.
``min(mask + noise, 1)``. Observations are (N, 3, 64, 64) float32 in [0, 1].
The noise is not a factor: two calls with the same factors but different
generator states give different backgrounds.
"""

from __future__ import annotations

import numpy as np

from .base import GroundTruthData
from .checks import check_factors, uniform_factors
from .dsprites import IMAGE_SIZE, ProceduralDSprites, render_masks


class NoisyDSprites(GroundTruthData):
    """dSprites on a uniform-noise background, object white (3 channels)."""

    name = "noisy_dsprites"
    factor_names = ProceduralDSprites.factor_names
    factors_num_values = ProceduralDSprites.factors_num_values
    factor_kinds = ProceduralDSprites.factor_kinds
    observation_shape = (3, IMAGE_SIZE, IMAGE_SIZE)

    def __init__(self) -> None:
        self._shapes = ProceduralDSprites()

    def factor_grid(self, factor: int) -> np.ndarray:
        return self._shapes.factor_grid(factor)

    def factor_labels(self, factor: int) -> list[str]:
        return self._shapes.factor_labels(factor)

    def circular_symmetry(self, factor: int) -> tuple[int, tuple[int, ...]] | None:
        return self._shapes.circular_symmetry(factor)  # hues are colours: no symmetry

    def sample_factors(self, num: int, rng: np.random.Generator) -> np.ndarray:
        """(num, F) int64 factor indices, each factor uniform over its grid."""
        return uniform_factors(num, self.factors_num_values, rng)

    def sample_observations_from_factors(
        self, factors: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """(N, 5) factor indices -> (N, 3, 64, 64) float32; noise drawn from ``rng``."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError(
                "noisy_dsprites draws its background noise from an explicit generator: "
                "pass rng=np.random.default_rng(seed)"
            )
        factors = check_factors(factors, self.factors_num_values, self.name)
        mask = render_masks(factors)  # (N, 64, 64) uint8
        out = rng.random((len(factors), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
        np.maximum(out, mask[:, None], out=out)  # == min(mask + noise, 1) for a {0, 1} mask
        return out
