"""One record per disentanglement metric: its sampler, its pure function and its sizes.

disentanglement_lib (Locatello et al. 2019) splits every metric into a sampler that
encodes observations and a pure function on the sampled arrays; disent's
``make_metric`` attaches to each metric its name and its default and fast arguments.
A :class:`Metric` holds both halves: ``compute_all`` reads everything it needs to
know about a metric (its sizes per preset, whether it needs a test split, whether it
can score a shared pool of i.i.d. points, the seed and the artifact it takes or
returns) from the record instead of from the metric's name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from latentdial.training.data.base import GroundTruthData

from .utils import RepresentationFn, sample_points

#: (dataset, representation_fn, rng, **sizes_and_options) -> the pure function's positional inputs.
Sampler = Callable[..., tuple[np.ndarray, ...]]
#: (*inputs, **options) -> {score: float}, or ({score: float}, artifact) when the record names an artifact.
Score = Callable[..., Any]

#: Keyword arguments that size a metric's sample (as opposed to options of how it is scored).
SIZE_KEYS = frozenset({"num_train", "num_test", "batch_size", "num_variance_estimate"})
_NOT_OPTIONS = frozenset({"dataset", "representation_fn", "rng", "seed"}) | SIZE_KEYS


def _keyword_params(fn: Callable[..., Any]) -> set[str]:
    return {p.name for p in inspect.signature(fn).parameters.values()
            if p.default is not inspect.Parameter.empty or p.kind is inspect.Parameter.KEYWORD_ONLY}


@dataclass(frozen=True)
class Metric:
    """A disentanglement metric: sampler + pure function + sizes.

    Attributes:
        name: the registry key; prefixes the metric's keys in ``compute_all``'s flat dict.
        sampler: draws and encodes what the metric scores. ``sample_points`` (i.i.d. points)
            marks a metric whose inputs a shared pool can provide.
        score: the pure function on the sampler's arrays.
        reference: sizes of disentanglement_lib's study (the "reference" preset).
        fast: the "fast" preset's changes to the reference sizes (empty: the same sizes).
        needs_test: scores on a held-out test split as well as the train points.
        seeded: ``score`` takes ``seed=``, drawn from the metric's generator after sampling.
        artifact: ``score`` also returns this array, handed back as ``"<name>.<artifact>"``.
    """

    name: str
    sampler: Sampler
    score: Score
    reference: Mapping[str, int]
    fast: Mapping[str, int] = field(default_factory=dict)
    needs_test: bool = False
    seeded: bool = False
    artifact: str | None = None

    @property
    def on_points(self) -> bool:
        """True if the metric scores i.i.d. (codes, factors) points, so it can share a pool."""
        return self.sampler is sample_points

    def sizes(self, preset: str) -> dict[str, int]:
        """The sample sizes of ``preset`` ("reference" or "fast")."""
        return {**self.reference, **(self.fast if preset == "fast" else {})}

    @property
    def options(self) -> set[str]:
        """Keyword arguments other than sizes: of the pure function, or of a metric's own sampler."""
        sampler_options = set() if self.on_points else _keyword_params(self.sampler)
        return (_keyword_params(self.score) | sampler_options) - _NOT_OPTIONS

    @property
    def accepted(self) -> set[str]:
        """Every keyword argument the metric takes."""
        return set(self.reference) | self.options

    def split(self, kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(sampler kwargs, score kwargs) of ``kwargs``; TypeError naming any the metric does not take."""
        bad = set(kwargs) - self.accepted
        if bad:
            raise TypeError(f"metric {self.name!r} takes no argument(s) {sorted(bad)}; "
                            f"it takes {sorted(self.accepted)}")
        score_params = _keyword_params(self.score)
        to_score = {k: v for k, v in kwargs.items() if k in score_params and k not in SIZE_KEYS}
        return {k: v for k, v in kwargs.items() if k not in to_score}, to_score

    def evaluate(self, inputs: tuple[np.ndarray, ...], rng: np.random.Generator,
                 **options: Any) -> tuple[dict[str, float], Any]:
        """Score sampled inputs: (scores, artifact or None). The seed, if any, comes from ``rng``."""
        if self.seeded:
            options["seed"] = int(rng.integers(2**31))
        result = self.score(*inputs, **options)
        return result if self.artifact else (result, None)

    def run(self, dataset: GroundTruthData, representation_fn: RepresentationFn, rng: np.random.Generator,
            *, preset: str = "reference", **kwargs: Any) -> tuple[dict[str, float], Any]:
        """Sample and score this metric alone: (scores, artifact or None). ``preset``'s sizes,
        overridden by ``kwargs``; sampling and then the seed draw from ``rng``."""
        sample_kwargs, score_kwargs = self.split({**self.sizes(preset), **kwargs})
        inputs = self.sampler(dataset, representation_fn, rng, **sample_kwargs)
        return self.evaluate(inputs, rng, **score_kwargs)

    def compute(self, dataset: GroundTruthData, representation_fn: RepresentationFn,
                rng: np.random.Generator, *, preset: str = "reference", **kwargs: Any) -> dict[str, float]:
        """The scores of :meth:`run`."""
        return self.run(dataset, representation_fn, rng, preset=preset, **kwargs)[0]
