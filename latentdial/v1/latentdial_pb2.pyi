from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DataType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATA_TYPE_UNSPECIFIED: _ClassVar[DataType]
    DATA_TYPE_UINT8: _ClassVar[DataType]
    DATA_TYPE_FLOAT32: _ClassVar[DataType]

class ImageFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_FORMAT_UNSPECIFIED: _ClassVar[ImageFormat]
    IMAGE_FORMAT_UINT8: _ClassVar[ImageFormat]
    IMAGE_FORMAT_FLOAT32: _ClassVar[ImageFormat]
    IMAGE_FORMAT_PNG: _ClassVar[ImageFormat]

class VersionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERSION_STATE_UNSPECIFIED: _ClassVar[VersionState]
    VERSION_STATE_LOADING: _ClassVar[VersionState]
    VERSION_STATE_READY: _ClassVar[VersionState]
    VERSION_STATE_DRAINING: _ClassVar[VersionState]
    VERSION_STATE_FAILED: _ClassVar[VersionState]

class ModelKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_KIND_UNSPECIFIED: _ClassVar[ModelKind]
    MODEL_KIND_VAE: _ClassVar[ModelKind]
    MODEL_KIND_EDITOR: _ClassVar[ModelKind]

class FactorKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FACTOR_KIND_UNSPECIFIED: _ClassVar[FactorKind]
    FACTOR_KIND_CONTINUOUS: _ClassVar[FactorKind]
    FACTOR_KIND_CATEGORICAL: _ClassVar[FactorKind]
    FACTOR_KIND_CIRCULAR: _ClassVar[FactorKind]
DATA_TYPE_UNSPECIFIED: DataType
DATA_TYPE_UINT8: DataType
DATA_TYPE_FLOAT32: DataType
IMAGE_FORMAT_UNSPECIFIED: ImageFormat
IMAGE_FORMAT_UINT8: ImageFormat
IMAGE_FORMAT_FLOAT32: ImageFormat
IMAGE_FORMAT_PNG: ImageFormat
VERSION_STATE_UNSPECIFIED: VersionState
VERSION_STATE_LOADING: VersionState
VERSION_STATE_READY: VersionState
VERSION_STATE_DRAINING: VersionState
VERSION_STATE_FAILED: VersionState
MODEL_KIND_UNSPECIFIED: ModelKind
MODEL_KIND_VAE: ModelKind
MODEL_KIND_EDITOR: ModelKind
FACTOR_KIND_UNSPECIFIED: FactorKind
FACTOR_KIND_CONTINUOUS: FactorKind
FACTOR_KIND_CATEGORICAL: FactorKind
FACTOR_KIND_CIRCULAR: FactorKind

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "raw")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    dtype: DataType
    shape: _containers.RepeatedScalarFieldContainer[int]
    raw: bytes
    def __init__(self, dtype: _Optional[_Union[DataType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., raw: _Optional[bytes] = ...) -> None: ...

class PngImages(_message.Message):
    __slots__ = ("images",)
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, images: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ImageBatch(_message.Message):
    __slots__ = ("tensor", "png")
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    tensor: Tensor
    png: PngImages
    def __init__(self, tensor: _Optional[_Union[Tensor, _Mapping]] = ..., png: _Optional[_Union[PngImages, _Mapping]] = ...) -> None: ...

class ModelRef(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelSummary(_message.Message):
    __slots__ = ("name", "versions", "latest_version", "is_default", "version_status", "default_version", "kind")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    VERSION_STATUS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    name: str
    versions: _containers.RepeatedScalarFieldContainer[str]
    latest_version: str
    is_default: bool
    version_status: _containers.RepeatedCompositeFieldContainer[VersionStatus]
    default_version: str
    kind: ModelKind
    def __init__(self, name: _Optional[str] = ..., versions: _Optional[_Iterable[str]] = ..., latest_version: _Optional[str] = ..., is_default: _Optional[bool] = ..., version_status: _Optional[_Iterable[_Union[VersionStatus, _Mapping]]] = ..., default_version: _Optional[str] = ..., kind: _Optional[_Union[ModelKind, str]] = ...) -> None: ...

class VersionStatus(_message.Message):
    __slots__ = ("version", "state", "reason")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    version: str
    state: VersionState
    reason: str
    def __init__(self, version: _Optional[str] = ..., state: _Optional[_Union[VersionState, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelSummary]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelSummary, _Mapping]]] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ...) -> None: ...

class FactorInfo(_message.Message):
    __slots__ = ("name", "kind", "dimensions", "min_value", "max_value", "values", "labels", "calibrated")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    MIN_VALUE_FIELD_NUMBER: _ClassVar[int]
    MAX_VALUE_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CALIBRATED_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: FactorKind
    dimensions: _containers.RepeatedScalarFieldContainer[int]
    min_value: float
    max_value: float
    values: _containers.RepeatedScalarFieldContainer[float]
    labels: _containers.RepeatedScalarFieldContainer[str]
    calibrated: bool
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[FactorKind, str]] = ..., dimensions: _Optional[_Iterable[int]] = ..., min_value: _Optional[float] = ..., max_value: _Optional[float] = ..., values: _Optional[_Iterable[float]] = ..., labels: _Optional[_Iterable[str]] = ..., calibrated: _Optional[bool] = ...) -> None: ...

