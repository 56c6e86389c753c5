"""Every RPC through the SDK against a real server, with exact numpy expectations from the toy model."""

from __future__ import annotations

import io
import math
import re

import numpy as np
import pytest
from fixtures.server import ServerThread, make_config
from fixtures.toy_model import build_toy_model
from PIL import Image

from latentdial.client import (
    Client,
    Edit,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    Pin,
    latents,
)
from latentdial.v1 import latentdial_pb2 as pb

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """toy/2 and toy/10 (newest: 10, with card), plain/1 (no card); default marker names toy."""
    root = tmp_path_factory.mktemp("repo")
    build_toy_model(root, "toy", "2", seed=2)
    newest = build_toy_model(root, "toy", "10", seed=10)
    plain = build_toy_model(root, "plain", "1", with_card=False, seed=5)
    (root / "default").write_text("toy\n")
    with ServerThread(make_config(root, max_request_items=64)) as server, Client(server.address) as client:
        yield server, client, newest, plain


def nchw(x_nhwc: np.ndarray) -> np.ndarray:
    return x_nhwc.transpose(0, 3, 1, 2).astype(np.float32)


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 8, 8, 1), dtype=np.float32)


# ------------------------------------------------------------------ models --
def test_list_models_orders_versions_numerically_and_marks_the_default(served):
    _, c, _, _ = served
    models = {m.name: m for m in c.list_models()}
    assert list(models["toy"].versions) == ["2", "10"]
    assert models["toy"].latest_version == "10" and models["toy"].is_default
    assert not models["plain"].is_default


def test_model_info_describes_shapes_factors_metrics_runtime_and_batching(served):
    _, c, _, _ = served
    info = c.model_info()
    assert (info.model.name, info.model.version) == ("toy", "10")
    assert (info.channels, info.height, info.width, info.latent_dim) == (1, 8, 8, 4)
    f = {x.name: x for x in info.factors}
    assert f["shape"].kind == "categorical" and list(f["shape"].labels) == ["square", "ellipse", "heart"]
    assert f["angle"].kind == "circular" and list(f["angle"].dimensions) == [2]
    assert (f["pos_x"].min_value, f["pos_x"].max_value) == (0.0, 1.0)
    assert info.metrics["mig"] == pytest.approx(0.5)
    assert info.runtime == "onnxruntime-cpu"
    assert info.batching.enabled and info.batching.max_batch_size == 64
    assert info.provenance["dataset"] == "toy"
    assert info.max_request_items == 64
    assert c.model_info("toy", version="2").model.version == "2"
    assert len(c.model_info("plain").factors) == 0


# ---------------------------------------------------------- encode/decode --
def test_encode_float_uint8_and_png_give_the_graph_posterior(served):
    _, c, m, _ = served
    x = images(5)
    mean, log_var = m.encode(nchw(x))
    r = c.encode(x)
    np.testing.assert_allclose(r.mean, mean, atol=1e-5)
    np.testing.assert_allclose(r.log_var, log_var, atol=1e-5)
    assert r.sample is None and r.model == ("toy", "10")
    u8 = (x * 255).round().astype(np.uint8)
    np.testing.assert_allclose(c.encode(u8).mean, m.encode(nchw(u8 / 255.0))[0], atol=1e-5)
    pngs = []
    for img in u8:
        buf = io.BytesIO()
        Image.fromarray(img[:, :, 0]).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    np.testing.assert_allclose(c.encode(pngs).mean, m.encode(nchw(u8 / 255.0))[0], atol=1e-5)


def test_encode_sample_is_seeded_reparameterisation(served):
    _, c, m, _ = served
    x = images(3)
    mean, log_var = m.encode(nchw(x))
    a, b, other = c.encode(x, sample=True, seed=7), c.encode(x, sample=True, seed=7), c.encode(x, sample=True, seed=8)
    eps = np.random.default_rng(7).standard_normal(mean.shape).astype(np.float32)
    np.testing.assert_allclose(a.sample, mean + np.exp(0.5 * log_var) * eps, atol=1e-5)
    np.testing.assert_array_equal(a.sample, b.sample)
    assert not np.allclose(a.sample, other.sample)


