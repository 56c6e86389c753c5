"""Unsupervised scores of a representation: no factors needed.

- ``gaussian_total_correlation`` (as disentanglement_lib ``unsupervised_metrics``,
  after Locatello et al. 2019, "Challenging Common Assumptions in the Unsupervised
  Learning of Disentangled Representations", ICML): the total correlation of a
  Gaussian with the codes' covariance, 0.5 (sum log diag(C) - log det C);
  0 for uncorrelated dims. Computed over the active dims only: a collapsed dim
  has near-zero variance and makes log det meaningless.
- ``gaussian_wasserstein_correlation`` and its normalised form, and
  ``mutual_info_score`` (mean pairwise discrete MI between dims), as there.
- ``num_active_dims``: dims whose mean representation has variance > 0.01 over
  the data (see :func:`utils.active_dims` for why 0.01).

Defaults: num_train 10,000.
Points are encoded 256 at a time (the reference used batches of 16; see docs/metrics.md).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from .base import Metric
from .utils import (
    ENCODE_BATCH,
    NUM_TRAIN,
    active_dims,
    discrete_mutual_info,
    histogram_discretize,
    sample_points,
)


def gaussian_total_correlation(cov: np.ndarray) -> float:
    """Total correlation (nats) of N(0, cov), cov (D, D)."""
    return float(0.5 * (np.sum(np.log(np.diag(cov))) - np.linalg.slogdet(cov)[1]))


def gaussian_wasserstein_correlation(cov: np.ndarray) -> float:
    """Squared 2-Wasserstein distance between N(0, cov) and N(0, diag(cov))."""
    root = scipy.linalg.sqrtm(cov * np.expand_dims(np.diag(cov), axis=1))
    return float(2 * np.trace(cov) - 2 * np.trace(np.real(root)))


def _unsupervised(codes: np.ndarray, factors: np.ndarray, active_threshold: float = 0.01) -> dict[str, float]:
    """Scores of codes (N, D). factors (N, F) are not used: taken so that every metric on
    i.i.d. points scores the same (codes, factors) arrays."""
    active = active_dims(codes, active_threshold)
    out = {"num_active_dims": float(active.sum())}
    if active.sum() >= 2:
        cov = np.cov(codes[:, active], rowvar=False)
        out["gaussian_total_correlation"] = gaussian_total_correlation(cov)
        out["gaussian_wasserstein_correlation"] = gaussian_wasserstein_correlation(cov)
        out["gaussian_wasserstein_correlation_norm"] = out["gaussian_wasserstein_correlation"] / float(
            np.trace(cov)
        )
    else:  # zero or one active dim: nothing can be correlated
        out.update(
            gaussian_total_correlation=0.0,
            gaussian_wasserstein_correlation=0.0,
            gaussian_wasserstein_correlation_norm=0.0,
        )
    d = codes.shape[1]
    if d >= 2:
        discrete = histogram_discretize(codes)
        mi = discrete_mutual_info(discrete, discrete)
        np.fill_diagonal(mi, 0.0)
        out["mutual_info_score"] = float(mi.sum() / (d * d - d))
    else:
        out["mutual_info_score"] = 0.0
    return out


UNSUPERVISED = Metric("unsupervised", sample_points, _unsupervised,
                      reference={"num_train": NUM_TRAIN, "batch_size": ENCODE_BATCH})
