"""The ground-truth dataset contract, after disentanglement_lib's ``GroundTruthData``.

A dataset exposes its factor grid as data and renders observations from factor
indices. Randomness always comes in as an explicit ``numpy.random.Generator``.

Conventions
- factors are integer *indices* into each factor's grid: (N, F) int64, column f
  in ``0 .. factors_num_values[f] - 1``; ``factor_values`` maps them to physical
  values (scale 0.5 .. 1, orientation 0 .. 2pi, ...).
- observations are (N, C, H, W) float32 in [0, 1] (NCHW, torch order).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np


class GroundTruthData(ABC):
    """A dataset whose observations are a deterministic function of known factors."""

    #: Names of the factors, e.g. ("shape", "scale", "orientation", "pos_x", "pos_y").
    factor_names: Sequence[str]
    #: Number of grid values of each factor, same order as ``factor_names``.
    factors_num_values: Sequence[int]
    #: (C, H, W) of one observation.
    observation_shape: tuple[int, int, int]
    #: Per factor: "continuous", "categorical" or "circular".
    factor_kinds: Sequence[str]

    @property
    def num_factors(self) -> int:
        return len(self.factor_names)

    @abstractmethod
    def factor_grid(self, factor: int) -> np.ndarray:
        """Physical values of factor ``factor``'s grid, shape (factors_num_values[factor],)."""

    def factor_labels(self, factor: int) -> list[str]:
        """Labels of a categorical factor's values (e.g. shape names); [] otherwise."""
        return []

    def circular_symmetry(self, factor: int) -> tuple[int, tuple[int, ...]] | None:
        """Rotational symmetry of a circular factor, when the images have one.

        Returns (f, orders): the symmetry depends on factor f, and an image whose factor f
        has index i looks the same after a turn of period / orders[i] (dSprites: a square
        repeats every 90 degrees, an ellipse every 180, a heart only at 360, so
        ``(shape, (4, 2, 1))``). None: no symmetry beyond the factor's own period.
        """
        return None

    def factor_values(self, factors: np.ndarray) -> np.ndarray:
        """(N, F) int indices -> (N, F) float64 physical values."""
        factors = np.asarray(factors)
        return np.stack([self.factor_grid(f)[factors[:, f]] for f in range(self.num_factors)], axis=1)

    def sample_factors(self, num: int, rng: np.random.Generator) -> np.ndarray:
        """(num, F) int64 factor indices, each factor uniform over its grid."""
        return np.stack(
            [rng.integers(0, n, size=num) for n in self.factors_num_values], axis=1
        ).astype(np.int64)

    @abstractmethod
    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(N, F) int factor indices -> (N, C, H, W) float32 observations in [0, 1]."""

    def sample(self, num: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(factors (num, F), observations (num, C, H, W))."""
        factors = self.sample_factors(num, rng)
        return factors, self.sample_observations_from_factors(factors, rng)

    def sample_observations(self, num: int, rng: np.random.Generator) -> np.ndarray:
        return self.sample(num, rng)[1]