def test_decode_returns_every_output_format(served):
    _, c, m, _ = served
    z = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    want = m.decode(z).transpose(0, 2, 3, 1)
    f32 = c.decode(z)
    assert f32.dtype == np.float32 and f32.shape == (3, 8, 8, 1)
    np.testing.assert_allclose(f32, want, atol=1e-5)
    u8 = c.decode(z, output="uint8")
    assert u8.dtype == np.uint8 and np.abs(u8.astype(int) - np.rint(want * 255)).max() <= 1
    pngs = c.decode(z, output="png")
    assert len(pngs) == 3 and pngs[0][:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(pngs[1]))), u8[1, :, :, 0])
    pil = c.decode(z, output="pil")
    np.testing.assert_array_equal(np.asarray(pil[2]), u8[2, :, :, 0])


def test_reconstruct_decodes_the_mean_or_a_seeded_sample(served):
    _, c, m, _ = served
    x = images(2)
    mean, _log_var = m.encode(nchw(x))
    r = c.reconstruct(x)
    np.testing.assert_allclose(r.latents, mean, atol=1e-5)
    np.testing.assert_allclose(r.images, m.decode(mean).transpose(0, 2, 3, 1), atol=1e-5)
    s = c.reconstruct(x, sample=True, seed=3)
    np.testing.assert_array_equal(s.latents, c.encode(x, sample=True, seed=3).sample)


def test_an_older_version_is_served_by_name(served):
    _, c, m, _ = served
    x = images(1)
    assert not np.allclose(c.encode(x, version="2").mean, m.encode(nchw(x))[0], atol=1e-3)


# -------------------------------------------------------------- traversal --
def test_traverse_dimensions_follows_the_documented_grid_order(served):
    _, c, m, _ = served
    x = images(2)
    t = c.traverse(x, dims=[1, 3], start=-1.0, stop=1.0, steps=3)
    assert t.images.shape == (2, 2, 3, 8, 8, 1) and t.targets == ["dim_1", "dim_3"]
    np.testing.assert_allclose(t.values, [[-1, 0, 1], [-1, 0, 1]])
    mean = m.encode(nchw(x))[0]
    n, ti, s = 1, 1, 2  # source 1, target dim_3, value +1
    z = mean[n].copy()
    z[3] = 1.0
    np.testing.assert_allclose(t.images[n, ti, s], m.decode(z[None])[0].transpose(1, 2, 0), atol=1e-5)
    flat = c.traverse(x, dims=[1, 3], start=-1.0, stop=1.0, steps=3, output="png")
    assert len(flat.images) == 12


def test_traverse_with_no_targets_sweeps_every_dimension_over_minus_two_to_two(served):
    _, c, _, _ = served
    t = c.traverse(latents(np.zeros((1, 4))), steps=5)
    assert t.targets == ["dim_0", "dim_1", "dim_2", "dim_3"]
    np.testing.assert_allclose(t.values[0], [-2, -1, 0, 1, 2])


def test_traverse_factors_uses_the_calibrated_range(served):
    _, c, m, _ = served
    z0 = np.zeros((1, 4), np.float32)
    t = c.traverse(latents(z0), factors=["pos_x", "shape", "angle"], steps=4)
    np.testing.assert_allclose(t.values[0], [0, 1 / 3, 2 / 3, 1], atol=1e-6)
    assert set(t.values[1]) <= {0.0, 1.0, 2.0}  # categorical steps snap to categories
    np.testing.assert_allclose(t.values[2], [0, math.pi / 2, math.pi, 3 * math.pi / 2], atol=1e-5)
    z = z0.copy()
    z[0, 0] = 1.0  # pos_x = 1 -> latent 1 on dim 0
    np.testing.assert_allclose(t.images[0, 0, 3], m.decode(z)[0].transpose(1, 2, 0), atol=1e-5)


