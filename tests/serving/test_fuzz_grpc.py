"""Hypothesis against both gRPC services of a real server: every method of latentdial v1 and of the
Open Inference Protocol (ModelInfer included), with messages drawn from the proto descriptors
themselves, and with bytes that are no message at all.

The messages are built field by field from each request type's descriptor (nested messages,
maps, oneofs, repeated fields past the wire guard's limits, shapes up to 2^63 - 1, PNG headers
declaring 2^31 - 1 pixels a side, NaN and infinities), so a field added to a proto is fuzzed
without a change here. The bar: every call ends with OK or a client error, never INTERNAL or
UNKNOWN, the process lives and its memory stays bounded.
"""

from __future__ import annotations

import grpc
import pytest
from fixtures.attack import BenignClient, RssWatch
from fixtures.png import png_declaring
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from latentdial.inference import grpc_service_pb2 as oip_pb
from latentdial.v1 import latentdial_pb2 as pb

pytestmark = pytest.mark.integration

SERVICES = [pb.DESCRIPTOR.services_by_name["LatentDial"], oip_pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]]
#: What a fuzzed call may end with besides OK: the caller's mistakes and the server's limits.
CLIENT_ERRORS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
                 grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNIMPLEMENTED}
#: The most the server's resident set may rise over the whole run (no request here is over 1 MiB).
MAX_RSS_GROWTH_MIB = 64.0

#: Names the server knows, so that drawn requests get past the lookups to the handlers' checks.
NAMES = ["", "toy", "toy.encoder", "toy.decoder", "1", "latents", "images", "mean", "log_var", "FP32", "UINT8",
         "BYTES", "INT64", "pos_x", "shape", "angle", "binary_data_size", "nope",
         "ed", "ed.classifier", "ed.editor", "ed.encoder", "codes", "edited", "scale", "heart"]
_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-2**31, 2**31 - 1), FieldDescriptor.TYPE_SINT32: (-2**31, 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-2**31, 2**31 - 1), FieldDescriptor.TYPE_INT64: (-2**63, 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-2**63, 2**63 - 1), FieldDescriptor.TYPE_SFIXED64: (-2**63, 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1), FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1), FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_blobs = st.one_of(
    st.binary(max_size=256),
    st.builds(png_declaring, st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1)),
    st.integers(0, 64).map(lambda n: bytes(4 * n)),  # float32 rows of zeros
)


def _scalar(fd: FieldDescriptor) -> st.SearchStrategy:
    if fd.type in _INT_RANGES:
        lo, hi = _INT_RANGES[fd.type]
        return st.one_of(st.integers(max(lo, -3), 12), st.sampled_from([lo, hi, 2**31 - 1, 1024, 1025]).filter(
            lambda v: lo <= v <= hi))
    if fd.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return st.floats(width=32 if fd.type == FieldDescriptor.TYPE_FLOAT else 64)
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if fd.type == FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([v.number for v in fd.enum_type.values] + [99])
    if fd.type == FieldDescriptor.TYPE_STRING:
        return st.one_of(st.sampled_from(NAMES), st.text(max_size=16))
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return _blobs
    raise AssertionError(f"no strategy for {fd.full_name}")


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy:
    """Messages of type ``descriptor`` with any subset of their fields set, nested up to 3 deep."""
    cls = message_factory.GetMessageClass(descriptor)
    fields = {}
    for fd in descriptor.fields:
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            if depth >= 3:
                continue
            entry = fd.message_type
            if entry.GetOptions().map_entry:
                key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
                vals = messages(value.message_type, depth + 1) if value.message_type else _scalar(value)
                fields[fd.name] = st.dictionaries(_scalar(key), vals, max_size=3)
                continue
            one = messages(entry, depth + 1)
        else:
            one = _scalar(fd)
        # repeated fields run past the wire guard's limits (8 shape entries, 8 tensors) now and then
        fields[fd.name] = st.lists(one, max_size=10) if fd.is_repeated else one
    return st.fixed_dictionaries({}, optional=fields).map(lambda kw: cls(**kw))


def _method_calls(service) -> list[st.SearchStrategy]:
    out = []
    for m in service.methods:
        path = f"/{service.full_name}/{m.name}"
        out.append(st.tuples(st.just(path), messages(m.input_type).map(lambda msg: msg.SerializeToString())))
    return out


def _mangled(data: bytes, cut: int, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data[: cut % (len(data) + 1)] if data else b"")
    for pos, byte in flips:
        if out:
            out[pos % len(out)] = byte
    return bytes(out)


def _latents(n: int = 1) -> pb.Tensor:
    return pb.Tensor(dtype=pb.DATA_TYPE_FLOAT32, shape=[n, 4], raw=bytes(16 * n))


