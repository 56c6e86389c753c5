"""The core's typed results: what :mod:`dataplane` answers and every front door writes in its own format.

Model information is built here once (:func:`model_summaries`, :func:`model_info`) with everything
any door shows: shapes, factors (calibrated or hand-named), metrics, runtime, batching, provenance,
the versions and their states, the limit on items and the OIP model names. A door leaves out what
its wire format has no field for; it never computes a field of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latentdial.manifest import GRAPHS_OF_KIND
from latentdial.serving.edits import TraversalPlan
from latentdial.serving.engine import GRAPHS, Engine, ServedModel
from latentdial.serving.requests import ModelRef


@dataclass(frozen=True)
class EncodeResult:
    """Posterior mean and log-variance (N, D), a seeded sample when asked, and each factor's value."""

    model: ModelRef
    mean: np.ndarray
    log_var: np.ndarray
    sample: np.ndarray | None
    factors: dict[str, list[float]]


@dataclass(frozen=True)
class Decoded:
    """Latents (N, D) and the images (N, C, H, W) float32 they decode to."""

    model: ModelRef
    latents: np.ndarray
    images: np.ndarray


@dataclass(frozen=True)
class TraversalResult:
    """A traversal grid: images (N*T*S, C, H, W) in the order (n*T + t)*S + s, and what was swept."""

    model: ModelRef
    images: np.ndarray
    num_sources: int
    steps: int
    plan: TraversalPlan


@dataclass(frozen=True)
class Samples:
    """Images (N, C, H, W) float32 from the model's own ground-truth dataset."""

    model: ModelRef
    images: np.ndarray


@dataclass(frozen=True)
class VersionState:
    """One version's state (LOADING, READY, DRAINING, FAILED) and why, when it is not READY."""

    version: str
    state: str
    reason: str = ""


@dataclass(frozen=True)
class ModelSummary:
    """One served model: its versions, their states, whether it is the default."""

    name: str
    versions: list[str]
    latest_version: str
    is_default: bool
    default_version: str
    version_states: list[VersionState]
    oip_models: list[str]
    #: the kind of the version an empty version selects (default_version when pinned, else the latest)
    kind: str = "vae"


@dataclass(frozen=True)
class FactorInfo:
    """A named factor of the factor card; ``calibrated`` False: hand-named, moved in latent units."""

    name: str
    kind: str
    dims: list[int]
    min_value: float
    max_value: float
    values: list[float]
    labels: list[str]
    calibrated: bool


@dataclass(frozen=True)
class BatchingInfo:
    """The dynamic batching of the model's queues."""

    max_batch_size: int
    max_queue_delay_ms: float
    max_queue_size: int
    enabled: bool


@dataclass(frozen=True)
class ModelInfo:
    """Everything a door may show about one served model version. ``latent_dim`` and ``factors`` of an
    editor describe its factor codes (the classifier's output, the editor's target)."""

    model: ModelRef
    versions: list[str]
    version_states: list[VersionState]
    #: "vae" (encoder and decoder: every call) or "editor" (classifier and editor: EditAttributes on images)
    kind: str
    channels: int
    height: int
    width: int
    latent_dim: int
    factors: list[FactorInfo]
    metrics: dict[str, float]
    runtime: str
    batching: BatchingInfo
    provenance: dict[str, object]
    max_request_items: int
    oip_models: list[str]


def ref_of(s: ServedModel) -> ModelRef:
    """The resolved name and version of a served model."""
    return ModelRef(s.name, s.version)


def oip_models(name: str, kind: str = "vae") -> list[str]:
    """The Open Inference Protocol's model names of one model, one per graph of its kind:
    ``<model>.encoder``, ``<model>.decoder`` (a VAE); ``<model>.classifier``, ``<model>.editor`` (an editor)."""
    return [f"{name}.{g}" for g in GRAPHS_OF_KIND.get(kind, GRAPHS)]


def _states(engine: Engine, name: str) -> list[VersionState]:
    assert engine.repository is not None
    return [VersionState(v, st.state, st.reason) for v, st in engine.repository.statuses(name).items()]


def model_summaries(engine: Engine) -> list[ModelSummary]:
    """Every served model with its versions and their states (ListModels)."""
    repo = engine.repository
    assert repo is not None
    summaries = []
    for name in repo.names():
        pinned = (repo.default_version or "") if name == repo.default else ""
        kind = repo.get(name, pinned or repo.versions(name)[-1]).kind
        summaries.append(ModelSummary(
            name=name, versions=repo.versions(name), latest_version=repo.versions(name)[-1],
            is_default=name == repo.default, default_version=pinned, version_states=_states(engine, name),
            oip_models=oip_models(name, kind), kind=kind,
        ))
    return summaries


def model_info(engine: Engine, s: ServedModel) -> ModelInfo:
    """Everything about one served version (GetModelInfo), built once for every door."""
    m = s.model
    c, h, w = m.image_shape
    factors = []
    for f in m.card.factors if m.card else []:
        lo, hi = f.value_range
        factors.append(FactorInfo(f.name, f.kind, list(f.dims), float(lo), float(hi), [float(v) for v in f.values],
                                  list(f.labels), bool(f.calibrated)))
    b = next(iter(s.batchers.values()))  # every graph's batcher has the same settings
    assert engine.repository is not None
    return ModelInfo(
        model=ref_of(s), versions=engine.repository.versions(s.name), version_states=_states(engine, s.name),
        kind=m.kind, channels=c, height=h, width=w, latent_dim=m.latent_dim, factors=factors,
        metrics={k: float(v) for k, v in m.manifest.metrics.items()}, runtime=m.runtime_name,
        batching=BatchingInfo(b.max_batch_size, b.max_queue_delay_s * 1e3, b.max_queue_size, b.enabled),
        provenance=dict(m.manifest.provenance), max_request_items=engine.max_request_items,
        oip_models=oip_models(s.name, m.kind),
    )
