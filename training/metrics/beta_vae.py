"""BetaVAE score (Higgins et al. 2017, "beta-VAE: Learning Basic Visual Concepts with a
Constrained Variational Framework", ICLR).

Protocol (disentanglement_lib ``beta_vae.compute_beta_vae_sklearn``): one training
point is made by choosing a factor k uniformly, drawing ``batch_size`` pairs of factor
vectors that agree on factor k only, and averaging the absolute difference of the
pairs' representations; its label is k. A linear classifier (logistic regression)
predicts k; the score is its accuracy on ``num_eval`` fresh points.

Study defaults: batch_size 64, num_train 10,000, num_eval 5,000.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from latentdial.training.data.base import GroundTruthData

from .base import Metric
from .utils import NUM_TEST, NUM_TRAIN, RepresentationFn, encode_factors

#: Images per representation_fn call when many training points are encoded together.
_IMAGES_PER_CALL = 4096


def _generate_points(
    dataset: GroundTruthData,
    representation_fn: RepresentationFn,
    batch_size: int,
    num_points: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """(features (num_points, D), labels (num_points,)): each feature is mean |z1 - z2| over a batch."""
    per_call = max(1, _IMAGES_PER_CALL // (2 * batch_size))
    feats, labels = [], []
    for start in range(0, num_points, per_call):
        n = min(per_call, num_points - start)
        k = rng.integers(0, dataset.num_factors, size=n)  # (n,)
        f1 = dataset.sample_factors(n * batch_size, rng).reshape(n, batch_size, -1)
        f2 = dataset.sample_factors(n * batch_size, rng).reshape(n, batch_size, -1)
        f2[np.arange(n), :, k] = f1[np.arange(n), :, k]  # pairs share factor k
        both = np.concatenate([f1, f2], axis=1).reshape(2 * n * batch_size, -1)
        z = encode_factors(dataset, representation_fn, both, rng).reshape(n, 2, batch_size, -1)
        feats.append(np.abs(z[:, 0] - z[:, 1]).mean(axis=1))  # (n, D)
        labels.append(k)
    return np.concatenate(feats), np.concatenate(labels)


def sample_beta_vae(
    dataset: GroundTruthData,
    representation_fn: RepresentationFn,
    rng: np.random.Generator,
    *,
    num_train: int,
    num_test: int,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train features, train labels, eval features, eval labels): ``num_train`` then ``num_test``
    points of ``_generate_points``. ``num_test`` is disentanglement_lib's ``num_eval``."""
    train_x, train_y = _generate_points(dataset, representation_fn, batch_size, num_train, rng)
    eval_x, eval_y = _generate_points(dataset, representation_fn, batch_size, num_test, rng)
    return train_x, train_y, eval_x, eval_y


def _beta_vae_from_points(
    train_x: np.ndarray, train_y: np.ndarray, eval_x: np.ndarray, eval_y: np.ndarray, seed: int
) -> dict[str, float]:
    """Fit the linear classifier on (N, D) features / (N,) labels; report {"train_accuracy",
    "eval_accuracy"}."""
    if len(np.unique(train_y)) < 2:
        raise ValueError("BetaVAE score needs at least two factors and enough training points")
    model = LogisticRegression(max_iter=1000, random_state=seed)
    model.fit(train_x, train_y)
    return {
        "train_accuracy": float(model.score(train_x, train_y)),
        "eval_accuracy": float(model.score(eval_x, eval_y)),
    }


BETA_VAE = Metric("beta_vae", sample_beta_vae, _beta_vae_from_points, needs_test=True, seeded=True,
                  reference={"num_train": NUM_TRAIN, "num_test": NUM_TEST, "batch_size": 64},
                  fast={"num_train": 300, "num_test": 150})
