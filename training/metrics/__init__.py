"""Disentanglement metrics on ground-truth data (after disentanglement_lib, Locatello et al. 2019).

Every metric is one :class:`~latentdial.training.metrics.base.Metric` record in
``METRICS`` (after disent's ``make_metric``): a sampler that encodes observations, a
pure function on the sampled arrays (disentanglement_lib's split), its reference and
fast sizes, and whether it needs a test split. ``METRICS["mig"].compute(dataset,
representation_fn, rng, num_train=...)`` runs one metric alone; ``compute_all`` runs
several and returns one flat dict: {"mig": ..., "factor_vae.eval_accuracy": ...,
"dci.disentanglement": ...}.

Presets: "reference" runs disentanglement_lib's study sizes (BetaVAE and FactorVAE
alone encode ~3 million images: ~40 minutes on a 2-core CPU); "fast" (the default)
shrinks only those two batch-based scores and lets the metrics on i.i.d. points (MIG,
SAP, DCI, modularity, unsupervised) share one encoded train / test pool, so that the
whole suite fits in a few minutes on such a machine. See docs/metrics.md.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np

from latentdial.training.data.base import GroundTruthData

from .base import Metric
from .beta_vae import BETA_VAE
from .dci import DCI
from .factor_vae import FACTOR_VAE
from .mig import MIG
from .modularity import MODULARITY
from .sap import SAP
from .unsupervised import UNSUPERVISED
from .utils import RepresentationFn, sample_points

#: name -> metric, in the order ``compute_all`` runs them.
METRICS: dict[str, Metric] = {m.name: m for m in (BETA_VAE, FACTOR_VAE, MIG, SAP, DCI, MODULARITY, UNSUPERVISED)}

#: The presets of ``compute_all`` (see ``Metric.sizes``).
PRESETS = ("fast", "reference")
#: Presets in which metrics on i.i.d. points share one encoded train / test pool.
SHARED_POINTS: dict[str, bool] = {"reference": False, "fast": True}

__all__ = ["METRICS", "PRESETS", "SHARED_POINTS", "Metric", "compute_all", "parse_names"]


def parse_names(names: str | Iterable[str] | None) -> list[str]:
    """"mig,dci" / ["mig", "dci"] / None (all) -> validated metric names, registry order kept."""
    if names is None:
        return list(METRICS)
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = list(names)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; valid: {list(METRICS)}")
    if not names:
        raise ValueError(f"no metric named; valid: {list(METRICS)}")
    return names


def _metric_rng(base: int, name: str) -> np.random.Generator:
    """A generator per metric from one base draw, so a metric's result does not depend on which others ran."""
    return np.random.default_rng([base, zlib.crc32(name.encode())])


def _kwargs_for(metric: Metric, preset: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The preset's sizes, then global overrides the metric takes, then its own overrides (validated)."""
    kwargs = metric.sizes(preset)
    kwargs.update({k: v for k, v in overrides.items() if k not in METRICS and k in metric.accepted})
    per_metric = overrides.get(metric.name, {})
    if not isinstance(per_metric, dict):
        raise TypeError(f"override {metric.name}= must be a dict of keyword arguments, got {per_metric!r}")
    kwargs.update(per_metric)
    metric.split(kwargs)  # TypeError naming what the metric does not take
    return kwargs


def _shared_pool(
    dataset: GroundTruthData,
    representation_fn: RepresentationFn,
    base: int,
    pooled: list[Metric],
    kwargs_of: dict[str, dict[str, Any]],
) -> tuple[np.ndarray, ...]:
    """One train and one test pool, as large as the most demanding pooled metric asks:
    (train codes, train factors[, test codes, test factors])."""
    n_train = max(int(kwargs_of[m.name]["num_train"]) for m in pooled)
    n_test = max((int(kwargs_of[m.name]["num_test"]) for m in pooled if m.needs_test), default=0)
    batch = max(int(kwargs_of[m.name]["batch_size"]) for m in pooled)
    return sample_points(dataset, representation_fn, _metric_rng(base, "shared points"),
                         num_train=n_train, num_test=n_test, batch_size=batch)


def _from_pool(pool: tuple[np.ndarray, ...], metric: Metric, kwargs: dict[str, Any]) -> tuple[np.ndarray, ...]:
    """The metric's inputs cut from the shared pool: its first num_train (and num_test) points."""
    n_train = int(kwargs["num_train"])
    train = tuple(a[:n_train] for a in pool[:2])
    if not metric.needs_test:
        return train
    n_test = int(kwargs["num_test"])
    return train + tuple(a[:n_test] for a in pool[2:])


def compute_all(
    dataset: GroundTruthData,
    representation_fn: RepresentationFn,
    rng: np.random.Generator,
    names: str | Iterable[str] | None = None,
    *,
    preset: str = "fast",
    progress: bool = True,
    artifacts: dict[str, Any] | None = None,
    share_points: bool | None = None,
    **overrides: Any,
) -> dict[str, float]:
    """Run several metrics and return one flat dict of floats.

    Args:
        names: metric names (or "mig,dci"); None runs all of ``METRICS``.
        preset: "fast" (default) or "reference" sizes, see ``Metric.sizes``.
        artifacts: if a dict, receives the arrays metrics hand back (``"dci.importance"``:
            the (D, F) importance matrix) and, when points are shared, ``"points.train"``:
            the shared (codes (N, D), factors (N, F)) train pool.
        share_points: metrics on i.i.d. points (``Metric.on_points``: MIG, SAP, DCI,
            modularity, unsupervised) share one encoded train pool (size: the largest
            num_train among them) and one test pool instead of sampling their own.
            Default: the preset's ``SHARED_POINTS`` (True for "fast").
        overrides: keyword arguments given to every metric that accepts them
            (``num_train=2000``), or per metric (``mig={"num_train": 500}``).
    Keys: ``<metric>.<key>``, or just ``<metric>`` for one-number metrics (mig, sap).
    Each metric draws from its own generator (one base draw from ``rng`` plus its name),
    so its result does not depend on which other metrics ran.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid: {list(PRESETS)}")
    chosen = [METRICS[n] for n in parse_names(names)]
    base = int(rng.integers(2**62))
    out: dict[str, float] = {}
    share = SHARED_POINTS[preset] if share_points is None else share_points
    kwargs_of = {m.name: _kwargs_for(m, preset, overrides) for m in chosen}
    pooled = [m for m in chosen if share and m.on_points]
    pool: tuple[np.ndarray, ...] | None = None
    from tqdm.auto import tqdm

    bar = tqdm(chosen, desc="metrics", unit="metric", disable=not progress)
    for metric in bar:
        bar.set_postfix_str(metric.name)
        kwargs = kwargs_of[metric.name]
        metric_rng = _metric_rng(base, metric.name)
        sample_kwargs, score_kwargs = metric.split(kwargs)
        if metric in pooled:
            if pool is None:
                pool = _shared_pool(dataset, representation_fn, base, pooled, kwargs_of)
                if artifacts is not None:
                    artifacts["points.train"] = pool[:2]
            inputs = _from_pool(pool, metric, kwargs)
        else:
            inputs = metric.sampler(dataset, representation_fn, metric_rng, **sample_kwargs)
        scores, artifact = metric.evaluate(inputs, metric_rng, **score_kwargs)
        if artifact is not None and artifacts is not None:
            artifacts[f"{metric.name}.{metric.artifact}"] = artifact
        if len(scores) == 1:
            out[metric.name] = float(next(iter(scores.values())))
        else:
            out.update({f"{metric.name}.{k}": float(v) for k, v in scores.items()})
    return out
