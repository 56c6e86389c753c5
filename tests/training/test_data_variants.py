"""Specification of the colour and noisy dSprites variants."""

from __future__ import annotations

import numpy as np
import pytest

from latentdial.training.data.color_dsprites import ColorDSprites
from latentdial.training.data.dsprites import ProceduralDSprites
from latentdial.training.data.noisy_dsprites import NoisyDSprites


def test_color_dsprites_adds_two_circular_hue_factors():
    data = ColorDSprites()
    assert tuple(data.factor_names) == (
        "shape", "scale", "orientation", "pos_x", "pos_y", "object_hue", "background_hue"
    )
    assert tuple(data.factors_num_values) == (3, 6, 40, 32, 32, 8, 8)
    assert tuple(data.factor_kinds)[5:] == ("circular", "circular")
    assert data.observation_shape == (3, 64, 64)
    for f in (5, 6):
        hues = data.factor_grid(f)
        assert hues.min() >= 0 and hues.max() < 1 and len(np.unique(hues)) == 8


def test_color_dsprites_object_and_background_differ_at_every_hue_pair():
    data = ColorDSprites()
    pairs = np.array([(o, b) for o in range(8) for b in range(8)])
    factors = np.hstack([np.tile([2, 4, 3, 12, 20], (64, 1)), pairs])
    x = data.sample_observations_from_factors(factors, np.random.default_rng(0))
    assert x.shape == (64, 3, 64, 64) and x.dtype == np.float32
    assert x.min() >= 0 and x.max() <= 1
    mask = ProceduralDSprites().render(factors[:1, :5])[0].astype(bool)
    for img in x:
        obj = img[:, mask]  # (3, pixels)
        bg = img[:, ~mask]
        # Each region is one flat colour, and the two are far apart.
        assert np.ptp(obj, axis=1).max() == 0 and np.ptp(bg, axis=1).max() == 0
        assert np.abs(obj[:, 0] - bg[:, 0]).max() > 0.3


def test_color_dsprites_hue_factors_change_only_their_region():
    data = ColorDSprites()
    base = [0, 5, 0, 16, 16]
    a, b, c = data.sample_observations_from_factors(
        np.array([base + [0, 0], base + [3, 0], base + [0, 5]]), np.random.default_rng(0)
    )
    mask = ProceduralDSprites().render(np.array([base]))[0].astype(bool)
    changed_obj = np.any(a != b, axis=0)
    changed_bg = np.any(a != c, axis=0)
    np.testing.assert_array_equal(changed_obj, mask)
    np.testing.assert_array_equal(changed_bg, ~mask)


def test_noisy_dsprites_has_a_white_object_on_uniform_noise():
    data = NoisyDSprites()
    assert tuple(data.factors_num_values) == (3, 6, 40, 32, 32)
    assert data.observation_shape == (3, 64, 64)
    factors = data.sample_factors(32, np.random.default_rng(3))
    x = data.sample_observations_from_factors(factors, np.random.default_rng(4))
    assert x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1
    mask = ProceduralDSprites().render(factors).astype(bool)[:, None].repeat(3, axis=1)
    assert (x[mask] == 1).all()
    noise = x[~mask]
    assert noise.max() < 1
    assert abs(noise.mean() - 0.5) < 0.01 and abs(noise.std() - np.sqrt(1 / 12)) < 0.01


def test_noisy_dsprites_noise_comes_only_from_the_generator():
    data = NoisyDSprites()
    factors = np.array([[1, 3, 7, 4, 25]] * 4)
    a = data.sample_observations_from_factors(factors, np.random.default_rng(11))
    b = data.sample_observations_from_factors(factors, np.random.default_rng(11))
    c = data.sample_observations_from_factors(factors, np.random.default_rng(12))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    with pytest.raises(TypeError, match="explicit generator"):
        data.sample_observations_from_factors(factors, None)
