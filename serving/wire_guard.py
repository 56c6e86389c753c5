"""Bound a gRPC request's repeated fields before protobuf parses it.

gRPC parses a request before its handler runs, and a parsed message can take far more memory
than its bytes: an empty ``FactorEdit`` is 2 bytes on the wire and about 60 bytes parsed, so a
64 MiB EditAttributes of empty edits would cost about 2 GiB before the handler could count them.
The handlers' own checks (64 edits, 256 traverse targets, ...) therefore run first here, on the
wire format: :class:`WireGuard` walks the serialized fields named in its spec (top-level, and
into the submessages it names), counts each repeated field's entries (a packed field by its
varints, without decoding them) and stops at the first count past its limit, so refusing costs
a walk of at most ``limit + 1`` entries. A request within every limit is then parsed as usual.

A refused request reaches its handler as a :class:`Refused` instead of a message, and the
handler's wrapper answers INVALID_ARGUMENT (:func:`latentdial.serving.grpc_call.rpc`). Bytes that
protobuf cannot parse as the method's message are refused the same way, on every method
:func:`add_guarded` registers, guarded or not: grpc would answer a parser's exception with
UNKNOWN (and the exception's class name), as though the server had failed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Union

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError

#: A spec names fields of a message: a limit on a repeated field's entries, a spec for a submessage
#: (walked into; protobuf merges repeated occurrences of it, so their counts add up), or both.
Spec = Mapping[str, Union[int, "Spec", tuple[int, "Spec"]]]

_FIXED_SIZE = {FieldDescriptor.TYPE_FIXED32: 4, FieldDescriptor.TYPE_SFIXED32: 4, FieldDescriptor.TYPE_FLOAT: 4,
               FieldDescriptor.TYPE_FIXED64: 8, FieldDescriptor.TYPE_SFIXED64: 8, FieldDescriptor.TYPE_DOUBLE: 8}
_HIGH_BYTES = bytes(range(0x80, 0x100))


@dataclass(frozen=True)
class Refused:
    """What a handler receives instead of a request that broke a limit: the message to answer with."""

    message: str


@dataclass(frozen=True)
class _Field:
    path: str
    limit: int | None
    sub: dict[int, _Field] | None  # a submessage to walk into
    packable: bool  # a numeric field that may arrive packed
    fixed: int  # bytes per packed entry, 0 for varints


class _Malformed(Exception):
    pass


def _compile(descriptor: Descriptor, spec: Spec, prefix: str = "") -> dict[int, _Field]:
    out = {}
    for name, rule in spec.items():
        fd = descriptor.fields_by_name[name]  # KeyError: a spec naming a field the message lacks
        limit, sub = (rule, None) if isinstance(rule, int) else rule if isinstance(rule, tuple) else (None, rule)
        path = prefix + name
        numeric = fd.type not in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_STRING,
                                  FieldDescriptor.TYPE_BYTES, FieldDescriptor.TYPE_GROUP)
        out[fd.number] = _Field(
            path, limit, _compile(fd.message_type, sub, path + ".") if sub else None,
            numeric and fd.is_repeated, _FIXED_SIZE.get(fd.type, 0),
        )
    return out


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value, shift = 0, 0
    while pos < end:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            break
    raise _Malformed


class WireGuard:
    """The limits of one request type, checked on its serialized bytes."""

    def __init__(self, descriptor: Descriptor, spec: Spec, *, max_fields: int | None = None) -> None:
        self.fields = _compile(descriptor, spec)
        limits = []

        def collect(fields: dict[int, _Field]) -> None:
            for f in fields.values():
                limits.append(f.limit or 0)
                if f.sub:
                    collect(f.sub)

        collect(self.fields)
        #: fields walked in all, of any number: bounds the walk of a message that repeats a singular field
        self.max_fields = max_fields or 1024 + sum(limits)

    def problem(self, data: bytes) -> str | None:
        """What is over a limit in ``data`` (None: within every limit, or malformed: protobuf will say)."""
        counts: dict[str, int] = {}
        walked = [0]
        try:
            return self._walk(data, 0, len(data), self.fields, counts, walked)
        except _Malformed:
            return None

    def _walk(self, data: bytes, pos: int, end: int, fields: dict[int, _Field], counts: dict[str, int],
              walked: list[int]) -> str | None:
        while pos < end:
            walked[0] += 1
            if walked[0] > self.max_fields:
                return f"the request has more than {self.max_fields} fields; no valid request has that many"
            key, pos = _varint(data, pos, end)
            number, wire = key >> 3, key & 7
            if wire == 0:
                _, pos = _varint(data, pos, end)
                n = 1
            elif wire == 1:
                pos, n = pos + 8, 1
            elif wire == 5:
                pos, n = pos + 4, 1
            elif wire == 2:
                length, pos = _varint(data, pos, end)
                start, pos = pos, pos + length
                if pos > end:
                    raise _Malformed
                n = 1
                f = fields.get(number)
                if f is not None and f.packable:  # packed: count the entries, never decode them
                    if f.fixed:
                        n = length // f.fixed
                    elif f.limit is not None and length > 10 * (f.limit + 1):  # a varint takes 1 to 10 bytes
                        return _over(f, None)
                    else:  # one entry per byte below 0x80 (the last byte of each varint)
                        n = len(data[start:pos].translate(None, _HIGH_BYTES))
                elif f is not None and f.sub is not None:
                    found = self._walk(data, start, pos, f.sub, counts, walked)
                    if found:
                        return found
            else:
                raise _Malformed  # groups (3, 4) or no wire type at all
            if pos > end:
                raise _Malformed
            f = fields.get(number)
            if f is not None and f.limit is not None:
                counts[f.path] = counts.get(f.path, 0) + n
                if counts[f.path] > f.limit:
                    return _over(f, counts[f.path])
        return None


def _over(f: _Field, seen: int | None) -> str:
    return f"{f.path}: at least {seen or f.limit + 1} given, more than the limit of {f.limit} per request"


def refusing_deserializer(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """``deserialize`` (a generated ``Message.FromString``) that returns a :class:`Refused` for bytes
    that are not such a message instead of raising."""
    descriptor = getattr(getattr(deserialize, "__self__", None), "DESCRIPTOR", None)
    name = descriptor.full_name if descriptor is not None else "request"

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError as e:
            return Refused(f"the request is not a valid {name} message ({e})")

    return parse


def guarded_deserializer(deserialize: Callable[[bytes], Any], guard: WireGuard) -> Callable[[bytes], Any]:
    """``deserialize`` behind ``guard``: a :class:`Refused` for a request over a limit or not parseable,
    else the message."""
    parse = refusing_deserializer(deserialize)

    def guarded(data: bytes) -> Any:
        problem = guard.problem(data)
        if problem is not None:
            return Refused(problem)
        return parse(data)

    return guarded


class _Capture:
    """Stands in for a server while a generated ``add_*Servicer_to_server`` hands over its handlers."""

    def __init__(self) -> None:
        self.service: str | None = None
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, generic_handlers) -> None:
        for h in generic_handlers:
            self.service = self.service or getattr(h, "service_name", lambda: None)()
            self.handlers = self.handlers or dict(getattr(h, "_method_handlers", {}))

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.service, self.handlers = service, dict(handlers)


def add_guarded(add_to_server: Callable[[Any, Any], None], servicer: Any, server: grpc.aio.Server,
                guards: Mapping[str, WireGuard]) -> None:
    """Register ``servicer`` as the generated ``add_to_server`` would, with ``guards[method]`` in front of
    each named method's request parser, and every parser refusing bytes it cannot parse."""
    capture = _Capture()
    add_to_server(servicer, capture)
    if capture.service is None or not capture.handlers:
        raise RuntimeError(f"{add_to_server.__name__} registered no handlers")
    unknown = set(guards) - set(capture.handlers)
    if unknown:
        raise KeyError(f"no such methods to guard: {sorted(unknown)}")
    handlers = {
        name: h._replace(request_deserializer=guarded_deserializer(h.request_deserializer, guards[name])
                         if name in guards else refusing_deserializer(h.request_deserializer))
        for name, h in capture.handlers.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(capture.service, handlers),))
    if hasattr(server, "add_registered_method_handlers"):
        server.add_registered_method_handlers(capture.service, handlers)