# ------------------------------------------------------------------ edits --
def test_edit_by_factor_uses_the_calibration_table(served):
    _, c, m, _ = served
    z0 = np.zeros((2, 4), np.float32)
    r = c.edit(latents(z0), {"pos_x": 0.25, "shape": "heart"})
    np.testing.assert_allclose(r.latents[:, :2], [[-0.5, 1.5], [-0.5, 1.5]])
    np.testing.assert_allclose(r.images, m.decode(r.latents).transpose(0, 2, 3, 1), atol=1e-5)


def test_edits_apply_in_order_with_shift_wrapping_circular_factors(served):
    _, c, _, _ = served
    z0 = np.zeros((1, 4), np.float32)
    edits = [
        Edit(factor="angle", set_value=3 * math.pi / 2),  # latent 3
        Edit(factor="angle", shift=math.pi),  # wraps to pi/2 -> latent 1
        Edit(factor="pos_x", set_latent=0.3),
        Edit(dimension=3, set_value=2.0),
        Edit(dimension=3, shift=-0.5),
    ]
    r = c.edit(latents(z0), edits)
    np.testing.assert_allclose(r.latents[0], [0.3, 0.0, 1.0, 1.5], atol=1e-6)


def test_a_shift_of_zero_leaves_the_latents_where_they_are(served):
    _, c, _, _ = served
    z0 = np.array([[0.3, 0.4, 2.6, 0.7], [-0.8, -1.2, 0.2, 0.0]], np.float32)  # between grid entries
    r = c.edit(latents(z0), [Edit(factor=f, shift=0.0) for f in ("pos_x", "shape", "angle")])
    np.testing.assert_allclose(r.latents, z0, atol=1e-6)


def test_a_shift_interpolates_the_calibration_table_between_grid_values(served):
    _, c, _, _ = served
    z0 = np.array([[0.3, 0.0, 2.5, 0.0]], np.float32)  # pos_x 0.65 and angle 5pi/4: off the grid
    r = c.edit(latents(z0), [Edit(factor="pos_x", shift=0.1), Edit(factor="angle", shift=math.pi / 4)])
    np.testing.assert_allclose(r.latents[0], [0.5, 0.0, 3.0, 0.0], atol=1e-6)  # 0.75 and 3pi/2
    clipped = c.edit(latents(z0), [Edit(factor="pos_x", shift=5.0)])
    np.testing.assert_allclose(clipped.latents[0, 0], 1.0, atol=1e-6)  # pos_x 1.0: the end of the range


def test_too_many_edits_or_pins_are_invalid_argument_naming_the_limit(served):
    _, c, _, _ = served
    from latentdial.serving.edits import MAX_EDITS

    z = latents(np.zeros((1, 4)))
    ok = c.edit(z, [Edit(dimension=0, shift=1.0)] * MAX_EDITS)
    assert ok.latents[0, 0] == pytest.approx(MAX_EDITS)
    # counted on the wire before the request is parsed (serving/wire_guard.py): "at least", not how many
    with pytest.raises(InvalidArgumentError, match=rf"edits: at least {MAX_EDITS + 1} given.*limit of {MAX_EDITS}"):
        c.edit(z, [Edit(dimension=0, shift=1.0)] * (MAX_EDITS + 1))
    with pytest.raises(InvalidArgumentError, match=rf"pins: at least {MAX_EDITS + 1} given.*limit of {MAX_EDITS}"):
        c.generate(1, pins=[Pin(dimension=0, value=1.0)] * 10_000)