_Input = oip_pb.ModelInferRequest.InferInputTensor
#: A valid request per data method: drawn fields are merged into it (scalars replaced, lists
#: extended), so that many requests are nearly valid and get past the first check to the next.
_images = pb.ImageBatch(tensor=pb.Tensor(dtype=pb.DATA_TYPE_UINT8, shape=[1, 8, 8, 1], raw=bytes(64)))
_editor_images = pb.ImageBatch(tensor=pb.Tensor(dtype=pb.DATA_TYPE_UINT8, shape=[1, 64, 64, 1], raw=bytes(4096)))
TEMPLATES = {
    "/latentdial.v1.LatentDial/Encode": pb.EncodeRequest(images=_images),
    "/latentdial.v1.LatentDial/Reconstruct": pb.ReconstructRequest(images=_images),
    "/latentdial.v1.LatentDial/Decode": pb.DecodeRequest(latents=_latents()),
    "/latentdial.v1.LatentDial/Traverse": pb.TraverseRequest(latents=_latents(), dimensions=[0], steps=4),
    "/latentdial.v1.LatentDial/EditAttributes": pb.EditAttributesRequest(
        latents=_latents(), edits=[pb.FactorEdit(factor="pos_x", shift=0.1)]),
    "/latentdial.v1.LatentDial/Generate": pb.GenerateRequest(count=2),
    "/inference.GRPCInferenceService/ModelInfer": oip_pb.ModelInferRequest(
        model_name="toy.decoder", inputs=[_Input(name="latents", datatype="FP32", shape=[1, 4])],
        raw_input_contents=[bytes(16)]),
    # the editor ``ed``: its one domain call, and its two-input graph on OIP
    "/latentdial.v1.LatentDial/EditAttributes#editor": pb.EditAttributesRequest(
        model=pb.ModelRef(name="ed"), images=_editor_images, edits=[pb.FactorEdit(factor="scale", set_value=0.5)]),
    "/inference.GRPCInferenceService/ModelInfer#editor": oip_pb.ModelInferRequest(
        model_name="ed.editor", inputs=[_Input(name="images", datatype="FP32", shape=[1, 64, 64, 1]),
                                        _Input(name="codes", datatype="FP32", shape=[1, 6])],
        raw_input_contents=[bytes(4 * 4096), bytes(24)]),
}


def _path(key: str) -> str:
    """The method path of a TEMPLATES key (``#...`` tells two templates of one method apart)."""
    return key.split("#")[0]


def _merged(template, drawn) -> bytes:
    out = type(template)()
    out.CopyFrom(template)
    out.MergeFrom(drawn)
    return out.SerializeToString()


_near_valid = [st.tuples(st.just(_path(key)), messages(t.DESCRIPTOR).map(lambda d, t=t: _merged(t, d)))
               for key, t in TEMPLATES.items()]
_paths = st.sampled_from([f"/{s.full_name}/{m.name}" for s in SERVICES for m in s.methods])
#: (method path, request bytes): a valid request with drawn fields merged in, a drawn message, a
#: drawn message truncated or with bytes flipped, or bytes that are no protobuf at all (truncated
#: varints, groups, lengths past the end)
calls = st.one_of(
    *_near_valid,
    *[c for s in SERVICES for c in _method_calls(s)],
    st.one_of(*[c for s in SERVICES for c in _method_calls(s)]).flatmap(
        lambda c: st.tuples(st.just(c[0]), st.builds(_mangled, st.just(c[1]), st.integers(0, 4096),
                                                     st.lists(st.tuples(st.integers(0, 4096), st.integers(0, 255)),
                                                              max_size=4)))),
    st.tuples(_paths, st.one_of(st.binary(max_size=64), st.sampled_from(
        [b"\xff" * 11, b"\x0a\xff\xff\xff\xff\x0f", b"\x0b" * 200 + b"\x0c" * 200, b"\x1a\x05ab"]))),
)


def _every_template(test):
    """Each template as it is, among the drawn calls (so that each is seen answered while fuzzed)."""
    for key, template in TEMPLATES.items():
        test = example(call=(_path(key), template.SerializeToString()))(test)
    return test


#: method path -> the outcomes (OK or a status code name) the fuzz test saw
OUTCOMES: dict[str, set[str]] = {}


@pytest.fixture(scope="module")
def channel(served):
    with grpc.insecure_channel(served.address) as ch:
        yield ch


@pytest.fixture(scope="module")
def watch(served):
    """The server's memory over every example of the module's fuzz test (checked at the end)."""
    with RssWatch(served.pid) as rss:
        yield rss
    print(f"\ngRPC fuzz: {rss}")
    assert rss.growth < MAX_RSS_GROWTH_MIB, str(rss)


@settings(max_examples=600, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(call=calls)
@_every_template
def test_any_request_bytes_get_ok_or_a_client_error_never_internal(served, channel, watch, call):
    path, data = call
    rpc = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    try:
        rpc(data, timeout=30)
    except grpc.RpcError as e:
        OUTCOMES.setdefault(path, set()).add(e.code().name)
        assert e.code() in CLIENT_ERRORS, (path, data[:64], e.code(), e.details())
        assert e.details(), (path, e.code())
    else:
        OUTCOMES.setdefault(path, set()).add("OK")


def test_after_the_fuzzing_the_server_lives_and_answers(served, watch):
    served.assert_alive()
    if OUTCOMES:  # the fuzz test ran: every template was answered while fuzzed, and requests got refused
        print("\n" + "\n".join(f"{path}: {sorted(seen)}" for path, seen in sorted(OUTCOMES.items())))
        assert all("OK" in OUTCOMES.get(_path(key), ()) for key in TEMPLATES), OUTCOMES
    with grpc.insecure_channel(served.address) as ch:  # and each template, the editor's too, still is
        for key, template in TEMPLATES.items():
            ch.unary_unary(_path(key), request_serializer=None, response_deserializer=None)(
                template.SerializeToString(), timeout=30)
        assert {"INVALID_ARGUMENT", "NOT_FOUND"} <= set().union(*OUTCOMES.values()), OUTCOMES
    with BenignClient(served.address, served.http_url) as benign:
        seen = benign.measure(5)
    assert set(seen["grpc"].outcomes) == {"OK"} and set(seen["http"].outcomes) == {200}, seen
