"""The core's errors: each names a transport-free :class:`ErrorKind` and a message that says what to fix.

The engine and the domain calls raise these and know no wire format (docs/api.md, "Error codes").
Each front door maps the kind onto its own status: the gRPC doors with
:func:`latentdial.serving.grpc_call.status_code`, the HTTP door with
:func:`latentdial.serving.http.errors.http_status` (a 429 carries ``Retry-After``). Anything
unexpected becomes :class:`Internal` with a request id and no stack trace (:meth:`Engine.call`).
"""

from __future__ import annotations

import enum


class ErrorKind(enum.Enum):
    """What went wrong, in the core's own words; the names are those of google.rpc.Code."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"
    #: the caller went away: counted (metrics); raised only where a door notices it first (an HTTP body
    #: whose client hung up), never answered to anyone
    CANCELLED = "CANCELLED"


class ServiceError(Exception):
    """An error with a kind and a message that says what to fix."""

    kind: ErrorKind = ErrorKind.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServiceError):
    kind = ErrorKind.INVALID_ARGUMENT


class NotFound(ServiceError):
    kind = ErrorKind.NOT_FOUND


class FailedPrecondition(ServiceError):
    kind = ErrorKind.FAILED_PRECONDITION


class ResourceExhausted(ServiceError):
    kind = ErrorKind.RESOURCE_EXHAUSTED


class Unauthenticated(ServiceError):
    kind = ErrorKind.UNAUTHENTICATED


class DeadlineExceeded(ServiceError):
    kind = ErrorKind.DEADLINE_EXCEEDED


class Unavailable(ServiceError):
    kind = ErrorKind.UNAVAILABLE


class Internal(ServiceError):
    kind = ErrorKind.INTERNAL


class PayloadTooLarge(ResourceExhausted):
    """A request body above ``max_message_mb`` (RESOURCE_EXHAUSTED like gRPC's own limit; HTTP says 413)."""


class Overloaded(ResourceExhausted):
    """More requests in flight than ``max_in_flight``; the client should retry after :attr:`retry_after_s`."""

    #: seconds a client is asked to wait before retrying (HTTP's ``Retry-After``)
    retry_after_s = 1
