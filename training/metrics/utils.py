"""Helpers shared by the disentanglement metrics (after disentanglement_lib's ``metrics/utils.py``).

Shapes: every helper here works on *row-major* arrays, one row per point:
codes (N, D) float, factors (N, F) int. (disentanglement_lib stores the transposes;
the results are the same.)

A representation function maps observations (N, C, H, W) float32 to the mean
representation (N, D); metrics never see anything else of a model.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.metrics import mutual_info_score

from latentdial.training.data.base import GroundTruthData

RepresentationFn = Callable[[np.ndarray], np.ndarray]

#: disentanglement_lib's ``histogram_discretizer.num_bins`` in the study configs.
NUM_BINS = 20
#: The study's point counts: points a metric fits on, and points it scores on (``num_eval``).
NUM_TRAIN = 10_000
NUM_TEST = 5_000
#: Images per representation_fn call when sampling i.i.d. points (the reference used 16).
ENCODE_BATCH = 256


def check_representation(codes: np.ndarray, num_points: int) -> np.ndarray:
    """Validate a representation function's output: (num_points, D) finite floats."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[0] != num_points:
        raise ValueError(
            f"representation_fn must return (N, D) = ({num_points}, D) for N observations, "
            f"got shape {codes.shape}; return the posterior mean, one row per image"
        )
    if not np.all(np.isfinite(codes)):
        raise ValueError("representation_fn returned NaN or inf; check the model's weights")
    return codes.astype(np.float64, copy=False)


def generate_batch_factor_code(
    dataset: GroundTruthData,
    representation_fn: RepresentationFn,
    num_points: int,
    rng: np.random.Generator,
    batch_size: int = ENCODE_BATCH,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``num_points`` i.i.d. points and encode them, ``batch_size`` at a time.

    Returns:
        codes (num_points, D) float64 and factors (num_points, F) int64.
    """
    if num_points <= 0:
        raise ValueError(f"num_points must be positive, got {num_points}")
    codes, factors = [], []
    done = 0
    while done < num_points:
        n = min(num_points - done, batch_size)
        f, x = dataset.sample(n, rng)
        codes.append(check_representation(representation_fn(x), n))
        factors.append(np.asarray(f, dtype=np.int64))
        done += n
    return np.concatenate(codes), np.concatenate(factors)


def sample_points(
    dataset: GroundTruthData,
    representation_fn: RepresentationFn,
    rng: np.random.Generator,
    *,
    num_train: int,
    batch_size: int = ENCODE_BATCH,
    num_test: int = 0,
) -> tuple[np.ndarray, ...]:
    """The sampler of every metric on i.i.d. points: train points, then test points, from ``rng``.

    A dataset of fixed images (a labelled folder) gives train and test points from disjoint
    rows (``rows.held_out_split``); a renderer draws both from its whole grid.

    Returns:
        (codes (num_train, D), factors (num_train, F)), followed by
        (codes (num_test, D), factors (num_test, F)) when ``num_test`` > 0.
    """
    from latentdial.training.data.rows import held_out_split

    train_data, test_data = held_out_split(dataset)  # disjoint rows for a dataset of fixed images
    train = generate_batch_factor_code(train_data, representation_fn, num_train, rng, batch_size)
    if not num_test:
        return train
    return train + generate_batch_factor_code(test_data, representation_fn, num_test, rng, batch_size)


def encode_factors(
    dataset: GroundTruthData,
    representation_fn: RepresentationFn,
    factors: np.ndarray,
    rng: np.random.Generator,
    chunk: int = 4096,
) -> np.ndarray:
    """Render and encode given factors (N, F) in chunks of ``chunk`` images -> codes (N, D)."""
    out = []
    for i in range(0, len(factors), chunk):
        f = factors[i : i + chunk]
        out.append(check_representation(representation_fn(dataset.sample_observations_from_factors(f, rng)), len(f)))
    return np.concatenate(out)


def histogram_discretize(codes: np.ndarray, num_bins: int = NUM_BINS) -> np.ndarray:
    """Discretise each column of codes (N, D) into ``num_bins`` equal-width bins -> (N, D) int.

    As disentanglement_lib's ``_histogram_discretize``: ``np.digitize`` against the
    left bin edges of ``np.histogram``, so bin ids run 1..num_bins.
    """
    codes = np.asarray(codes)
    out = np.zeros(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram(codes[:, j], num_bins)[1][:-1]
        out[:, j] = np.digitize(codes[:, j], edges)
    return out


def discrete_mutual_info(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Mutual information (nats) between discrete codes (N, D) and factors (N, F) -> (D, F)."""
    d, f = codes.shape[1], factors.shape[1]
    m = np.zeros((d, f))
    for i in range(d):
        for j in range(f):
            m[i, j] = mutual_info_score(factors[:, j], codes[:, i])
    return m


def discrete_entropy(factors: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each discrete column of (N, F) -> (F,)."""
    return np.array([mutual_info_score(factors[:, j], factors[:, j]) for j in range(factors.shape[1])])


def normalize_data(
    codes: np.ndarray, mean: np.ndarray | None = None, std: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardise the columns of codes (N, D); constant columns are centred only (std taken as 1)."""
    if mean is None:
        mean = codes.mean(axis=0)
    if std is None:
        std = codes.std(axis=0)
    safe = np.where(std > 0, std, 1.0)
    return (codes - mean) / safe, mean, std


def active_dims(codes: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    """Boolean mask (D,): dims whose mean representation varies over the data, Var > threshold.

    With a N(0, 1) prior, a dimension that carries information has a posterior mean
    that moves with the input (variance near 1 for a well-used dimension); a collapsed
    one sits at the prior mean for every input (variance near 0). 0.01 (a tenth of
    the prior's standard deviation) separates the two with a wide margin.
    """
    return np.var(codes, axis=0) > threshold