def test_edit_from_images_encodes_then_edits(served):
    _, c, m, _ = served
    x = images(2)
    r = c.edit(x, [Edit(dimension=0, set_value=0.0)])
    want = m.encode(nchw(x))[0]
    want[:, 0] = 0.0
    np.testing.assert_allclose(r.latents, want, atol=1e-5)


def test_unknown_factor_is_invalid_argument_listing_the_valid_ones(served):
    _, c, _, _ = served
    with pytest.raises(InvalidArgumentError, match=r"unknown factor 'colour'.*pos_x.*shape.*angle"):
        c.edit(images(1), {"colour": 0.5})


def test_edit_by_name_on_a_model_without_card_is_failed_precondition(served):
    _, c, _plain, _ = served
    with pytest.raises(FailedPreconditionError, match="no factor card"):
        c.edit(images(1), {"scale": 0.5}, model="plain")
    r = c.edit(latents(np.zeros((1, 4))), {2: 1.25}, model="plain")  # dimensions still work
    assert r.latents[0, 2] == pytest.approx(1.25)


def test_bad_factor_values_and_labels_are_invalid_argument(served):
    _, c, _, _ = served
    z = latents(np.zeros((1, 4)))
    with pytest.raises(InvalidArgumentError, match="outside"):
        c.edit(z, {"pos_x": 5.0})
    with pytest.raises(InvalidArgumentError, match="labels"):
        c.edit(z, {"shape": "triangle"})
    with pytest.raises(InvalidArgumentError, match="dimension 9"):
        c.edit(z, {9: 1.0})


# -------------------------------------------------------------- generation --
def test_generate_is_seeded_scaled_by_temperature_and_honours_pins(served):
    _, c, m, _ = served
    a = c.generate(4, seed=11, pins=[Pin(factor="shape", label="square"), Pin(dimension=3, value=0.5)])
    b = c.generate(4, seed=11, pins={"shape": "square", 3: 0.5})
    np.testing.assert_array_equal(a.latents, b.latents)
    prior = np.random.default_rng(11).standard_normal((4, 4)).astype(np.float32)
    np.testing.assert_allclose(a.latents[:, [0, 2]], prior[:, [0, 2]], atol=1e-6)
    np.testing.assert_allclose(a.latents[:, 1], -1.5)
    np.testing.assert_allclose(a.latents[:, 3], 0.5)
    np.testing.assert_allclose(a.images, m.decode(a.latents).transpose(0, 2, 3, 1), atol=1e-5)
    cold = c.generate(2, seed=11, temperature=0.0, pins=[Pin(factor="pos_x", latent=0.7)])
    np.testing.assert_allclose(cold.latents, [[0.7, 0, 0, 0], [0.7, 0, 0, 0]])


def test_generate_count_outside_limits_is_invalid_argument(served):
    _, c, _, _ = served
    with pytest.raises(InvalidArgumentError, match=r"1\.\.64"):
        c.generate(65)


# ------------------------------------------------------------------ errors --
def test_unknown_model_or_version_gives_not_found_listing_what_exists(served):
    _, c, _, _ = served
    with pytest.raises(NotFoundError, match=r"'nope'.*\['plain', 'toy'\]"):
        c.encode(images(1), model="nope")
    with pytest.raises(NotFoundError, match=r"version '3'.*\['2', '10'\]"):
        c.model_info("toy", version="3")


def raw_stub(server):
    import grpc

    from latentdial.v1 import latentdial_pb2_grpc as pb_grpc

    ch = grpc.insecure_channel(server.address)
    return ch, pb_grpc.LatentDialStub(ch)


