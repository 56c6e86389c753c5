"""Disentanglement metrics on ground-truth data (after disentanglement_lib, Locatello et al. 2019).

Every metric is a public sampler ``compute_<name>(dataset, representation_fn, rng,
*, num_train=..., ...) -> dict[str, float]`` (defaults: the reference protocol)
plus a private pure function on arrays. ``compute_all`` runs several and returns
one flat dict: {"mig": ..., "factor_vae.eval_accuracy": ..., "dci.disentanglement": ...}.

Presets for ``compute_all``: "reference" runs disentanglement_lib's study sizes
(BetaVAE and FactorVAE alone encode ~3 million images: ~40 minutes on a 2-core
CPU); "fast" (the default) shrinks only those two batch-based scores and lets the
metrics on i.i.d. points (MIG, SAP, DCI, modularity, unsupervised) share one encoded
train / test pool, so that the whole suite fits in a few minutes on such a machine.
See docs/metrics.md.
"""

from __future__ import annotations

import inspect
import zlib
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from latentdial.training.data.base import GroundTruthData

from .beta_vae import compute_beta_vae
from .dci import _dci, compute_dci, compute_dci_with_importance
from .factor_vae import compute_factor_vae
from .mig import _mig, compute_mig
from .modularity import _modularity_explicitness, compute_modularity_explicitness
from .sap import _sap, compute_sap
from .unsupervised import _unsupervised, compute_unsupervised
from .utils import RepresentationFn, generate_batch_factor_code

MetricFn = Callable[..., dict[str, float]]

#: name -> sampler. The name prefixes the metric's keys in compute_all's flat dict.
METRICS: dict[str, MetricFn] = {
    "beta_vae": compute_beta_vae,
    "factor_vae": compute_factor_vae,
    "mig": compute_mig,
    "sap": compute_sap,
    "dci": compute_dci,
    "modularity": compute_modularity_explicitness,
    "unsupervised": compute_unsupervised,
}

#: Per-metric keyword overrides of each preset ("reference" = the samplers' own defaults).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "reference": {},
    "fast": {
        "beta_vae": {"num_train": 300, "num_test": 150},
        "factor_vae": {"num_train": 500, "num_test": 250, "num_variance_estimate": 5_000},
    },
}
#: Presets in which metrics on i.i.d. points share one encoded train / test pool.
SHARED_POINTS: dict[str, bool] = {"reference": False, "fast": True}

Points = tuple[np.ndarray, np.ndarray]  # codes (N, D), factors (N, F)

#: Metrics that only need i.i.d. (codes, factors) points: name -> fn(train, test, **options).
_ON_POINTS: dict[str, Callable[..., tuple[dict[str, float], np.ndarray | None]]] = {
    "mig": lambda tr, te, **kw: (_mig(*tr, **kw), None),
    "sap": lambda tr, te, **kw: (_sap(*tr, *te, **kw), None),
    "dci": lambda tr, te, **kw: _dci(*tr, *te, **kw),
    "modularity": lambda tr, te, **kw: (_modularity_explicitness(*tr, *te, **kw), None),
    "unsupervised": lambda tr, te, **kw: (_unsupervised(tr[0], **kw), None),
}
_SIZE_KEYS = ("num_train", "num_test", "batch_size")

__all__ = [
    "METRICS",
    "PRESETS",
    "compute_all",
    "compute_beta_vae",
    "compute_dci",
    "compute_dci_with_importance",
    "compute_factor_vae",
    "compute_mig",
    "compute_modularity_explicitness",
    "compute_sap",
    "compute_unsupervised",
    "parse_names",
]


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


def _metric_rng(rng: np.random.Generator, base: int, name: str) -> np.random.Generator:
    """A generator per metric, so a metric's result does not depend on which others ran."""
    return np.random.default_rng([base, zlib.crc32(name.encode())])


def _kwargs_for(fn: MetricFn, name: str, preset: dict, overrides: dict[str, Any]) -> dict[str, Any]:
    accepted = set(inspect.signature(fn).parameters)
    kwargs = dict(preset.get(name, {}))
    for key, value in overrides.items():
        if key in METRICS:
            continue
        if key in accepted:
            kwargs[key] = value
    per_metric = overrides.get(name, {})
    if not isinstance(per_metric, dict):
        raise TypeError(f"override {name}= must be a dict of keyword arguments, got {per_metric!r}")
    bad = set(per_metric) - accepted
    if bad:
        raise TypeError(f"metric {name!r} takes no argument(s) {sorted(bad)}")
    kwargs.update(per_metric)
    return kwargs


