"""The factor card computed from labelled data: right dims, invertible calibration."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from latentdial.factor_card import FactorCard
from latentdial.training.data.base import GroundTruthData
from latentdial.training.factor_card_fit import assign_dims, circular_period, compute_factor_card
from latentdial.training.metrics import METRICS

ANGLES = np.linspace(0.0, 2 * np.pi, 8, endpoint=False)


class KnownMapping(GroundTruthData):
    """Observation (F, 1, 1) = the physical factor values; the encoder below is known."""

    factor_names = ("shape", "scale", "angle", "ghost")
    factors_num_values = (3, 6, 8, 4)
    factor_kinds = ("categorical", "continuous", "circular", "continuous")
    observation_shape = (4, 1, 1)

    def factor_grid(self, factor: int) -> np.ndarray:
        return [np.arange(3.0), np.linspace(0.5, 1.0, 6), ANGLES, np.linspace(0, 1, 4)][factor].copy()

    def factor_labels(self, factor: int) -> list[str]:
        return ["square", "ellipse", "heart"] if factor == 0 else []

    def sample_observations_from_factors(self, factors, rng):
        return self.factor_values(factors).astype(np.float32)[:, :, None, None]


def encoder(x: np.ndarray) -> np.ndarray:
    """latent 0 = sin(angle), 1 = shape code, 2 = constant, 3 = exp(scale), 4 = cos(angle); ghost unseen."""
    shape, scale, angle, _ghost = (x[:, i, 0, 0].astype(np.float64) for i in range(4))
    z = np.stack([np.sin(angle), 1.5 * shape - 1, np.zeros_like(scale), np.exp(scale), np.cos(angle)], axis=1)
    return z.astype(np.float32)


DATA = KnownMapping()


def card_of(**kw) -> tuple[FactorCard, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        card = compute_factor_card(DATA, encoder, np.random.default_rng(0), num_points=2000,
                                   points_per_value=16, **kw)
    return card, list(caught)


def test_card_finds_the_dims_that_carry_each_factor_and_omits_the_unseen_one():
    card, caught = card_of()
    assert card.names == ["shape", "scale", "angle"]
    assert card["shape"].dims == [1]
    assert card["scale"].dims == [3]
    assert sorted(card["angle"].dims) == [0, 4]  # a circular factor needs two dims
    assert any("'ghost'" in str(w.message) for w in caught)
    claimed = [d for f in card.factors for d in f.dims]
    assert len(claimed) == len(set(claimed)), "a dimension serves at most one factor"
    assert card.latent_dim == 5 and card.source == "labelled"


def test_card_records_kind_labels_period_and_importance_most_important_first():
    card, _ = card_of()
    assert card["shape"].kind == "categorical" and card["shape"].labels == ["square", "ellipse", "heart"]
    assert card["scale"].kind == "continuous" and card["scale"].labels == []
    assert card["angle"].kind == "circular"
    assert card["angle"].period == pytest.approx(2 * np.pi)
    for f in card.factors:
        assert f.importance == sorted(f.importance, reverse=True)
        assert len(f.importance) == len(f.dims)


def test_calibration_table_is_inverted_by_latent_for_and_value_from_latents():
    card, _ = card_of()
    scale = card["scale"]
    for v in (0.5, 0.7, 1.0):
        np.testing.assert_allclose(scale.latent_for(v), [np.exp(v)], rtol=1e-5)
    angle = card["angle"]
    for v in ANGLES:
        want = {0: np.sin(v), 4: np.cos(v)}
        np.testing.assert_allclose(angle.latent_for(v), [want[d] for d in angle.dims], atol=1e-5)
    np.testing.assert_allclose(angle.latent_for(ANGLES[1] + 2 * np.pi), angle.latent_for(ANGLES[1]), atol=1e-6)
    shape = card["shape"]
    np.testing.assert_allclose(shape.latent_for(shape.value_of_label("heart")), [2.0])
    # encode fresh points and read their factor values back from the latents
    factors, x = DATA.sample(200, np.random.default_rng(5))
    z = encoder(x)
    values = DATA.factor_values(factors)
    for k, name in enumerate(["shape", "scale", "angle"]):
        np.testing.assert_allclose(card[name].value_from_latents(z), values[:, k], atol=1e-6)


def test_card_round_trips_through_json(tmp_path):
    card, _ = card_of()
    card.save(tmp_path / "factor_card.json")
    assert FactorCard.load(tmp_path / "factor_card.json") == card


def test_dci_importance_picks_the_same_dims():
    _, importance = METRICS["dci"].run(DATA, encoder, np.random.default_rng(1), num_train=1000, num_test=200)
    card, _ = card_of(importance=importance)
    assert card["scale"].dims == [3] and card["shape"].dims == [1]
    assert sorted(card["angle"].dims) == [0, 4]


def test_an_entangled_dim_goes_to_one_factor_only():
    def entangled(x):
        shape, scale = x[:, 0, 0, 0], x[:, 1, 0, 0]
        return np.stack([10 * shape + scale, np.zeros_like(shape)], axis=1)

    with pytest.warns(UserWarning, match="carried by no latent dimension"):
        card = compute_factor_card(DATA, entangled, np.random.default_rng(0), num_points=2000,
                                   points_per_value=4)
    assert [f.dims for f in card.factors] == [[0]]


def test_importance_of_the_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match="expected \\(latent dims, factors\\)"):
        compute_factor_card(DATA, encoder, np.random.default_rng(0), importance=np.ones((4, 4)),
                            num_points=100)


def test_assignment_respects_threshold_and_cap():
    score = np.array([[0.9, 0.0], [0.5, 0.1], [0.3, 0.8], [0.46, 0.1]])
    nmi = np.full_like(score, 0.5)
    assert assign_dims(score, nmi, relative_threshold=0.5, max_dims_per_factor=2) == [[0, 1], [2]]
    assert assign_dims(score, nmi, relative_threshold=0.5, max_dims_per_factor=1) == [[0], [2]]
    assert assign_dims(score, np.zeros_like(score)) == [[], []]


def test_circular_period_from_the_grid():
    assert circular_period(np.linspace(0, 2 * np.pi, 40)) == pytest.approx(2 * np.pi)  # closed grid
    assert circular_period(ANGLES) == pytest.approx(2 * np.pi)
    assert circular_period(np.arange(0.0, 90.0, 10.0)) == pytest.approx(90.0)