@pytest.mark.parametrize(
    ("tensor", "pattern"),
    [
        (pb.Tensor(dtype=pb.DATA_TYPE_FLOAT32, shape=[1, 4, 4, 1], raw=bytes(64)), r"\(N, 8, 8, 1\)"),
        (pb.Tensor(dtype=pb.DATA_TYPE_FLOAT32, shape=[1, 8, 8, 1], raw=bytes(10)), "needs 256"),
        (pb.Tensor(dtype=pb.DATA_TYPE_UNSPECIFIED, shape=[1, 8, 8, 1], raw=bytes(64)), "UINT8 or FLOAT32"),
        (pb.Tensor(dtype=pb.DATA_TYPE_FLOAT32, shape=[1, 8, 8, 1],
                   raw=np.full(64, 2.0, np.float32).tobytes()), r"\[0, 1\]"),
        (pb.Tensor(dtype=pb.DATA_TYPE_FLOAT32, shape=[1, 8, 8, 1],
                   raw=np.full(64, np.nan, np.float32).tobytes()), "NaN"),
        (pb.Tensor(dtype=pb.DATA_TYPE_UINT8, shape=[65, 8, 8, 1], raw=bytes(65 * 64)), "max_request_items=64"),
        (pb.Tensor(dtype=pb.DATA_TYPE_UINT8, shape=[0, 8, 8, 1], raw=b""), "empty"),
    ],
)
def test_malformed_image_tensors_are_invalid_argument_saying_what_to_fix(served, tensor, pattern):
    import grpc

    server, _, _, _ = served
    ch, stub = raw_stub(server)
    with ch, pytest.raises(grpc.RpcError) as e:
        stub.Encode(pb.EncodeRequest(images=pb.ImageBatch(tensor=tensor)), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert re.search(pattern, e.value.details()), e.value.details()


def test_bad_png_and_nan_latents_are_invalid_argument(served):
    _, c, _, _ = served
    with pytest.raises(InvalidArgumentError, match="not a readable PNG"):
        c.encode([b"\x89PNG\r\n\x1a\nnot really"])
    import grpc

    server = served[0]
    ch, stub = raw_stub(server)
    bad = pb.Tensor(dtype=pb.DATA_TYPE_FLOAT32, shape=[1, 4], raw=np.array([0, np.inf, 0, 0], np.float32).tobytes())
    with ch, pytest.raises(grpc.RpcError) as e:
        stub.Decode(pb.DecodeRequest(latents=bad), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "NaN or inf" in e.value.details()
    with pytest.raises(InvalidArgumentError, match=r"\(N, 4\)"):
        c.decode(np.zeros((1, 5), np.float32))


def test_a_png_declaring_a_huge_size_is_invalid_argument_naming_the_size_limit(served):
    _, c, _, _ = served
    from fixtures.png import png_declaring

    with pytest.raises(InvalidArgumentError, match=r"images\[0\]: PNG declares more pixels than the size limit "
                                                   r"of [\d,]+ pixels; this model takes 8x8"):
        c.encode([png_declaring(30_000, 30_000)])
    with pytest.raises(InvalidArgumentError, match="PNG is 20000x1; this model wants 8x8"):
        c.encode([png_declaring(20_000, 1)])


def test_traverse_steps_and_grid_size_are_checked(served):
    _, c, _, _ = served
    z = latents(np.zeros((1, 4)))
    with pytest.raises(InvalidArgumentError, match="2..64"):
        c.traverse(z, dims=[0], steps=65)
    with pytest.raises(InvalidArgumentError, match="max_request_items"):
        c.traverse(latents(np.zeros((8, 4))), steps=10)


def test_a_runtime_failure_is_internal_with_a_request_id_and_no_trace(served, monkeypatch):
    server, c, _, _plain = served

    def broken(inputs):
        raise RuntimeError("secret stack detail")

    with monkeypatch.context() as patch:
        patch.setattr(server.handle.engine.served("plain", "1").runtime("decoder"), "run", broken)
        with pytest.raises(InternalError) as e:
            c.decode(np.zeros((1, 4)), model="plain")
    assert "request id" in e.value.details and "secret" not in e.value.details
    assert "Traceback" not in e.value.details and e.value.request_id
    assert c.decode(np.zeros((1, 4)), model="plain").shape == (1, 8, 8, 1)
