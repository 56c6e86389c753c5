"""Analytic cases of the disentanglement metrics on a synthetic dataset whose
observations are the (normalised) factor values themselves, so that a
representation function is just a known map of the factors."""

from __future__ import annotations

import numpy as np
import pytest

from latentdial.training.data.base import GroundTruthData
from latentdial.training.metrics import METRICS, compute_all


class FactorsAsPixels(GroundTruthData):
    """Observation (F, 1, 1) = factor index / (n - 1): a 'perfect' image of the factors."""

    factor_names = ("a", "b", "c")
    factors_num_values = (4, 5, 6)
    factor_kinds = ("continuous", "continuous", "continuous")
    observation_shape = (3, 1, 1)

    def factor_grid(self, factor: int) -> np.ndarray:
        return np.linspace(0.0, 1.0, self.factors_num_values[factor])

    def sample_observations_from_factors(self, factors, rng):
        return self.factor_values(factors).astype(np.float32)[:, :, None, None]


class BinaryFactors(FactorsAsPixels):
    factors_num_values = (2, 2, 2)


DATA = FactorsAsPixels()
# An orthogonal matrix that mixes every factor into several dims (Helmert basis):
# the rotated code keeps all information but no dim is about one factor.
ROTATION = np.array([[1, 1, 1], [1, -1, 0], [1, 1, -2]], dtype=np.float64).T
ROTATION /= np.linalg.norm(ROTATION, axis=0)


def perfect(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1)


def constant(x: np.ndarray) -> np.ndarray:
    return np.zeros((len(x), 3), dtype=np.float32)


def duplicated(x: np.ndarray) -> np.ndarray:
    z = perfect(x)
    return np.concatenate([z, z], axis=1)  # every factor in two identical dims


def rotated(x: np.ndarray) -> np.ndarray:
    return perfect(x) @ ROTATION


SMALL = {"num_train": 1000, "num_test": 500}
BATCHED = {"num_train": 200, "num_test": 100, "batch_size": 16}


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_perfect_representation_scores_high_on_every_metric():
    assert METRICS["beta_vae"].compute(DATA, perfect, rng(), **BATCHED)["eval_accuracy"] == 1.0
    fv = METRICS["factor_vae"].compute(DATA, perfect, rng(), num_variance_estimate=1000, **BATCHED)
    assert fv["eval_accuracy"] == 1.0 and fv["num_active_dims"] == 3
    assert METRICS["mig"].compute(DATA, perfect, rng(), num_train=1000)["discrete_mig"] > 0.95
    dci = METRICS["dci"].compute(DATA, perfect, rng(), **SMALL)
    assert dci["disentanglement"] > 0.9 and dci["completeness"] > 0.9
    assert dci["informativeness_test"] == 1.0
    mod = METRICS["modularity"].compute(DATA, perfect, rng(), **SMALL)
    assert mod["modularity_score"] > 0.95 and mod["explicitness_score_test"] > 0.9
    assert METRICS["sap"].compute(DATA, perfect, rng(), **SMALL)["sap_score"] > 0.2
    unsup = METRICS["unsupervised"].compute(DATA, perfect, rng(), num_train=1000)
    assert unsup["num_active_dims"] == 3
    assert abs(unsup["gaussian_total_correlation"]) < 0.02  # independent factors


def test_factor_vae_prunes_dims_whose_std_is_below_the_reference_threshold_0_05():
    # Factor a with std 20 x 0.373 = 7.5, b with std 0.08, c with std 0.03 (std of a uniform grid on [0, 1]).
    stds = [np.std(DATA.factor_grid(f)) for f in range(3)]
    scale = np.array([20.0, 0.08 / stds[1], 0.03 / stds[2]])

    def scaled(x: np.ndarray) -> np.ndarray:
        return perfect(x) * scale

    fv = METRICS["factor_vae"].compute(DATA, scaled, rng(), num_variance_estimate=2000, **BATCHED)
    # b stays although its variance is 1e-4 of a's (a rule relative to the largest would drop it);
    # c goes, so votes for c land on a or b and are wrong: accuracy = P(k in {a, b}) = 2/3
    assert fv["num_active_dims"] == 2
    assert fv["eval_accuracy"] == pytest.approx(2 / 3, abs=0.1)
    assert fv["train_accuracy"] == pytest.approx(2 / 3, abs=0.07)


def test_constant_representation_scores_low_on_every_metric():
    beta = METRICS["beta_vae"].compute(DATA, constant, rng(), **BATCHED)["eval_accuracy"]
    assert beta < 0.5  # chance level for 3 factors is 1/3
    fv = METRICS["factor_vae"].compute(DATA, constant, rng(), num_variance_estimate=500, **BATCHED)
    assert fv == {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0.0}
    assert METRICS["mig"].compute(DATA, constant, rng(), num_train=1000)["discrete_mig"] == 0.0
    dci = METRICS["dci"].compute(DATA, constant, rng(), **SMALL)
    assert dci["disentanglement"] < 1e-6 and dci["completeness"] < 1e-6
    assert METRICS["modularity"].compute(DATA, constant, rng(), **SMALL)["modularity_score"] == 0.0
    assert METRICS["sap"].compute(DATA, constant, rng(), **SMALL)["sap_score"] == 0.0
    unsup = METRICS["unsupervised"].compute(DATA, constant, rng(), num_train=500)
    assert unsup["num_active_dims"] == 0 and unsup["gaussian_total_correlation"] == 0.0


