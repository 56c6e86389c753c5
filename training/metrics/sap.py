"""SAP score, Separated Attribute Predictability (Kumar et al. 2018, "Variational
Inference of Disentangled Latent Concepts from Unlabeled Observations", ICLR).

Protocol (disentanglement_lib ``sap_score.compute_sap`` with discrete factors): for
every (dimension, factor) pair train a linear SVM (C=0.01, balanced classes) that
predicts the factor from that one dimension alone; the score matrix holds its test
accuracies. SAP is the mean over factors of the gap between the best and second
best dimension.

Study defaults: num_train 10,000, num_test 5,000, discrete factors.
Points are encoded 256 at a time (the reference used batches of 16; see docs/metrics.md).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from .base import Metric
from .utils import ENCODE_BATCH, NUM_TEST, NUM_TRAIN, sample_points


def _score_matrix(
    train_codes: np.ndarray, train_factors: np.ndarray, test_codes: np.ndarray, test_factors: np.ndarray
) -> np.ndarray:
    """(D, F) test accuracy of a one-dimensional linear SVM per (dimension, factor)."""
    d, f = train_codes.shape[1], train_factors.shape[1]
    scores = np.zeros((d, f))
    for i in range(d):
        for j in range(f):
            if np.ptp(train_codes[:, i]) == 0:
                # a constant input predicts one class: accuracy of that class on the test set
                scores[i, j] = np.mean(test_factors[:, j] == np.bincount(train_factors[:, j]).argmax())
                continue
            clf = LinearSVC(C=0.01, class_weight="balanced")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                clf.fit(train_codes[:, i : i + 1], train_factors[:, j])
            scores[i, j] = np.mean(clf.predict(test_codes[:, i : i + 1]) == test_factors[:, j])
    return scores


def _sap(
    train_codes: np.ndarray, train_factors: np.ndarray, test_codes: np.ndarray, test_factors: np.ndarray
) -> dict[str, float]:
    """SAP from codes (N, D) and integer factors (N, F)."""
    if train_codes.shape[1] < 2:
        raise ValueError("SAP needs a representation with at least two dimensions")
    top = np.sort(_score_matrix(train_codes, train_factors, test_codes, test_factors), axis=0)
    return {"sap_score": float(np.mean(top[-1] - top[-2]))}


SAP = Metric("sap", sample_points, _sap, needs_test=True,
             reference={"num_train": NUM_TRAIN, "num_test": NUM_TEST, "batch_size": ENCODE_BATCH})
