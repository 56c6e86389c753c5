"""Mutual Information Gap (Chen et al. 2018, "Isolating Sources of Disentanglement in
Variational Autoencoders", NeurIPS).

Protocol (disentanglement_lib ``mig.compute_mig``): encode ``num_train`` points,
discretise each code dimension into 20 equal-width bins, compute the discrete
mutual information I(z_j; v_k) of every (dimension, factor) pair, and average over
factors the gap between the two most informative dimensions, normalised by the
factor's entropy H(v_k). A factor encoded in one dimension scores ~1; a factor
spread equally over two dimensions (or not encoded at all) scores ~0.

Study defaults: num_train 10,000, 20 bins.
Points are encoded 256 at a time (the reference used batches of 16; see docs/metrics.md).
"""

from __future__ import annotations

import numpy as np

from .base import Metric
from .utils import (
    ENCODE_BATCH,
    NUM_BINS,
    NUM_TRAIN,
    discrete_entropy,
    discrete_mutual_info,
    histogram_discretize,
    sample_points,
)


def _mig(codes: np.ndarray, factors: np.ndarray, num_bins: int = NUM_BINS) -> dict[str, float]:
    """MIG of codes (N, D) against integer factors (N, F)."""
    if codes.shape[1] < 2:
        raise ValueError("MIG needs a representation with at least two dimensions")
    m = discrete_mutual_info(histogram_discretize(codes, num_bins), factors)  # (D, F)
    entropy = discrete_entropy(factors)  # (F,)
    top = np.sort(m, axis=0)[::-1]
    gap = np.divide(top[0] - top[1], entropy, out=np.zeros_like(entropy), where=entropy > 0)
    return {"discrete_mig": float(np.mean(gap))}


MIG = Metric("mig", sample_points, _mig, reference={"num_train": NUM_TRAIN, "batch_size": ENCODE_BATCH})
