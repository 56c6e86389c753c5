"""What both gRPC front doors (v1 in :mod:`service`, OIP in :mod:`oip_grpc`) share: one call's wrapper.

:func:`rpc` runs a handler inside :meth:`Engine.call` (request id, metrics, readiness, the cap on
requests in flight, the deadline) and maps the core's :class:`ErrorKind` onto ``grpc.StatusCode``
with :func:`status_code`. This is transport glue, not a door: it serves no RPC of its own.
"""

from __future__ import annotations

import functools

import grpc

from latentdial.serving.engine import Engine, new_request_id
from latentdial.serving.errors import ErrorKind, InvalidArgument, ServiceError
from latentdial.serving.wire_guard import Refused

#: the core's error kinds as gRPC status codes (the same names: google.rpc.Code)
STATUS_CODES: dict[ErrorKind, grpc.StatusCode] = {kind: grpc.StatusCode[kind.name] for kind in ErrorKind}


def status_code(e: ServiceError) -> grpc.StatusCode:
    """The gRPC status of a core error."""
    return STATUS_CODES[e.kind]


def grpc_request_id(context: grpc.aio.ServicerContext) -> str:
    """The caller's ``x-request-id`` metadata, or a new id."""
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id" and isinstance(value, str) and value:
            return new_request_id(value)
    return new_request_id()


def grpc_deadline(context: grpc.aio.ServicerContext, engine: Engine) -> float:
    """The call's deadline as ``loop.time()``: the caller's, or the server's ``request_timeout_s`` from now."""
    return engine.deadline_after(context.time_remaining())


def rpc(name: str, *, deadline: bool = True):
    """Wrap a gRPC handler in :meth:`Engine.call` and turn its ServiceError into ``context.abort``.

    The handler's object has an ``engine``. The handler runs under the call's deadline (the
    caller's, or ``request_timeout_s`` when it set none), which the domain calls read with
    :func:`~latentdial.serving.engine.current_deadline`. ``deadline=False`` (the admin RPCs: a load
    may build engines for minutes) leaves the call to the caller's own deadline. A request that
    :mod:`wire_guard` refused on its bytes arrives as a :class:`Refused` and is answered
    INVALID_ARGUMENT inside the call, so it is counted like any other.
    """

    def deco(fn):
        @functools.wraps(fn)
        async def wrapper(self, request, context: grpc.aio.ServicerContext):
            rid = grpc_request_id(context)
            try:
                until = grpc_deadline(context, self.engine) if deadline else None
                async with self.engine.call(name, rid, deadline=until):
                    if isinstance(request, Refused):  # over a limit on the wire: never parsed (wire_guard.py)
                        raise InvalidArgument(request.message)
                    return await fn(self, request, context)
            except ServiceError as e:
                context.set_trailing_metadata((("x-request-id", rid),))
                await context.abort(status_code(e), e.message)

        return wrapper

    return deco
