"""Property: malformed requests never hurt the server; a well-formed request still gets the right answer."""

from __future__ import annotations

import grpc
import numpy as np
from fixtures.png import png_declaring
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentdial.serving.edits import MAX_EDITS
from latentdial.v1 import latentdial_pb2 as pb
from latentdial.v1 import latentdial_pb2_grpc as pb_grpc

ALLOWED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION}

tensors = st.builds(
    pb.Tensor,
    dtype=st.integers(0, 5),
    shape=st.lists(st.integers(0, 12), max_size=5),
    raw=st.binary(max_size=2048),
)
refs = st.builds(pb.ModelRef, name=st.sampled_from(["", "toy", "nope"]), version=st.sampled_from(["", "1", "x"]))
#: PNGs whose header declares any size up to 2^31 - 1 a side (30000 x 30000 is Pillow's "bomb").
declared_pngs = st.builds(png_declaring, st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1))
images = st.one_of(
    st.builds(lambda t: pb.ImageBatch(tensor=t), tensors),
    st.builds(lambda b: pb.ImageBatch(png=pb.PngImages(images=b)),
              st.lists(st.one_of(st.binary(max_size=128), declared_pngs), max_size=3)),
    st.just(pb.ImageBatch()),
)
factors = st.sampled_from(["pos_x", "shape", "angle", "nope"])
finite_or_not = st.floats(allow_nan=True, allow_infinity=True)
edits = st.one_of(
    st.builds(pb.FactorEdit, factor=factors, set_value=finite_or_not),
    st.builds(pb.FactorEdit, factor=factors, shift=finite_or_not),
)
pins = st.builds(pb.FactorPin, factor=factors, value=finite_or_not)
#: up to twice the limit on edits and pins per request, most of them short
many = {"max_size": 2 * MAX_EDITS}
requests = st.one_of(
    st.builds(lambda r, i: ("Encode", pb.EncodeRequest(model=r, images=i)), refs, images),
    st.builds(lambda r, t, f: ("Decode", pb.DecodeRequest(model=r, latents=t, output_format=f)),
              refs, tensors, st.integers(0, 6)),
    st.builds(lambda r, t, d, s: ("Traverse", pb.TraverseRequest(model=r, latents=t, dimensions=d, steps=s)),
              refs, tensors, st.lists(st.integers(-3, 6), max_size=3), st.integers(-2, 80)),
    st.builds(lambda r, t, e: ("EditAttributes", pb.EditAttributesRequest(model=r, latents=t, edits=e)),
              refs, tensors, st.lists(edits, **many)),
    st.builds(lambda r, n, t, p: ("Generate", pb.GenerateRequest(model=r, count=n, temperature=t, pins=p)),
              refs, st.integers(-5, 2000), finite_or_not, st.lists(pins, **many)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(call=requests)
def test_malformed_requests_get_client_errors_and_leave_the_server_healthy(toy_server, call):
    server, model = toy_server
    method, request = call
    with grpc.insecure_channel(server.address) as ch:
        stub = pb_grpc.LatentDialStub(ch)
        try:
            getattr(stub, method)(request, timeout=10)
        except grpc.RpcError as e:
            assert e.code() in ALLOWED, (e.code(), e.details())
            assert e.details()
        # the server still answers a well-formed request correctly
        z = np.array([[0.5, -0.5, 1.0, 0.0]], np.float32)
        t = pb.Tensor(dtype=pb.DATA_TYPE_FLOAT32, shape=[1, 4], raw=z.tobytes())
        out = stub.Decode(pb.DecodeRequest(latents=t), timeout=10).images.tensor
        got = np.frombuffer(out.raw, np.float32).reshape(tuple(out.shape))
        np.testing.assert_allclose(got[0], model.decode(z)[0].transpose(1, 2, 0), atol=1e-5)


def _edit(stub, z: np.ndarray, edits: list[pb.FactorEdit]) -> np.ndarray:
    t = pb.Tensor(dtype=pb.DATA_TYPE_FLOAT32, shape=z.shape, raw=z.astype(np.float32).tobytes())
    out = stub.EditAttributes(pb.EditAttributesRequest(latents=t, edits=edits), timeout=10).latents
    return np.frombuffer(out.raw, np.float32).reshape(tuple(out.shape))


latent_rows = st.lists(st.floats(-4, 4, width=32), min_size=4, max_size=4)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(latent_rows, min_size=1, max_size=4), factor=st.sampled_from(["pos_x", "shape", "angle"]))
def test_a_shift_of_zero_by_factor_name_returns_the_latents_unchanged(toy_server, rows, factor):
    server, _ = toy_server
    z = np.asarray(rows, np.float32)
    with grpc.insecure_channel(server.address) as ch:
        got = _edit(pb_grpc.LatentDialStub(ch), z, [pb.FactorEdit(factor=factor, shift=0.0)])
    np.testing.assert_allclose(got, z, atol=1e-6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.floats(0, 1), delta=st.floats(-1, 1), angle=st.floats(0, 3 * np.pi / 2),
       to=st.floats(0, 3 * np.pi / 2), laps=st.integers(-2, 2))
def test_a_shift_lands_on_the_interpolated_value_read_back_from_the_latents(toy_server, start, delta, angle, to,
                                                                            laps):
    server, _ = toy_server
    from fixtures.toy_model import TOY_CARD

    # the toy's angle lives on one latent dimension, so its closing segment (3pi/2 -> 2pi) retraces
    # the others and reads back ambiguously: the angles drawn here stay off that segment
    pos_x, circle = TOY_CARD["pos_x"], TOY_CARD["angle"]
    turn = to - angle + 2 * np.pi * laps
    with grpc.insecure_channel(server.address) as ch:
        stub = pb_grpc.LatentDialStub(ch)
        z = _edit(stub, np.zeros((1, 4), np.float32), [pb.FactorEdit(factor="pos_x", set_value=start),
                                                       pb.FactorEdit(factor="angle", set_value=angle)])
        moved = _edit(stub, z, [pb.FactorEdit(factor="pos_x", shift=delta), pb.FactorEdit(factor="angle", shift=turn)])
    np.testing.assert_allclose(pos_x.value_from_latents(z), [start], atol=1e-5)
    np.testing.assert_allclose(pos_x.value_from_latents(moved), [np.clip(start + delta, 0, 1)], atol=1e-5)
    np.testing.assert_allclose(circle.value_from_latents(moved), [to], atol=1e-4)
