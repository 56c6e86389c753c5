"""Specification of weakly supervised pairs (Locatello et al. 2020)."""

from __future__ import annotations

import numpy as np
import pytest

from latentdial.training.data.color_dsprites import ColorDSprites
from latentdial.training.data.dsprites import ProceduralDSprites
from latentdial.training.data.pairs import sample_weak_pairs


@pytest.fixture(scope="module")
def data() -> ProceduralDSprites:
    return ProceduralDSprites()


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_pairs_share_exactly_f_minus_k_factors(data, k):
    x1, x2, f1, f2 = sample_weak_pairs(data, 300, np.random.default_rng(k), k=k)
    assert f1.shape == f2.shape == (300, 5)
    assert ((f1 == f2).sum(axis=1) == 5 - k).all()
    assert ((f2 >= 0) & (f2 < np.array(data.factors_num_values))).all()
    np.testing.assert_array_equal(x1, data.sample_observations_from_factors(f1))
    np.testing.assert_array_equal(x2, data.sample_observations_from_factors(f2))


def test_default_k_is_drawn_per_pair_from_one_to_f_minus_one():
    data = ColorDSprites()  # 7 factors
    _, _, f1, f2 = sample_weak_pairs(data, 2000, np.random.default_rng(0))
    differing = (f1 != f2).sum(axis=1)
    counts = np.bincount(differing, minlength=8)
    assert counts[0] == 0 and counts[7] == 0
    assert (counts[1:7] > 2000 / 6 * 0.7).all()  # roughly uniform over 1..6


def test_every_factor_can_change_to_each_other_value(data):
    _, _, f1, f2 = sample_weak_pairs(data, 3000, np.random.default_rng(5), k=1)
    changed = f1 != f2
    assert changed.any(axis=0).all()  # every factor gets chosen
    shape_moves = {(a, b) for a, b in zip(f1[changed[:, 0], 0], f2[changed[:, 0], 0], strict=True)}
    assert shape_moves == {(a, b) for a in range(3) for b in range(3) if a != b}


def test_pairs_are_deterministic_for_a_seed(data):
    a = sample_weak_pairs(data, 32, np.random.default_rng(9))
    b = sample_weak_pairs(data, 32, np.random.default_rng(9))
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)


def test_impossible_k_is_rejected(data):
    with pytest.raises(ValueError, match=r"k must be in 1 \.\. 5"):
        sample_weak_pairs(data, 4, np.random.default_rng(0), k=0)
    with pytest.raises(ValueError, match=r"k must be in 1 \.\. 5"):
        sample_weak_pairs(data, 4, np.random.default_rng(0), k=6)
