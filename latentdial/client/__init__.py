"""Python SDK of the latentdial API: ``from latentdial.client import Client``."""

from latentdial.client.aio import AsyncClient
from latentdial.client.convert import Edit, EncodeResult, ImagesResult, Pin, Traversal
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
from latentdial.client.sync import Client, LatentsSource, latents

__all__ = [
    "AsyncClient", "Client", "DeadlineExceededError", "Edit", "EncodeResult", "FailedPreconditionError",
    "ImagesResult", "InternalError", "InvalidArgumentError", "LatentDialError", "LatentsSource", "NotFoundError",
    "Pin", "ResourceExhaustedError", "Traversal", "UnauthenticatedError", "UnavailableError", "latents",
]