def _size(name: str, kwargs: dict[str, Any], key: str) -> int | None:
    """The value of ``key`` a metric runs with (override or signature default); None if not taken."""
    if key in kwargs:
        return int(kwargs[key])
    param = inspect.signature(METRICS[name]).parameters.get(key)
    return None if param is None else int(param.default)


def _shared_pools(
    dataset: GroundTruthData,
    representation_fn: RepresentationFn,
    rng: np.random.Generator,
    base: int,
    pooled: list[str],
    kwargs_of: dict[str, dict[str, Any]],
) -> dict[str, Points]:
    """One train and one test pool, as large as the most demanding pooled metric asks."""
    n_train = max(_size(n, kwargs_of[n], "num_train") or 0 for n in pooled)
    n_test = max(_size(n, kwargs_of[n], "num_test") or 0 for n in pooled)
    batch = max(_size(n, kwargs_of[n], "batch_size") or 0 for n in pooled)
    pool_rng = _metric_rng(rng, base, "shared points")
    train = generate_batch_factor_code(dataset, representation_fn, n_train, pool_rng, batch)
    test = (
        generate_batch_factor_code(dataset, representation_fn, n_test, pool_rng, batch)
        if n_test
        else (train[0][:0], train[1][:0])
    )
    return {"train": train, "test": test}


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
        preset: "fast" (default) or "reference" sizes, see ``PRESETS``.
        artifacts: if a dict, receives arrays some metrics produce
            (``"dci.importance"``: the (D, F) importance matrix; ``"points.train"``: the
            shared (codes, factors) train pool when points are shared).
        share_points: MIG, SAP, DCI, modularity and the unsupervised scores all evaluate
            i.i.d. points; when True they share one encoded train pool (size: the largest
            num_train among them) and one test pool instead of sampling their own.
            Default: the preset's ``SHARED_POINTS`` (True for "fast").
        overrides: keyword arguments given to every metric that accepts them
            (``num_train=2000``), or per metric (``mig={"num_train": 500}``).
    Keys: ``<metric>.<key>``, or just ``<metric>`` for one-number metrics (mig, sap).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid: {list(PRESETS)}")
    chosen = parse_names(names)
    base = int(rng.integers(2**62))
    out: dict[str, float] = {}
    share = SHARED_POINTS[preset] if share_points is None else share_points
    kwargs_of = {n: _kwargs_for(METRICS[n], n, PRESETS[preset], overrides) for n in chosen}
    pooled = [n for n in chosen if share and n in _ON_POINTS]
    pools: dict[str, Points] = {}
    from tqdm.auto import tqdm

    bar = tqdm(chosen, desc="metrics", unit="metric", disable=not progress)
    for name in bar:
        bar.set_postfix_str(name)
        fn = METRICS[name]
        kwargs = kwargs_of[name]
        metric_rng = _metric_rng(rng, base, name)
        if name in pooled:
            if not pools:
                pools = _shared_pools(dataset, representation_fn, rng, base, pooled, kwargs_of)
                if artifacts is not None:
                    artifacts["points.train"] = pools["train"]
            n_train = _size(name, kwargs, "num_train")
            n_test = _size(name, kwargs, "num_test") or 0
            train = tuple(a[:n_train] for a in pools["train"])
            test = tuple(a[:n_test] for a in pools["test"])
            options = {k: v for k, v in kwargs.items() if k not in _SIZE_KEYS}
            if name == "dci":
                options["seed"] = int(metric_rng.integers(2**31))
            scores, extra = _ON_POINTS[name](train, test, **options)
            if name == "dci" and artifacts is not None:
                artifacts["dci.importance"] = extra
        elif name == "dci" and artifacts is not None:
            scores, importance = compute_dci_with_importance(dataset, representation_fn, metric_rng, **kwargs)
            artifacts["dci.importance"] = importance
        else:
            scores = fn(dataset, representation_fn, metric_rng, **kwargs)
        if len(scores) == 1:
            out[name] = float(next(iter(scores.values())))
        else:
            out.update({f"{name}.{k}": float(v) for k, v in scores.items()})
    return out
