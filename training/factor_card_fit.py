"""Fit a model's factor card: choose the latents that carry each factor and calibrate them on labelled data.

The card (``latentdial.factor_card.FactorCard``) says, for each named factor,
which latent dimensions carry it and how to dial it: a calibration table from
each grid value of the factor to the mean latent value of its dimensions.
Serving uses it to turn "scale = 0.8" or "orientation += pi/4" into latents.

How dimensions are chosen (see docs/metrics.md, "Factor card"):

1. Encode ``num_points`` random points; compute the normalised mutual information
   nmi[d, k] = I(z_d; v_k) / H(v_k) with the 20-bin discretisation of MIG
   (Chen et al. 2018). A factor is *carried* if some dimension has
   nmi >= ``min_information``; others are omitted with a warning.
2. The score of (d, k) is the DCI importance R[d, k] (Eastwood & Williams 2018)
   when an importance matrix is given (each column sums to 1), else nmi[d, k].
3. Greedy assignment: visit (d, k) pairs by decreasing score; dimension d goes to
   factor k if d is still free, nmi[d, k] >= ``min_information``, its score is at
   least ``relative_threshold`` x factor k's best score, and k has fewer than
   ``max_dims_per_factor`` dims. So each dimension serves at most one factor, the
   most important dimension comes first, and a circular factor encoded as
   (cos, sin) gets both of its dimensions.

Calibration: for each grid value v of factor k, draw ``points_per_value`` random
factor vectors, set factor k to v, encode, and average the chosen dims ->
``latent_table`` (K, len(dims)).
"""

from __future__ import annotations

import warnings

import numpy as np

from latentdial.factor_card import FactorCard, FactorEntry
from latentdial.training.data.base import GroundTruthData
from latentdial.training.metrics.utils import (
    RepresentationFn,
    discrete_entropy,
    discrete_mutual_info,
    encode_factors,
    generate_batch_factor_code,
    histogram_discretize,
)

__all__ = ["assign_dims", "circular_period", "compute_factor_card", "normalised_mutual_info"]


def circular_period(grid: np.ndarray) -> float:
    """Period of a circular factor from its grid (K,): max - min + step.

    A grid that already closes the circle (its span is a full turn, 2 pi or 360,
    as dSprites' ``linspace(0, 2 pi, 40)`` whose two ends render the same image)
    has period equal to its span.
    """
    grid = np.sort(np.asarray(grid, dtype=np.float64))
    span = float(grid[-1] - grid[0])
    if len(grid) < 2:
        raise ValueError("a circular factor needs at least two grid values")
    step = float(np.median(np.diff(grid)))
    for turn in (2 * np.pi, 360.0):
        if abs(span - turn) < 0.25 * step:
            return turn
    return span + step