def test_duplicated_latents_have_no_gap_but_stay_modular():
    assert METRICS["mig"].compute(DATA, duplicated, rng(), num_train=1000)["discrete_mig"] == pytest.approx(0.0, abs=1e-9)
    assert METRICS["sap"].compute(DATA, duplicated, rng(), **SMALL)["sap_score"] == pytest.approx(0.0, abs=1e-9)
    # each dimension still describes one factor only
    assert METRICS["modularity"].compute(DATA, duplicated, rng(), **SMALL)["modularity_score"] > 0.95


def test_rotation_of_a_perfect_representation_scores_lower():
    def both(fn, key, **kw):
        return fn(DATA, perfect, rng(), **kw)[key], fn(DATA, rotated, rng(), **kw)[key]

    pairs = {
        "mig": both(METRICS["mig"].compute, "discrete_mig", num_train=1000),
        "dci": both(METRICS["dci"].compute, "disentanglement", **SMALL),
        "modularity": both(METRICS["modularity"].compute, "modularity_score", **SMALL),
        "factor_vae": both(METRICS["factor_vae"].compute, "eval_accuracy", num_variance_estimate=1000, **BATCHED),
    }
    for name, (p, r) in pairs.items():
        assert r < p - 0.1, f"{name}: rotated {r:.3f} not below perfect {p:.3f}"


def test_gaussian_total_correlation_sees_correlated_dims():
    def sheared(x):
        z = perfect(x)
        return np.stack([z[:, 0], z[:, 0] + z[:, 1], z[:, 2]], axis=1)

    # Var a = Var b: corr(a, a + b) = 1/sqrt(2), TC = -0.5 log(1 - 1/2) = 0.35 nats
    un = METRICS["unsupervised"].compute(DATA, sheared, rng(), num_train=2000)
    assert un["num_active_dims"] == 3
    assert 0.25 < un["gaussian_total_correlation"] < 0.45


def test_sap_prefers_one_dimension_per_factor_over_a_rotation():
    # SAP's one-dimensional linear SVMs separate two classes by a threshold; with many
    # classes one-vs-rest SVMs on one input cannot isolate the middle ones (a known
    # limitation of the score), so the analytic case uses binary factors.
    data = BinaryFactors()
    p = METRICS["sap"].compute(data, perfect, rng(), **SMALL)["sap_score"]
    r = METRICS["sap"].compute(data, rotated, rng(), **SMALL)["sap_score"]
    assert p > 0.45 and r < p - 0.1


def test_compute_all_returns_one_flat_dict_of_floats():
    out = compute_all(DATA, perfect, rng(), progress=False, preset="fast", **SMALL,
                      beta_vae=BATCHED, factor_vae={**BATCHED, "num_variance_estimate": 500})
    assert out["mig"] > 0.95 and out["sap"] > 0.2
    for key in ("beta_vae.eval_accuracy", "factor_vae.eval_accuracy", "dci.disentanglement",
                "dci.completeness", "dci.informativeness_test", "modularity.modularity_score",
                "unsupervised.gaussian_total_correlation", "unsupervised.num_active_dims"):
        assert key in out
    assert all(isinstance(v, float) for v in out.values())
    assert {k.split(".")[0] for k in out} == set(METRICS)


def test_compute_all_is_deterministic_for_a_seed_and_independent_of_other_metrics():
    a = compute_all(DATA, rotated, rng(3), ["mig", "dci"], progress=False, **SMALL)
    b = compute_all(DATA, rotated, rng(3), "mig,dci", progress=False, **SMALL)
    c = compute_all(DATA, rotated, rng(3), ["mig"], progress=False, **SMALL)
    d = compute_all(DATA, rotated, rng(4), ["mig"], progress=False, **SMALL)
    assert a == b
    assert c["mig"] == a["mig"]
    assert d["mig"] != a["mig"]


def test_compute_all_hands_back_the_dci_importance_matrix():
    artifacts: dict = {}
    compute_all(DATA, duplicated, rng(), ["dci"], progress=False, artifacts=artifacts, **SMALL)
    imp = artifacts["dci.importance"]
    assert imp.shape == (6, 3)
    np.testing.assert_allclose(imp.sum(axis=0), 1.0)
    # factor k lives in dims k and k + 3 only
    for k in range(3):
        assert imp[k, k] + imp[k + 3, k] > 0.95


def test_unknown_metric_or_argument_is_rejected_with_the_valid_names():
    with pytest.raises(ValueError, match="valid:.*mig"):
        compute_all(DATA, perfect, rng(), ["nope"], progress=False)
    with pytest.raises(TypeError, match="no argument"):
        compute_all(DATA, perfect, rng(), ["mig"], progress=False, mig={"num_test": 3})
    with pytest.raises(ValueError, match="preset"):
        compute_all(DATA, perfect, rng(), ["mig"], progress=False, preset="huge")


def test_representation_of_wrong_shape_is_reported():
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        METRICS["mig"].compute(DATA, lambda x: np.zeros((len(x) + 1, 3)), rng(), num_train=10)


def test_fast_preset_shares_one_encoded_pool_between_point_metrics():
    from latentdial.training.metrics.mig import _mig

    artifacts: dict = {}
    out = compute_all(DATA, rotated, rng(), ["mig", "unsupervised"], progress=False, artifacts=artifacts,
                      num_train=800)
    codes, factors = artifacts["points.train"]
    assert codes.shape == (800, 3) and factors.shape == (800, 3)
    assert out["mig"] == _mig(codes, factors)["discrete_mig"]
    alone = compute_all(DATA, rotated, rng(), ["mig"], progress=False, share_points=False, num_train=800)
    assert alone["mig"] == pytest.approx(out["mig"], abs=0.05)  # other points, same distribution
