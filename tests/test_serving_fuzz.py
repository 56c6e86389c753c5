"""Property: malformed requests never hurt the server; a well-formed request still gets the right answer."""

from __future__ import annotations

import grpc
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
images = st.one_of(
    st.builds(lambda t: pb.ImageBatch(tensor=t), tensors),
    st.builds(lambda b: pb.ImageBatch(png=pb.PngImages(images=b)), st.lists(st.binary(max_size=128), max_size=3)),
    st.just(pb.ImageBatch()),
)
edits = st.builds(
    pb.FactorEdit,
    factor=st.sampled_from(["pos_x", "shape", "angle", "nope"]),
    set_value=st.floats(allow_nan=True, allow_infinity=True),
)
requests = st.one_of(
    st.builds(lambda r, i: ("Encode", pb.EncodeRequest(model=r, images=i)), refs, images),
    st.builds(lambda r, t, f: ("Decode", pb.DecodeRequest(model=r, latents=t, output_format=f)),
              refs, tensors, st.integers(0, 6)),
    st.builds(lambda r, t, d, s: ("Traverse", pb.TraverseRequest(model=r, latents=t, dimensions=d, steps=s)),
              refs, tensors, st.lists(st.integers(-3, 6), max_size=3), st.integers(-2, 80)),
    st.builds(lambda r, t, e: ("EditAttributes", pb.EditAttributesRequest(model=r, latents=t, edits=e)),
              refs, tensors, st.lists(edits, max_size=3)),
    st.builds(lambda r, n, t: ("Generate", pb.GenerateRequest(model=r, count=n, temperature=t)),
              refs, st.integers(-5, 2000), st.floats(allow_nan=True, allow_infinity=True)),
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
