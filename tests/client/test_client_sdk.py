"""The SDK: asyncio client, checks before sending, exception mapping, and the ``latentdial client`` command."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from latentdial.cli import main as cli_main
from latentdial.client import (
    AsyncClient,
    Client,
    Edit,
    InvalidArgumentError,
    LatentDialError,
    NotFoundError,
    Pin,
    ResourceExhaustedError,
    latents,
)
from latentdial.client.errors import from_rpc_error
from latentdial.client.sync import ChannelSettings

ROOT = Path(__file__).resolve().parents[2]


def test_async_client_matches_the_sync_client(toy_server):
    server, _ = toy_server
    x = np.random.default_rng(0).random((3, 8, 8, 1), dtype=np.float32)

    async def main():
        async with AsyncClient(server.address) as c:
            enc = await c.encode(x, sample=True, seed=1)
            out = await asyncio.gather(
                c.decode(enc.mean, output="uint8"),
                c.reconstruct(x),
                c.traverse(x[:1], factors=["shape"], steps=3),
                c.edit(x, [Edit(factor="pos_x", set_value=1.0)]),
                c.generate(2, seed=4, pins=[Pin(factor="shape", label="heart")]),
                c.list_models(),
                c.model_info(),
            )
            with pytest.raises(NotFoundError):
                await c.encode(x, model="absent")
            return enc, out

    enc, (dec, rec, trav, edit, gen, models, info) = asyncio.run(main())
    with Client(server.address) as c:
        np.testing.assert_array_equal(enc.sample, c.encode(x, sample=True, seed=1).sample)
        np.testing.assert_array_equal(dec, c.decode(enc.mean, output="uint8"))
        np.testing.assert_array_equal(rec.images, c.reconstruct(x).images)
        np.testing.assert_array_equal(trav.images, c.traverse(x[:1], factors=["shape"], steps=3).images)
        np.testing.assert_array_equal(edit.latents, c.edit(x, {"pos_x": 1.0}).latents)
        np.testing.assert_array_equal(gen.latents, c.generate(2, seed=4, pins={"shape": "heart"}).latents)
    assert models[0].name == "toy" and info.latent_dim == 4


def test_client_accepts_pil_images_single_arrays_and_returns_pil():
    from latentdial.client.convert import image_batch

    img = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8))
    b = image_batch([img, img])
    assert list(b.tensor.shape) == [2, 8, 8, 1]
    assert list(image_batch(np.zeros((8, 8, 3), np.float64)).tensor.shape) == [1, 8, 8, 3]
    assert list(image_batch(np.zeros((5, 8, 8), np.uint8)).tensor.shape) == [5, 8, 8, 1]


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (np.full((1, 8, 8, 1), 1.5, np.float32), r"\[0, 1\]"),
        (np.full((1, 8, 8, 1), np.nan, np.float32), "NaN"),
        (np.zeros((1, 8, 8, 1), np.int32), "dtype int32"),
        (np.zeros((2, 1, 8, 8, 1), np.uint8), r"\(N, H, W, C\)"),
        ([], "no images"),
    ],
)
def test_client_checks_images_before_sending(images, match):
    with Client("127.0.0.1:1") as c, pytest.raises(InvalidArgumentError, match=match):
        c.encode(images)


def test_client_checks_latents_edits_and_output_before_sending():
    with Client("127.0.0.1:1") as c:
        with pytest.raises(InvalidArgumentError, match=r"\(N, D\)"):
            c.decode(np.zeros((2, 2, 2)))
        with pytest.raises(InvalidArgumentError, match="NaN"):
            c.decode(np.array([[np.nan, 0.0]]))
        with pytest.raises(InvalidArgumentError, match="exactly one of set_value"):
            c.edit(latents(np.zeros((1, 4))), [Edit(factor="a", set_value=1.0, shift=2.0)])
        with pytest.raises(InvalidArgumentError, match="exactly one of factor or dimension"):
            c.edit(latents(np.zeros((1, 4))), [Edit(set_value=1.0)])
        with pytest.raises(InvalidArgumentError, match="output must be one of"):
            c.decode(np.zeros((1, 4)), output="jpeg")
        with pytest.raises(InvalidArgumentError, match="count"):
            c.generate(0)


def test_rpc_errors_map_to_the_sdk_hierarchy_with_the_cause_kept(toy_server):
    server, _ = toy_server
    with Client(server.address) as c, pytest.raises(InvalidArgumentError) as e:
        c.encode(np.zeros((1, 3, 3, 1), np.uint8))
    assert isinstance(e.value, ValueError) and isinstance(e.value, LatentDialError)
    assert isinstance(e.value.__cause__, grpc.RpcError)
    assert e.value.code == "INVALID_ARGUMENT" and "(N, 8, 8, 1)" in e.value.details

    class Fake(grpc.RpcError):
        def code(self):
            return grpc.StatusCode.ABORTED

        def details(self):
            return "odd"

    err = from_rpc_error(Fake())
    assert type(err) is LatentDialError and err.code == "ABORTED"


ROUND_ROBIN = ("grpc.lb_policy_name", "round_robin")


def test_channel_options_are_merged_after_the_clients_own_and_win_on_the_same_name():
    mb = 1024 * 1024
    settings = ChannelSettings(max_message_mb=2, tls_server_name="latentdial.internal")
    assert settings.options([ROUND_ROBIN, ("grpc.max_send_message_length", 5 * mb)]) == [
        ("grpc.max_receive_message_length", 2 * mb),
        ("grpc.max_send_message_length", 5 * mb),
        ("grpc.ssl_target_name_override", "latentdial.internal"),
        ROUND_ROBIN,
    ]
    assert settings.options() == settings.options([])
    with pytest.raises(TypeError, match=r"\(name, value\) pairs"):
        settings.options(["grpc.lb_policy_name=round_robin"])
    with pytest.raises(TypeError, match=r"\(name, value\) pairs"):
        Client("127.0.0.1:1", options=[("grpc.lb_policy_name",)])


def test_clients_with_extra_options_keep_their_message_size_limit(toy_server):
    server, model = toy_server
    small = np.random.default_rng(2).random((3, 8, 8, 1), dtype=np.float32)
    too_big = np.zeros((5000, 8, 8, 1), np.float32)  # 1.28 MB on the wire, over a 1 MiB limit
    with Client(server.address, max_message_mb=1, options=[ROUND_ROBIN]) as c:
        np.testing.assert_allclose(c.encode(small).mean, model.encode(small.transpose(0, 3, 1, 2))[0], atol=1e-5)
        with pytest.raises(ResourceExhaustedError, match="CLIENT: Sent message larger than max"):
            c.encode(too_big)

    async def main():
        async with AsyncClient(server.address, max_message_mb=1, options=[ROUND_ROBIN]) as c:
            mean = (await c.encode(small)).mean
            with pytest.raises(ResourceExhaustedError, match="CLIENT: Sent message larger than max"):
                await c.encode(too_big)
            return mean

    np.testing.assert_allclose(asyncio.run(main()), model.encode(small.transpose(0, 3, 1, 2))[0], atol=1e-5)


def test_client_command_writes_traversal_and_edit_grids_a_person_can_open(toy_server, tmp_path, capsys):
    server, model = toy_server

    def run_cli(*args: str) -> subprocess.CompletedProcess:
        code = cli_main(["client", *args])
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    x = (np.random.default_rng(2).random((2, 8, 8)) * 255).astype(np.uint8)
    for i, img in enumerate(x):
        Image.fromarray(img).save(tmp_path / f"in{i}.png")
    a = ["--address", server.address]
    pngs = [str(tmp_path / "in0.png"), str(tmp_path / "in1.png")]
    r = run_cli(*a, "traverse", *pngs, "--factors", "pos_x", "shape", "--steps", "5", "--out", str(tmp_path / "t.png"))
    assert r.returncode == 0, r.stderr
    assert "row pos_x: 0 0.25 0.5 0.75 1" in r.stdout
    assert Image.open(tmp_path / "t.png").size == (5 * 10, 2 * 2 * 10)  # 5 steps x (2 sources x 2 factors)
    r = run_cli(*a, "edit", *pngs, "--set", "shape=heart", "--set", "pos_x=0.5", "--out", str(tmp_path / "e.png"))
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "e.png").size == (2 * 10, 2 * 10)  # originals row + edited row
    r = run_cli(*a, "encode", *pngs, "--out", str(tmp_path / "z.npy"))
    assert r.returncode == 0, r.stderr
    z = np.load(tmp_path / "z.npy")
    np.testing.assert_allclose(z, model.encode((x / 255.0)[:, None].astype(np.float32))[0], atol=1e-5)
    r = run_cli(*a, "decode", str(tmp_path / "z.npy"), "--out", str(tmp_path / "d.npy"))
    assert r.returncode == 0 and np.load(tmp_path / "d.npy").shape == (2, 8, 8, 1)
    r = run_cli(*a, "generate", "--count", "4", "--pin", "shape=square", "--out", str(tmp_path / "g.png"))
    assert r.returncode == 0 and Image.open(tmp_path / "g.png").size == (20, 20)
    r = run_cli(*a, "info")
    assert "factor shape (categorical) dims [1]" in r.stdout and "onnxruntime-cpu" in r.stdout
    r = run_cli(*a, "edit", *pngs, "--set", "colour=1", "--out", str(tmp_path / "x.png"))
    assert r.returncode == 1 and "unknown factor 'colour'" in r.stderr


def test_client_command_runs_as_a_separate_process(toy_server):
    server, _ = toy_server
    r = subprocess.run([sys.executable, "-m", "latentdial.cli", "client", "--address", server.address, "list"],
                       capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "toy (default): versions ['1'], latest 1"


def test_list_models_and_model_info_return_dataclasses_with_no_protobuf_inside(toy_server):
    from google.protobuf.message import Message

    from latentdial.client import info as sdk_info

    server, _ = toy_server
    with Client(server.address) as c:
        models, info = c.list_models(), c.model_info()

    def no_protobuf(value) -> None:
        assert not isinstance(value, Message), type(value)
        if isinstance(value, tuple | list):
            for v in value:
                no_protobuf(v)
        elif isinstance(value, dict):
            for v in value.values():
                no_protobuf(v)
        elif hasattr(value, "__dataclass_fields__"):
            for name in value.__dataclass_fields__:
                no_protobuf(getattr(value, name))

    no_protobuf(models)
    no_protobuf(info)
    (toy,) = models
    assert isinstance(toy, sdk_info.ModelSummary) and toy.versions == ("1",) and toy.is_default
    assert all(isinstance(s, sdk_info.VersionStatus) and s.state == "ready" for s in toy.version_status)
    assert isinstance(info, sdk_info.ModelInfo) and (info.model.name, info.model.version) == ("toy", "1")
    assert isinstance(info.batching, sdk_info.BatchingInfo) and info.batching.max_batch_size >= 1
    kinds = {f.name: f.kind for f in info.factors}
    assert all(isinstance(f, sdk_info.FactorInfo) for f in info.factors)
    assert kinds["shape"] == "categorical" and kinds["angle"] == "circular"


class _Unavailable:
    """A LatentDial server whose ListModels answers UNAVAILABLE after ``delay_s``, ``fail`` times."""

    def __init__(self, delay_s: float, fail: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from latentdial.v1 import latentdial_pb2 as pb
        from latentdial.v1 import latentdial_pb2_grpc as pb_grpc

        self.calls = 0
        outer = self

        class Servicer(pb_grpc.LatentDialServicer):
            def ListModels(self, request, context):
                outer.calls += 1
                time.sleep(delay_s)
                if outer.calls <= fail:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "warming up (test)")
                return pb.ListModelsResponse(models=[pb.ModelSummary(name="m", versions=["1"])])

        self.server = grpc.server(ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_LatentDialServicer_to_server(Servicer(), self.server)
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"

    def __enter__(self):
        self.server.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop(None)


def test_one_deadline_covers_every_attempt_and_backoff_of_a_call():
    # Each attempt takes 0.4 s to fail. With a per-attempt timeout, 6 attempts and their backoff
    # would take about 4 s; one 1 s deadline for the whole call stops after the third attempt.
    with _Unavailable(delay_s=0.4, fail=100) as server, \
            Client(server.address, retries=5, retry_backoff_s=0.05) as c:
        t0 = time.monotonic()
        with pytest.raises(LatentDialError) as e:
            c.list_models(timeout_s=1.0)
        elapsed = time.monotonic() - t0
    assert e.value.code in ("DEADLINE_EXCEEDED", "UNAVAILABLE")
    assert elapsed < 1.6, f"the call took {elapsed:.2f} s past a 1 s deadline"
    assert 2 <= server.calls <= 3


def test_the_async_client_keeps_the_same_single_deadline():
    async def call(address):
        async with AsyncClient(address, retries=5, retry_backoff_s=0.05) as c:
            t0 = time.monotonic()
            with pytest.raises(LatentDialError):
                await c.list_models(timeout_s=1.0)
            return time.monotonic() - t0

    with _Unavailable(delay_s=0.4, fail=100) as server:
        elapsed = asyncio.run(call(server.address))
    assert elapsed < 1.6 and 2 <= server.calls <= 3


def test_unavailable_is_retried_while_the_deadline_allows():
    with _Unavailable(delay_s=0.0, fail=2) as server, Client(server.address, retries=3, retry_backoff_s=0.01) as c:
        assert [m.name for m in c.list_models(timeout_s=10)] == ["m"]
    assert server.calls == 3


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "soon"])
def test_a_timeout_that_is_not_a_positive_number_of_seconds_is_refused(bad):
    with pytest.raises(InvalidArgumentError, match="timeout_s must be a number of seconds > 0"):
        Client("127.0.0.1:1", timeout_s=bad)
    with Client("127.0.0.1:1") as c, pytest.raises(InvalidArgumentError, match="timeout_s must be"):
        c.list_models(timeout_s=bad)


def test_the_client_command_refuses_a_zero_timeout(capsys):
    assert cli_main(["client", "--address", "127.0.0.1:1", "--timeout-s", "0", "list"]) == 2
    assert "timeout_s must be a number of seconds > 0" in capsys.readouterr().err
