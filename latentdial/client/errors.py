"""The client's exceptions, one per status code of the API, all under :class:`LatentDialError`."""

from __future__ import annotations

import grpc


class LatentDialError(Exception):
    """Base class. ``code`` is the gRPC status code name, ``details`` the server's message."""

    code: str = "UNKNOWN"

    def __init__(self, message: str, *, details: str = "", request_id: str | None = None) -> None:
        super().__init__(message)
        self.details = details or message
        self.request_id = request_id


class InvalidArgumentError(LatentDialError, ValueError):
    code = "INVALID_ARGUMENT"


class NotFoundError(LatentDialError, LookupError):
    code = "NOT_FOUND"


class FailedPreconditionError(LatentDialError):
    code = "FAILED_PRECONDITION"


class ResourceExhaustedError(LatentDialError):
    code = "RESOURCE_EXHAUSTED"


class DeadlineExceededError(LatentDialError, TimeoutError):
    code = "DEADLINE_EXCEEDED"


class UnavailableError(LatentDialError, ConnectionError):
    code = "UNAVAILABLE"


class UnauthenticatedError(LatentDialError, PermissionError):
    code = "UNAUTHENTICATED"


class InternalError(LatentDialError):
    code = "INTERNAL"


_BY_CODE = {
    cls.code: cls
    for cls in (
        InvalidArgumentError, NotFoundError, FailedPreconditionError, ResourceExhaustedError,
        DeadlineExceededError, UnavailableError, UnauthenticatedError, InternalError,
    )
}


def from_rpc_error(e: grpc.RpcError) -> LatentDialError:
    """Map a grpc.RpcError (sync or aio) to the matching LatentDialError; use as ``raise from_rpc_error(e) from e``."""
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
    details = (e.details() if hasattr(e, "details") else None) or str(code)
    rid = None
    trailing = getattr(e, "trailing_metadata", None)
    for key, value in (trailing() if callable(trailing) else None) or ():
        if key == "x-request-id":
            rid = value
    name = code.name if code is not None else "UNKNOWN"
    cls = _BY_CODE.get(name, LatentDialError)
    err = cls(f"{name}: {details}", details=details, request_id=rid)
    if cls is LatentDialError:
        err.code = name
    return err
