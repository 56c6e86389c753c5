"""The core's error kinds as HTTP answers: a status, a JSON body, and the headers that go with them.

Body: ``{"error": "<what to fix>", "code": "INVALID_ARGUMENT", "request_id": "..."}`` (``error`` is
where the OIP REST binding puts the message). A 429 says when to retry (``Retry-After``), a 401
which scheme to use (``WWW-Authenticate: Bearer``).
"""

from __future__ import annotations

from fastapi.responses import JSONResponse

from latentdial.serving.errors import (
    DeadlineExceeded,
    ErrorKind,
    InvalidArgument,
    PayloadTooLarge,
    ServiceError,
)

#: the core's error kinds as HTTP statuses (google.rpc.Code's mapping)
HTTP_STATUSES: dict[ErrorKind, int] = {
    ErrorKind.INVALID_ARGUMENT: 400, ErrorKind.NOT_FOUND: 404, ErrorKind.FAILED_PRECONDITION: 400,
    ErrorKind.RESOURCE_EXHAUSTED: 429, ErrorKind.UNAUTHENTICATED: 401, ErrorKind.DEADLINE_EXCEEDED: 504,
    ErrorKind.UNAVAILABLE: 503, ErrorKind.INTERNAL: 500, ErrorKind.CANCELLED: 499,
}


class UnsupportedMediaType(InvalidArgument):
    """A body whose Content-Type the route does not read (HTTP 415)."""


class BodyTimeout(DeadlineExceeded):
    """A body that had not all arrived by the request's deadline (HTTP 408: the client was too slow)."""


class ClientGone(ServiceError):
    """The client hung up before its body arrived: counted as CANCELLED, answered to nobody (499)."""

    kind = ErrorKind.CANCELLED


def http_status(e: ServiceError) -> int:
    """The HTTP status of a core error: by its kind, finer for a body too large (413), of the wrong type (415) or too slow (408)."""
    if isinstance(e, PayloadTooLarge):
        return 413
    if isinstance(e, UnsupportedMediaType):
        return 415
    if isinstance(e, BodyTimeout):
        return 408
    return HTTP_STATUSES[e.kind]


def error_response(e: ServiceError, rid: str) -> JSONResponse:
    """The JSON error body every HTTP route answers with."""
    status = http_status(e)
    headers = {"x-request-id": rid}
    if status == 429:
        headers["retry-after"] = str(getattr(e, "retry_after_s", 1))
    if status == 401:
        headers["www-authenticate"] = "Bearer"
    return JSONResponse({"error": e.message, "code": e.kind.name, "request_id": rid}, status_code=status,
                        headers=headers)