def normalised_mutual_info(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """I(z_d; v_k) / H(v_k) for codes (N, D) and integer factors (N, F) -> (D, F) in [0, 1]."""
    mi = discrete_mutual_info(histogram_discretize(codes), factors)
    entropy = discrete_entropy(factors)
    return np.divide(mi, entropy[None, :], out=np.zeros_like(mi), where=entropy[None, :] > 0)


def assign_dims(
    score: np.ndarray,
    nmi: np.ndarray,
    *,
    relative_threshold: float = 0.5,
    min_information: float = 0.1,
    max_dims_per_factor: int = 2,
) -> list[list[int]]:
    """Greedy one-factor-per-dimension assignment (module docstring, step 3).

    Args:
        score: (D, F) importance of each dim for each factor.
        nmi: (D, F) normalised mutual information.
    Returns:
        per factor, its dims ordered by decreasing score ([] if it is not carried).
    """
    if score.shape != nmi.shape:
        raise ValueError(f"importance shape {score.shape} != mutual-information shape {nmi.shape} (D, F)")
    f_count = score.shape[1]
    best = score.max(axis=0)  # (F,)
    dims: list[list[int]] = [[] for _ in range(f_count)]
    claimed: set[int] = set()
    order = np.argsort(-score, axis=None, kind="stable")
    for flat in order:
        d, k = divmod(int(flat), f_count)
        if d in claimed or len(dims[k]) >= max_dims_per_factor:
            continue
        if score[d, k] <= 0 or score[d, k] < relative_threshold * best[k] or nmi[d, k] < min_information:
            continue
        dims[k].append(d)
        claimed.add(d)
    return dims


def _calibrate(
    dataset: GroundTruthData,
    representation_fn: RepresentationFn,
    factor: int,
    dims: list[int],
    points_per_value: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Mean latent of ``dims`` at every grid value of ``factor`` -> (K, len(dims))."""
    k = dataset.factors_num_values[factor]
    factors = dataset.sample_factors(k * points_per_value, rng)
    factors[:, factor] = np.repeat(np.arange(k), points_per_value)
    codes = encode_factors(dataset, representation_fn, factors, rng)
    return codes[:, dims].reshape(k, points_per_value, len(dims)).mean(axis=1)


def compute_factor_card(
    dataset: GroundTruthData,
    representation_fn: RepresentationFn,
    rng: np.random.Generator,
    *,
    importance: np.ndarray | None = None,
    num_points: int = 10_000,
    points_per_value: int = 64,
    relative_threshold: float = 0.5,
    min_information: float = 0.1,
    max_dims_per_factor: int = 2,
    points: tuple[np.ndarray, np.ndarray] | None = None,
) -> FactorCard:
    """The factor card of a representation on labelled data.

    Args:
        importance: optional DCI importance matrix (D, F) (``METRICS["dci"].run`` or ``compute_all(..., artifacts=...)``);
            without it dimensions are ranked by normalised mutual information.
        num_points: points encoded to measure mutual information.
        points_per_value: random points averaged per grid value in the calibration table.
        points: already encoded i.i.d. points (codes (N, D), factors (N, F)) to measure
            mutual information on instead of sampling ``num_points`` new ones.
    Factors that no dimension carries are left out with a ``UserWarning``.
    """
    if points is None:
        points = generate_batch_factor_code(dataset, representation_fn, num_points, rng, batch_size=256)
    codes, factors = points
    latent_dim = codes.shape[1]
    nmi = normalised_mutual_info(codes, factors)  # (D, F)
    if importance is not None:
        importance = np.asarray(importance, dtype=np.float64)
        if importance.shape != nmi.shape:
            raise ValueError(
                f"importance has shape {importance.shape}; expected (latent dims, factors) = {nmi.shape}"
            )
    score = nmi if importance is None else importance
    chosen = assign_dims(
        score, nmi, relative_threshold=relative_threshold, min_information=min_information,
        max_dims_per_factor=max_dims_per_factor,
    )
    kinds = list(getattr(dataset, "factor_kinds", ["continuous"] * dataset.num_factors))
    entries: list[FactorEntry] = []
    for k, name in enumerate(dataset.factor_names):
        dims = chosen[k]
        if not dims:
            best = float(nmi[:, k].max())
            why = (
                f"best normalised mutual information {best:.3f} < {min_information}"
                if best < min_information
                else "its informative dimensions carry other factors more strongly"
            )
            warnings.warn(
                f"factor {name!r} is carried by no latent dimension ({why}); "
                "it is left out of the factor card",
                UserWarning,
                stacklevel=2,
            )
            continue
        grid = np.asarray(dataset.factor_grid(k), dtype=np.float64)
        kind = kinds[k]
        labels = list(dataset.factor_labels(k)) if kind == "categorical" else []
        entries.append(
            FactorEntry(
                name=name,
                kind=kind,
                dims=[int(d) for d in dims],
                values=grid.tolist(),
                latent_table=_calibrate(dataset, representation_fn, k, dims, points_per_value, rng).tolist(),
                labels=labels if len(labels) == len(grid) else [],
                importance=[float(score[d, k]) for d in dims],
                period=circular_period(grid) if kind == "circular" else None,
            )
        )
    return FactorCard(factors=entries, latent_dim=latent_dim, source="labelled")
