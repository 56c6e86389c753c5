"""Modularity and explicitness (Ridgeway & Mozer 2018, "Learning Deep Disentangled
Embeddings with the F-Statistic Loss", NeurIPS).

Protocol (disentanglement_lib ``modularity_explicitness``):

- modularity: with m = I(z_d; v_k) from 20-bin histograms, each dimension's
  deviation from an ideal (one-factor) template is
  delta_d = (sum_k m_dk^2 - max_k m_dk^2) / (max_k m_dk^2 (F - 1)); the score is the
  mean of 1 - delta_d, with dimensions that share no information scoring 0;
- explicitness: a logistic regression per factor on the standardised code;
  the score is the mean one-vs-rest ROC AUC over factors (train and test).

Study defaults: num_train 10,000, num_test 5,000.
Points are encoded 256 at a time (the reference used batches of 16; see docs/metrics.md).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import label_binarize

from .base import Metric
from .utils import (
    ENCODE_BATCH,
    NUM_TEST,
    NUM_TRAIN,
    discrete_mutual_info,
    histogram_discretize,
    normalize_data,
    sample_points,
)


def modularity(mutual_information: np.ndarray) -> float:
    """Modularity of a (D, F) mutual-information matrix."""
    sq = np.square(mutual_information)
    top = sq.max(axis=1)
    num_factors = sq.shape[1]
    if num_factors < 2:
        return 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = (sq.sum(axis=1) - top) / (top * (num_factors - 1.0))
    score = np.where(top == 0.0, 0.0, 1.0 - delta)
    return float(np.mean(score))


def _auc(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    """Mean one-vs-rest ROC AUC over the classes present (as sklearn's multilabel average)."""
    onehot = label_binarize(y, classes=classes)
    if len(classes) == 2:
        onehot = np.hstack([1 - onehot, onehot])
    present = (onehot.sum(axis=0) > 0) & (onehot.sum(axis=0) < len(y))
    return float(roc_auc_score(onehot[:, present], proba[:, present], average="macro"))


def explicitness_per_factor(
    train_codes: np.ndarray, train_y: np.ndarray, test_codes: np.ndarray, test_y: np.ndarray
) -> tuple[float, float]:
    """(train AUC, test AUC) of a logistic regression predicting one factor (N,) from codes (N, D)."""
    classes = np.unique(train_y)
    if len(classes) < 2:
        return 1.0, 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression().fit(train_codes, train_y)
    return (
        _auc(train_y, clf.predict_proba(train_codes), clf.classes_),
        _auc(test_y, clf.predict_proba(test_codes), clf.classes_),
    )


def _modularity_explicitness(
    train_codes: np.ndarray, train_factors: np.ndarray, test_codes: np.ndarray, test_factors: np.ndarray
) -> dict[str, float]:
    """Scores from codes (N, D) and integer factors (N, F)."""
    mi = discrete_mutual_info(histogram_discretize(train_codes), train_factors)
    train_norm, mean, std = normalize_data(train_codes)
    test_norm, _, _ = normalize_data(test_codes, mean, std)
    auc = np.array([
        explicitness_per_factor(train_norm, train_factors[:, k], test_norm, test_factors[:, k])
        for k in range(train_factors.shape[1])
    ])  # (F, 2)
    return {
        "modularity_score": modularity(mi),
        "explicitness_score_train": float(auc[:, 0].mean()),
        "explicitness_score_test": float(auc[:, 1].mean()),
    }


MODULARITY = Metric("modularity", sample_points, _modularity_explicitness, needs_test=True,
                    reference={"num_train": NUM_TRAIN, "num_test": NUM_TEST, "batch_size": ENCODE_BATCH})
