"""The one authentication decision of every port: is this the server's bearer token?

The gRPC interceptor (:mod:`server`), the HTTP door (:mod:`latentdial.serving.http.call`) and the
metrics port (:mod:`metrics`) all ask :func:`check_bearer` with the ``authorization`` value the
caller sent; only the hint in the refusal names the transport (metadata or header). The
comparison is constant-time.
"""

from __future__ import annotations

import hmac

from latentdial.serving.errors import Unauthenticated

#: What a missing or wrong token gets told on the HTTP-speaking ports.
TOKEN_HINT = "missing or wrong bearer token; send the header 'Authorization: Bearer <token>'"
#: ... and on the gRPC port.
GRPC_TOKEN_HINT = "missing or wrong bearer token; send metadata 'authorization: Bearer <token>'"


def bearer_ok(header: bytes | str | None, token: str) -> bool:
    """True when an ``authorization`` value is ``Bearer <token>`` (constant-time compare)."""
    got = header.encode() if isinstance(header, str) else (header or b"")
    return hmac.compare_digest(got, f"Bearer {token}".encode())


def check_bearer(header: bytes | str | None, token: str | None, hint: str = TOKEN_HINT) -> None:
    """Nothing when the server has no token or ``header`` carries it; Unauthenticated (with ``hint``) otherwise."""
    if token and not bearer_ok(header, token):
        raise Unauthenticated(hint)
