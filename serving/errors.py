"""Errors the service raises, each tied to a gRPC status code (docs/api.md, "Error codes").

Handlers raise these; ``service.rpc`` turns them into ``context.abort(code, message)``.
Anything else becomes INTERNAL with a request id and no stack trace.
"""

from __future__ import annotations

import grpc


class ServiceError(Exception):
    """An error with a status code and a message that says what to fix."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    #: the HTTP status of the same error (google.rpc.Code's mapping), for the HTTP front door
    http_status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND
    http_status = 404


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 400


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE
    http_status = 503


class Internal(ServiceError):
    code = grpc.StatusCode.INTERNAL
    http_status = 500


class PayloadTooLarge(ResourceExhausted):
    """A request body above ``max_message_mb`` (HTTP 413; RESOURCE_EXHAUSTED like gRPC's own limit)."""

    http_status = 413


class UnsupportedMediaType(InvalidArgument):
    """A body whose Content-Type the route does not read (HTTP 415)."""

    http_status = 415


class Overloaded(ResourceExhausted):
    """More requests in flight than ``max_in_flight`` (HTTP 429 with ``Retry-After``)."""

    #: seconds the HTTP front door asks the client to wait (``Retry-After``)
    retry_after_s = 1
