"""Weakly supervised pairs (Locatello et al. 2020, "Weakly-Supervised
Disentanglement Without Compromises", ICML).

Each pair (x1, x2) shares all factors but k. The first factors are sampled
uniformly from the grid; then k factor columns are chosen uniformly without
replacement and each is resampled uniformly among its *other* grid values, so
the pair differs in exactly k factors. With ``k=None`` every pair draws its own
k uniformly from 1 .. F - 1, the paper's default.
"""

from __future__ import annotations

import numpy as np

from .base import GroundTruthData
from .checks import check_num


def sample_weak_pairs(
    dataset: GroundTruthData, num: int, rng: np.random.Generator, k: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sample ``num`` pairs that differ in exactly ``k`` factors.

    Args:
        dataset: a labelled dataset with F >= 2 factors.
        num: number of pairs.
        rng: the only source of randomness.
        k: number of differing factors, 1 .. F; None draws it per pair from 1 .. F - 1.
    Returns:
        x1, x2: (num, C, H, W) float32 observations.
        f1, f2: (num, F) int64 factor indices; ``(f1 != f2).sum(1) == k``.
    """
    num = check_num(num)
    f1, f2 = sample_weak_factor_pairs(dataset, num, rng, k)
    x1 = dataset.sample_observations_from_factors(f1, rng)
    x2 = dataset.sample_observations_from_factors(f2, rng)
    return x1, x2, f1, f2


def sample_weak_factor_pairs(
    dataset: GroundTruthData, num: int, rng: np.random.Generator, k: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The factor half of ``sample_weak_pairs``: (f1, f2), each (num, F) int64."""
    num_factors = dataset.num_factors
    sizes = np.asarray(dataset.factors_num_values, dtype=np.int64)
    if num_factors == 0:
        raise ValueError(
            f"weak pairs need ground-truth factors; {getattr(dataset, 'name', type(dataset).__name__)} "
            "has none (an unlabelled folder cannot make pairs)"
        )
    # Only factors with more than one value can change.
    changeable = np.nonzero(sizes > 1)[0]
    if k is None:
        if len(changeable) < 2:
            raise ValueError(
                f"k=None draws k from 1 .. F-1 and needs at least 2 factors with more than one "
                f"value; this dataset has {len(changeable)}: pass an explicit k"
            )
        ks = 1 + (rng.random(num) * (len(changeable) - 1)).astype(np.int64)
    else:
        if not 1 <= k <= len(changeable):
            raise ValueError(
                f"k must be in 1 .. {len(changeable)} (the number of factors with more than one "
                f"value), got {k}"
            )
        ks = np.full(num, k, dtype=np.int64)
    f1 = dataset.sample_factors(num, rng)
    # A random rank per (pair, changeable factor): the k lowest ranks change.
    ranks = np.argsort(np.argsort(rng.random((num, len(changeable))), axis=1), axis=1)
    change = np.zeros((num, num_factors), dtype=bool)
    change[:, changeable] = ranks < ks[:, None]
    # Shift by 1 .. n-1 (mod n): uniform over the other values of the factor.
    others = np.maximum(sizes - 1, 1)[None, :]
    shift = 1 + np.minimum((rng.random((num, num_factors)) * others).astype(np.int64), others - 1)
    f2 = np.where(change, (f1 + shift) % sizes[None, :], f1).astype(np.int64)
    return f1, f2