class BatchingInfo(_message.Message):
    __slots__ = ("max_batch_size", "max_queue_delay_ms", "max_queue_size", "enabled")
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    max_batch_size: int
    max_queue_delay_ms: float
    max_queue_size: int
    enabled: bool
    def __init__(self, max_batch_size: _Optional[int] = ..., max_queue_delay_ms: _Optional[float] = ..., max_queue_size: _Optional[int] = ..., enabled: _Optional[bool] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model", "channels", "height", "width", "latent_dim", "factors", "metrics", "runtime", "batching", "provenance", "max_request_items", "version_status", "kind")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ProvenanceEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    LATENT_DIM_FIELD_NUMBER: _ClassVar[int]
    FACTORS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    BATCHING_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    MAX_REQUEST_ITEMS_FIELD_NUMBER: _ClassVar[int]
    VERSION_STATUS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    channels: int
    height: int
    width: int
    latent_dim: int
    factors: _containers.RepeatedCompositeFieldContainer[FactorInfo]
    metrics: _containers.ScalarMap[str, float]
    runtime: str
    batching: BatchingInfo
    provenance: _containers.ScalarMap[str, str]
    max_request_items: int
    version_status: _containers.RepeatedCompositeFieldContainer[VersionStatus]
    kind: ModelKind
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., channels: _Optional[int] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., latent_dim: _Optional[int] = ..., factors: _Optional[_Iterable[_Union[FactorInfo, _Mapping]]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., runtime: _Optional[str] = ..., batching: _Optional[_Union[BatchingInfo, _Mapping]] = ..., provenance: _Optional[_Mapping[str, str]] = ..., max_request_items: _Optional[int] = ..., version_status: _Optional[_Iterable[_Union[VersionStatus, _Mapping]]] = ..., kind: _Optional[_Union[ModelKind, str]] = ...) -> None: ...

class EncodeRequest(_message.Message):
    __slots__ = ("model", "images", "sample", "seed")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    images: ImageBatch
    sample: bool
    seed: int
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., images: _Optional[_Union[ImageBatch, _Mapping]] = ..., sample: _Optional[bool] = ..., seed: _Optional[int] = ...) -> None: ...

class EncodeResponse(_message.Message):
    __slots__ = ("model", "mean", "log_var", "sample")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    LOG_VAR_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    mean: Tensor
    log_var: Tensor
    sample: Tensor
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., mean: _Optional[_Union[Tensor, _Mapping]] = ..., log_var: _Optional[_Union[Tensor, _Mapping]] = ..., sample: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class DecodeRequest(_message.Message):
    __slots__ = ("model", "latents", "output_format")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LATENTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    latents: Tensor
    output_format: ImageFormat
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., latents: _Optional[_Union[Tensor, _Mapping]] = ..., output_format: _Optional[_Union[ImageFormat, str]] = ...) -> None: ...

class DecodeResponse(_message.Message):
    __slots__ = ("model", "images")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    images: ImageBatch
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., images: _Optional[_Union[ImageBatch, _Mapping]] = ...) -> None: ...

class ReconstructRequest(_message.Message):
    __slots__ = ("model", "images", "output_format", "sample", "seed")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    images: ImageBatch
    output_format: ImageFormat
    sample: bool
    seed: int
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., images: _Optional[_Union[ImageBatch, _Mapping]] = ..., output_format: _Optional[_Union[ImageFormat, str]] = ..., sample: _Optional[bool] = ..., seed: _Optional[int] = ...) -> None: ...

