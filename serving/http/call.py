"""One HTTP request's frame, shared by every route module: token, deadline, engine call, body, errors.

:meth:`HttpCall.run` asks the core's questions in the core's order before a route does any work:
the bearer token (:func:`latentdial.serving.auth.check_bearer`), the deadline (``X-Request-Timeout``
read here, decided by :meth:`Engine.deadline_after`), then :meth:`Engine.call` (readiness, drain,
the body, the cap on requests in flight, the deadline over the whole request). A
:class:`ServiceError` becomes the JSON error of :mod:`.errors`.

Bodies are read as a stream before the request takes its slot of ``max_in_flight`` (one cap over
every door), so clients that send their bodies slowly hold no slot and refuse no one; the body
must have arrived by the request's deadline (408 otherwise), and the bodies still arriving hold
at most ``max_in_flight`` x ``max_message_mb`` bytes together (429 beyond). A body is refused (413)
once above ``max_message_mb``; a JSON body also once it holds more than ``max_json_values``
values or :data:`MAX_JSON_OBJECTS` objects, counted while it streams in and before anything is
parsed. A client that hangs up mid-body is counted as CANCELLED and logged on one debug line.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from latentdial.serving.auth import check_bearer
from latentdial.serving.config import ServerConfig
from latentdial.serving.dataplane import DataPlane
from latentdial.serving.engine import Engine, ServedModel, new_request_id
from latentdial.serving.errors import InvalidArgument, Overloaded, PayloadTooLarge, ServiceError
from latentdial.serving.http.errors import BodyTimeout, ClientGone, error_response
from latentdial.serving.requests import ModelRef
from latentdial.v1 import MAX_EDITS

JSON_TYPE = "application/json"
PNG_TYPE = "image/png"
#: the OIP binary extension's header: the JSON part's length in bytes
HEADER_LENGTH = "Inference-Header-Content-Length"
#: the methods whose requests carry a body
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
#: The request's own deadline in seconds (a decimal number > 0); at most ``request_timeout_s``.
TIMEOUT_HEADER = "X-Request-Timeout"
#: Most JSON objects (``{``) in one body: a request holds one, plus at most 64 edits or pins, or a few
#: OIP tensors. Objects are the dearest thing to parse (about 140 bytes each for ``{}``).
MAX_JSON_OBJECTS = 256


class JsonBudget:
    """Counts what a JSON body holds while it streams in, without parsing it: objects (``{``) and
    values (``,`` and ``[``: an upper bound on numbers, strings and arrays, since base64 holds neither).
    Parsing costs about 100 bytes per value and 140 per object, 20 to 50 times the body's bytes, so
    these bounds, not the byte count, are what keep a small body from costing hundreds of MiB."""

    def __init__(self, max_values: int) -> None:
        self.max_values = max_values
        self.objects = 0
        self.values = 0

    def add(self, chunk: bytes) -> None:
        self.objects += chunk.count(b"{")
        self.values += chunk.count(b",") + chunk.count(b"[")
        if self.objects > MAX_JSON_OBJECTS:
            raise PayloadTooLarge(
                f"the JSON body holds more than {MAX_JSON_OBJECTS} objects; a request takes at most "
                f"{MAX_EDITS} edits or pins"
            )
        if self.values > self.max_values:
            raise PayloadTooLarge(
                f"the JSON body holds more than {self.max_values} values, this server's max_json_values; send "
                "images as PNGs (image/png, or base64 in 'images'), tensors with the OIP binary extension, "
                "or fewer items"
            )


def content_type(request: Request) -> str:
    """The request's media type, lower case, without parameters."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def timeout_s(request: Request) -> float | None:
    """The request's ``X-Request-Timeout`` in seconds, or None when it has none."""
    text = request.headers.get(TIMEOUT_HEADER.lower())
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise InvalidArgument(f"{TIMEOUT_HEADER}: {text[:40]!r} is not a number of seconds > 0")
    return value


def parse(model: type[BaseModel], raw: bytes, budget: JsonBudget | None) -> Any:
    """A JSON body as ``model``, counted first by ``budget`` (None: it was counted while it streamed
    in); InvalidArgument names the first problems. An empty body is ``{}``: the model's defaults, or
    InvalidArgument naming the fields it requires."""
    empty = not raw.strip()
    if budget is not None and not empty:
        budget.add(raw)
    try:
        return model.model_validate({}) if empty else model.model_validate_json(raw)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in e.errors()[:5]
        )
        what = "the body is empty, not" if empty else "the JSON body is not"
        raise InvalidArgument(f"{what} a valid {model.__name__}: {problems}") from None


class HttpCall:
    """What every HTTP route needs of the server: the engine, the data plane, the limits, the frame."""

    def __init__(self, engine: Engine, config: ServerConfig) -> None:
        self.engine = engine
        self.plane = DataPlane(engine)
        self.config = config
        #: bytes held by the bodies still arriving, over every request, and the most they may hold: what
        #: the in-flight cap allows for the bodies of the requests it admits
        self.arriving = 0
        self.arriving_limit = config.max_in_flight * config.max_message_bytes

    async def run(self, request: Request, name: str, fn: Callable[[], Awaitable[Response]]) -> Response:
        """Token, then the engine's call: the body read (:meth:`read_body`) before the request takes its
        slot of the in-flight cap, then the deadline over the rest of the request, then ``fn``."""
        rid = new_request_id(request.headers.get("x-request-id"))
        try:
            self.check_token(request)
            deadline = self.engine.deadline_after(timeout_s(request), capped=True)
            read = functools.partial(self.read_body, request, deadline) if request.method in BODY_METHODS else None
            async with self.engine.call(name, rid, admit_while_draining=False, deadline=deadline,
                                        before_admission=read):
                response = await fn()
        except ServiceError as e:
            return error_response(e, rid)
        response.headers["x-request-id"] = rid
        return response

    def check_token(self, request: Request) -> None:
        check_bearer(request.headers.get("authorization"), self.config.token)

    def served(self, request: Request, model: str, call: str | None = None) -> ServedModel:
        """The model version a route names (``?version=`` optional); with ``call``, FailedPrecondition
        before the body is read when the model's kind does not serve it (:meth:`DataPlane.served`)."""
        return self.plane.served(ModelRef(model, request.query_params.get("version", "")), call)

    async def read_body(self, request: Request, deadline: float) -> None:
        """Read the body into ``request.state.body`` as a stream, by ``deadline`` (else 408), refused
        (413) once it passes ``max_message_mb`` or, for a JSON body, :class:`JsonBudget`'s bounds:
        nothing is parsed before the whole body passed. The request holds no slot of the in-flight cap
        meanwhile; the bytes of every body still arriving are bounded together by
        :attr:`arriving_limit` (429 beyond), so memory stays bounded however many clients upload."""
        limit = self.config.max_message_bytes
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise PayloadTooLarge(
                f"the body has {int(length)} bytes, more than this server's max_message_mb="
                f"{self.config.max_message_mb}; send fewer or smaller images"
            )
        is_json = content_type(request) in ("", JSON_TYPE) and HEADER_LENGTH.lower() not in request.headers
        budget = JsonBudget(self.config.max_json_values) if is_json else None
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout_at(deadline):
                async for chunk in request.stream():
                    size += len(chunk)
                    self.arriving += len(chunk)
                    if size > limit:
                        raise PayloadTooLarge(
                            f"the body exceeds this server's max_message_mb={self.config.max_message_mb}; "
                            "send fewer or smaller images"
                        )
                    if self.arriving > self.arriving_limit:
                        raise Overloaded(
                            f"bodies still arriving hold more than {self.arriving_limit >> 20} MiB, this "
                            "server's max_in_flight x max_message_mb; retry shortly or on another replica"
                        )
                    if budget is not None:
                        budget.add(chunk)
                    chunks.append(chunk)
        except TimeoutError:
            raise BodyTimeout(
                f"the body had {size} bytes when the request's deadline passed; send it faster, or ask for "
                f"more time with {TIMEOUT_HEADER} (at most request_timeout_s={self.config.request_timeout_s:g})"
            ) from None
        except ClientDisconnect:
            raise ClientGone(f"the client hung up after {size} bytes of its body") from None
        finally:
            self.arriving -= size
        request.state.body = b"".join(chunks)
        request.state.json_counted = budget is not None

    def body(self, request: Request) -> bytes:
        """The request's body, read by :meth:`read_body` before the route ran."""
        return request.state.body

    def parse(self, model: type[BaseModel], raw: bytes, request: Request) -> Any:
        """``raw`` (the request's body, or a part of it) as ``model``; counted by :class:`JsonBudget`
        unless it is the whole body and was counted while it streamed in (64 MiB: 0.06 s saved on the
        loop), as an OIP binary body's JSON head was not."""
        counted = raw is request.state.body and request.state.json_counted
        return parse(model, raw, None if counted else JsonBudget(self.config.max_json_values))
