"""FactorVAE score (Kim & Mnih 2018, "Disentangling by Factorising", ICML).

Protocol (disentanglement_lib ``factor_vae.compute_factor_vae``): estimate each
dimension's global variance from ``num_variance_estimate`` points and prune
collapsed dimensions: those whose standard deviation is below 0.05, as the study
configures it (``prune_dims.threshold = 0.05`` in its ``factor_vae_metric.gin``,
compared with the square root of the global variance). One vote: choose a factor
k, draw ``batch_size`` points that all share the value of factor k, divide each
active dimension's variance in the batch by its global variance and vote (k,
argmin dimension). The classifier maps each dimension to the factor it received
most votes for (majority vote); the score is the fraction of ``num_eval`` fresh
votes it gets right.

Study defaults: batch_size 64, num_train 10,000, num_eval 5,000,
num_variance_estimate 10,000.
"""

from __future__ import annotations

import numpy as np

from latentdial.training.data.base import GroundTruthData

from .base import Metric
from .utils import (
    ENCODE_BATCH,
    NUM_TEST,
    NUM_TRAIN,
    RepresentationFn,
    encode_factors,
    generate_batch_factor_code,
)

_IMAGES_PER_CALL = 4096


#: Smallest standard deviation of an active dimension (disentanglement_lib's study value).
PRUNE_THRESHOLD = 0.05


def _prune_dims(variances: np.ndarray, threshold: float = PRUNE_THRESHOLD) -> np.ndarray:
    """Active-dimension mask (D,): standard deviation sqrt(variance) at least ``threshold``.

    The threshold is absolute, in the code's own units, as in the reference: with a N(0, 1)
    prior a used dimension's posterior mean varies with std near 1, a collapsed one near 0.
    A dimension of exactly zero variance is never active.
    """
    scale = np.sqrt(np.maximum(variances, 0.0))
    return (scale >= threshold) & (scale > 0)


def _generate_votes(
    dataset: GroundTruthData,
    representation_fn: RepresentationFn,
    batch_size: int,
    num_points: int,
    rng: np.random.Generator,
    global_variances: np.ndarray,
    active: np.ndarray,
) -> np.ndarray:
    """Vote counts (F, D): votes[k, d] = how often dim d had the smallest normalised variance for k."""
    votes = np.zeros((dataset.num_factors, global_variances.shape[0]), dtype=np.int64)
    active_idx = np.flatnonzero(active)
    per_call = max(1, _IMAGES_PER_CALL // batch_size)
    for start in range(0, num_points, per_call):
        n = min(per_call, num_points - start)
        k = rng.integers(0, dataset.num_factors, size=n)
        f = dataset.sample_factors(n * batch_size, rng).reshape(n, batch_size, -1)
        f[np.arange(n), :, k] = f[np.arange(n), 0, k][:, None]  # the batch shares factor k
        z = encode_factors(dataset, representation_fn, f.reshape(n * batch_size, -1), rng)
        z = z.reshape(n, batch_size, -1)[:, :, active_idx]
        local = np.var(z, axis=1, ddof=1)  # (n, D_active)
        argmin = active_idx[np.argmin(local / global_variances[active_idx], axis=1)]
        np.add.at(votes, (k, argmin), 1)
    return votes


def sample_votes(
    dataset: GroundTruthData,
    representation_fn: RepresentationFn,
    rng: np.random.Generator,
    *,
    num_train: int,
    num_test: int,
    batch_size: int,
    num_variance_estimate: int,
    prune_threshold: float = PRUNE_THRESHOLD,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train votes (F, D), eval votes (F, D), active-dimension mask (D,)).

    Global variances from ``num_variance_estimate`` i.i.d. points; with no active
    dimension no vote is drawn (both vote tables are zero).
    """
    codes, _ = generate_batch_factor_code(dataset, representation_fn, num_variance_estimate, rng, ENCODE_BATCH)
    global_variances = np.var(codes, axis=0, ddof=1)
    active = _prune_dims(global_variances, prune_threshold)
    if not active.any():
        none = np.zeros((dataset.num_factors, global_variances.shape[0]), dtype=np.int64)
        return none, none, active
    train = _generate_votes(dataset, representation_fn, batch_size, num_train, rng, global_variances, active)
    evals = _generate_votes(dataset, representation_fn, batch_size, num_test, rng, global_variances, active)
    return train, evals, active


def _factor_vae_from_votes(train_votes: np.ndarray, eval_votes: np.ndarray, active: np.ndarray) -> dict[str, float]:
    """Majority-vote classifier from train votes (F, D); {"train_accuracy", "eval_accuracy"} on
    train and eval votes, and "num_active_dims" of the mask (D,)."""
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0.0}
    classifier = np.argmax(train_votes, axis=0)  # (D,) factor per dim
    dims = np.arange(train_votes.shape[1])
    return {
        "train_accuracy": float(train_votes[classifier, dims].sum() / max(train_votes.sum(), 1)),
        "eval_accuracy": float(eval_votes[classifier, dims].sum() / max(eval_votes.sum(), 1)),
        "num_active_dims": float(active.sum()),
    }


FACTOR_VAE = Metric("factor_vae", sample_votes, _factor_vae_from_votes, needs_test=True,
                    reference={"num_train": NUM_TRAIN, "num_test": NUM_TEST, "batch_size": 64,
                               "num_variance_estimate": 10_000},
                    fast={"num_train": 500, "num_test": 250, "num_variance_estimate": 5_000})
