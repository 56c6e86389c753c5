"""Python SDK of the latentdial API: ``from latentdial.client import Client``."""

from latentdial.client.aio import AsyncClient
from latentdial.client.convert import EncodeResult, ImagesResult, Traversal
from latentdial.client.errors import (
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    LatentDialError,
    NotFoundError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)
from latentdial.client.info import (
    BatchingInfo,
    FactorInfo,
    ModelInfo,
    ModelRef,
    ModelSummary,
    VersionStatus,
)
from latentdial.client.sync import Client, LatentsSource, latents
from latentdial.edit import Edit, Pin

__all__ = [
    "AsyncClient", "BatchingInfo", "Client", "DeadlineExceededError", "Edit", "EncodeResult", "FactorInfo",
    "FailedPreconditionError", "ImagesResult", "InternalError", "InvalidArgumentError", "LatentDialError",
    "LatentsSource", "ModelInfo", "ModelRef", "ModelSummary", "NotFoundError", "Pin", "ResourceExhaustedError",
    "Traversal", "UnauthenticatedError", "UnavailableError", "VersionStatus", "latents",
]