class ReconstructResponse(_message.Message):
    __slots__ = ("model", "images", "latents")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    LATENTS_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    images: ImageBatch
    latents: Tensor
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., images: _Optional[_Union[ImageBatch, _Mapping]] = ..., latents: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class TraverseRequest(_message.Message):
    __slots__ = ("model", "images", "latents", "dimensions", "factors", "start", "stop", "steps", "output_format")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    LATENTS_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    FACTORS_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    images: ImageBatch
    latents: Tensor
    dimensions: _containers.RepeatedScalarFieldContainer[int]
    factors: _containers.RepeatedScalarFieldContainer[str]
    start: float
    stop: float
    steps: int
    output_format: ImageFormat
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., images: _Optional[_Union[ImageBatch, _Mapping]] = ..., latents: _Optional[_Union[Tensor, _Mapping]] = ..., dimensions: _Optional[_Iterable[int]] = ..., factors: _Optional[_Iterable[str]] = ..., start: _Optional[float] = ..., stop: _Optional[float] = ..., steps: _Optional[int] = ..., output_format: _Optional[_Union[ImageFormat, str]] = ...) -> None: ...

class TraverseResponse(_message.Message):
    __slots__ = ("model", "images", "num_sources", "num_targets", "steps", "targets", "values")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    NUM_SOURCES_FIELD_NUMBER: _ClassVar[int]
    NUM_TARGETS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    images: ImageBatch
    num_sources: int
    num_targets: int
    steps: int
    targets: _containers.RepeatedScalarFieldContainer[str]
    values: Tensor
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., images: _Optional[_Union[ImageBatch, _Mapping]] = ..., num_sources: _Optional[int] = ..., num_targets: _Optional[int] = ..., steps: _Optional[int] = ..., targets: _Optional[_Iterable[str]] = ..., values: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class FactorEdit(_message.Message):
    __slots__ = ("factor", "dimension", "set_value", "shift", "set_latent", "set_label")
    FACTOR_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    SET_VALUE_FIELD_NUMBER: _ClassVar[int]
    SHIFT_FIELD_NUMBER: _ClassVar[int]
    SET_LATENT_FIELD_NUMBER: _ClassVar[int]
    SET_LABEL_FIELD_NUMBER: _ClassVar[int]
    factor: str
    dimension: int
    set_value: float
    shift: float
    set_latent: float
    set_label: str
    def __init__(self, factor: _Optional[str] = ..., dimension: _Optional[int] = ..., set_value: _Optional[float] = ..., shift: _Optional[float] = ..., set_latent: _Optional[float] = ..., set_label: _Optional[str] = ...) -> None: ...

class EditAttributesRequest(_message.Message):
    __slots__ = ("model", "images", "latents", "edits", "output_format")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    LATENTS_FIELD_NUMBER: _ClassVar[int]
    EDITS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    images: ImageBatch
    latents: Tensor
    edits: _containers.RepeatedCompositeFieldContainer[FactorEdit]
    output_format: ImageFormat
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., images: _Optional[_Union[ImageBatch, _Mapping]] = ..., latents: _Optional[_Union[Tensor, _Mapping]] = ..., edits: _Optional[_Iterable[_Union[FactorEdit, _Mapping]]] = ..., output_format: _Optional[_Union[ImageFormat, str]] = ...) -> None: ...

class EditAttributesResponse(_message.Message):
    __slots__ = ("model", "images", "latents")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    LATENTS_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    images: ImageBatch
    latents: Tensor
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., images: _Optional[_Union[ImageBatch, _Mapping]] = ..., latents: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class LoadModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ...) -> None: ...

class LoadModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ...) -> None: ...

class UnloadModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ...) -> None: ...

class UnloadModelResponse(_message.Message):
    __slots__ = ("unloaded",)
    UNLOADED_FIELD_NUMBER: _ClassVar[int]
    unloaded: _containers.RepeatedCompositeFieldContainer[ModelRef]
    def __init__(self, unloaded: _Optional[_Iterable[_Union[ModelRef, _Mapping]]] = ...) -> None: ...

class FactorPin(_message.Message):
    __slots__ = ("factor", "dimension", "value", "latent", "label")
    FACTOR_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    LATENT_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    factor: str
    dimension: int
    value: float
    latent: float
    label: str
    def __init__(self, factor: _Optional[str] = ..., dimension: _Optional[int] = ..., value: _Optional[float] = ..., latent: _Optional[float] = ..., label: _Optional[str] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("model", "count", "seed", "pins", "temperature", "output_format")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PINS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    count: int
    seed: int
    pins: _containers.RepeatedCompositeFieldContainer[FactorPin]
    temperature: float
    output_format: ImageFormat
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., count: _Optional[int] = ..., seed: _Optional[int] = ..., pins: _Optional[_Iterable[_Union[FactorPin, _Mapping]]] = ..., temperature: _Optional[float] = ..., output_format: _Optional[_Union[ImageFormat, str]] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("model", "images", "latents")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    LATENTS_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    images: ImageBatch
    latents: Tensor
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., images: _Optional[_Union[ImageBatch, _Mapping]] = ..., latents: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...
