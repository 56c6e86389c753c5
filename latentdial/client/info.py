"""What ``list_models`` and ``model_info`` return: small frozen dataclasses, no protobuf.

Enum values arrive as lower-case strings ("ready", "categorical"); repeated fields as
tuples; maps as dicts. Each class has ``from_proto`` for the wire message it mirrors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from latentdial.v1 import latentdial_pb2 as pb


def _enum_name(enum: Any, value: int, prefix: str) -> str:
    """pb.VERSION_STATE_READY -> "ready"; a value this client does not know -> "unknown(7)"."""
    try:
        return enum.Name(value).removeprefix(prefix).lower()
    except ValueError:
        return f"unknown({value})"


def _model_kind(value: int) -> str:
    """pb.MODEL_KIND_EDITOR -> "editor"; servers before model kinds served VAEs only (unspecified -> "vae")."""
    kind = _enum_name(pb.ModelKind, value, "MODEL_KIND_")
    return "vae" if kind == "unspecified" else kind


@dataclass(frozen=True)
class VersionStatus:
    """Where one version of a model stands: state "loading", "ready", "draining" or "failed"."""

    version: str
    state: str
    reason: str = ""  # why a failed version is not served

    @classmethod
    def from_proto(cls, m: pb.VersionStatus) -> VersionStatus:
        return cls(m.version, _enum_name(pb.VersionState, m.state, "VERSION_STATE_"), m.reason)


@dataclass(frozen=True)
class ModelSummary:
    """One served model, as ``list_models`` lists it."""

    name: str
    versions: tuple[str, ...]  # served versions, oldest first
    latest_version: str
    is_default: bool
    version_status: tuple[VersionStatus, ...] = ()  # every version the server knows of
    default_version: str = ""  # set when the default model is pinned to a version
    #: "vae" or "editor": what the version an unversioned call reaches is (see ``ModelInfo.kind``)
    kind: str = "vae"

    @classmethod
    def from_proto(cls, m: pb.ModelSummary) -> ModelSummary:
        return cls(m.name, tuple(m.versions), m.latest_version, m.is_default,
                   tuple(VersionStatus.from_proto(s) for s in m.version_status), m.default_version,
                   _model_kind(m.kind))


@dataclass(frozen=True)
class FactorInfo:
    """One named factor: kind "continuous", "categorical" or "circular", and its latent dimensions."""

    name: str
    kind: str
    dimensions: tuple[int, ...]  # most important first
    min_value: float
    max_value: float
    values: tuple[float, ...]  # the calibration grid
    labels: tuple[str, ...]  # categorical factors: one per value
    calibrated: bool = False  # set by value through the card; False: hand-named, moved in latent units

    @classmethod
    def from_proto(cls, m: pb.FactorInfo) -> FactorInfo:
        return cls(m.name, _enum_name(pb.FactorKind, m.kind, "FACTOR_KIND_"), tuple(m.dimensions),
                   m.min_value, m.max_value, tuple(m.values), tuple(m.labels), m.calibrated)


@dataclass(frozen=True)
class BatchingInfo:
    """The dynamic batcher's settings for the model's queues."""

    max_batch_size: int
    max_queue_delay_ms: float
    max_queue_size: int
    enabled: bool

    @classmethod
    def from_proto(cls, m: pb.BatchingInfo) -> BatchingInfo:
        return cls(m.max_batch_size, m.max_queue_delay_ms, m.max_queue_size, m.enabled)


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str


@dataclass(frozen=True)
class ModelInfo:
    """Everything a caller needs to use one model version."""

    model: ModelRef  # the resolved name and version
    channels: int
    height: int
    width: int
    latent_dim: int
    factors: tuple[FactorInfo, ...]  # empty without a factor card
    metrics: dict[str, float]
    runtime: str
    batching: BatchingInfo
    provenance: dict[str, str]
    max_request_items: int
    version_status: tuple[VersionStatus, ...] = ()  # every version of this model the server knows of
    #: "vae" (every call) or "editor" (image-to-image translation without a latent space: only
    #: ``edit`` on images; ``latent_dim`` and ``factors`` describe its factor codes)
    kind: str = "vae"

    @classmethod
    def from_proto(cls, m: pb.ModelInfo) -> ModelInfo:
        return cls(ModelRef(m.model.name, m.model.version), m.channels, m.height, m.width, m.latent_dim,
                   tuple(FactorInfo.from_proto(f) for f in m.factors), dict(m.metrics), m.runtime,
                   BatchingInfo.from_proto(m.batching), dict(m.provenance), m.max_request_items,
                   tuple(VersionStatus.from_proto(s) for s in m.version_status), _model_kind(m.kind))
