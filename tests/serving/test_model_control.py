"""Live model updates: versions swapped, unloaded and refused while a closed-loop client runs.

Every answer is checked against the numpy reference of the version that says it answered
(toy versions have different weights), so "answered by v" means computed by v; and v must
have been live when the request was sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fixtures.load import ClosedLoop, Outcome, wait_until
from fixtures.server import ServerThread, health_status, http_status, make_config
from fixtures.toy_model import ToyModel, build_toy_model
from grpc_health.v1 import health_pb2

from latentdial.client import (
    AsyncClient,
    Client,
    FailedPreconditionError,
    NotFoundError,
    UnauthenticatedError,
)
from latentdial.serving.config import ServerConfig
from latentdial.serving.server import LIVENESS_SERVICE

pytestmark = pytest.mark.integration

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
X = np.random.default_rng(0).random((2, 8, 8, 1), dtype=np.float32)


def states(c: Client, name: str = "toy") -> dict[str, str]:
    for m in c.list_models():
        if m.name == name:
            return {s.version: s.state for s in m.version_status}
    return {}


def refused_lines(caplog: pytest.LogCaptureFixture, key: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"refused model {key}:")]


def load_failures(server: ServerThread, model: str = "toy") -> float | None:
    return server.handle.metrics.registry.get_sample_value("latentdial_model_load_failures_total", {"model": model})


def corrupt_copy(root: Path, version: str, seed: int) -> tuple[ToyModel, bytes]:
    """A version whose decoder.onnx was cut short (a half-copied or corrupted file), built aside
    and renamed into ``root/toy/`` in one step; returns the model and the decoder's full bytes."""
    model = build_toy_model(root / ".staging", "toy", version, seed=seed)
    full = (model.path / "decoder.onnx").read_bytes()
    (model.path / "decoder.onnx").write_bytes(full[: len(full) // 2])
    model.path.rename(root / "toy" / version)
    return dataclasses.replace(model, path=root / "toy" / version), full


def reconstruct_latest(c: Client):
    return c.reconstruct(X, model="toy")


def check_answers(load: ClosedLoop, references: dict[str, ToyModel]) -> dict[str, list[Outcome]]:
    """Every answer computed by the version it names (both graphs); outcomes grouped by version."""
    by_version: dict[str, list[Outcome]] = {}
    for o in load.outcomes:
        version = o.result.model[1]
        ref = references[version]
        mean, _ = ref.encode(X.transpose(0, 3, 1, 2))
        np.testing.assert_allclose(o.result.latents, mean, atol=1e-4, err_msg=f"encoder of {version}")
        np.testing.assert_allclose(o.result.images, ref.decode(mean).transpose(0, 2, 3, 1), atol=1e-4,
                                   err_msg=f"decoder of {version}")
        by_version.setdefault(version, []).append(o)
    return by_version


def versions_sent_between(load: ClosedLoop, start: float, end: float) -> set[str]:
    return {o.result.model[1] for o in load.outcomes if start <= o.sent <= end}


# --------------------------------------------------------------- explicit --


def test_explicit_swap_unload_and_corrupt_drop_under_load_fail_no_request_and_answer_from_live_versions(
        tmp_path, caplog):
    caplog.set_level(logging.INFO)
    refs = {"1": build_toy_model(tmp_path, "toy", "1", seed=1)}
    config = make_config(tmp_path, model_control="explicit")
    with ServerThread(config) as server, Client(server.address) as admin, ClosedLoop(server.address, reconstruct_latest) as load:
        load.wait_answers(20)

        # swap: version 2 appears and is loaded; latest moves to it once it is warm
        refs["2"] = build_toy_model(tmp_path, "toy", "2", seed=2)
        t_load = time.monotonic()
        assert admin.load_model("toy", version="2") == "2"
        t_loaded = time.monotonic()
        (summary,) = admin.list_models()
        assert list(summary.versions) == ["1", "2"] and summary.latest_version == "2"
        load.wait_answers(20)

        # unload: version 1 drains and goes
        assert admin.unload_model("toy", version="1") == ["1"]
        t_unloaded = time.monotonic()
        load.wait_answers(20)

        # corrupt drop: version 3 is refused, version 2 keeps serving
        corrupt_copy(tmp_path, "3", seed=3)
        with pytest.raises(FailedPreconditionError, match="toy/3 was refused"):
            admin.load_model("toy", version="3")
        load.wait_answers(20)
        (summary,) = admin.list_models()
        assert list(summary.versions) == ["2"] and summary.latest_version == "2"
        assert states(admin) == {"2": "ready", "3": "failed"}
        assert "sha256" in {s.version: s.reason for s in summary.version_status}["3"]
        assert health_status(server.address) == SERVING
        assert health_status(server.address, "model/toy/3") == NOT_SERVING
        assert health_status(server.address, "model/toy/2") == SERVING
        failures = load_failures(server)
        t_end = time.monotonic()

    assert load.failures == [], load.failures[:5]
    by_version = check_answers(load, refs)
    assert set(by_version) == {"1", "2"}
    assert all(o.sent <= t_unloaded for o in by_version["1"]), "1 answered a request sent after its unload"
    assert all(o.sent >= t_load for o in by_version["2"]), "2 answered a request sent before its load"
    assert versions_sent_between(load, t_loaded, t_end) == {"2"}, "latest moved to 2 once it was loaded"
    assert failures == 1
    assert len(refused_lines(caplog, "toy/3")) == 1
    assert "still serving ['toy/2']" in refused_lines(caplog, "toy/3")[0]


def test_an_unloaded_version_drains_its_in_flight_request_first_and_health_follows(tmp_path):
    refs = {"1": build_toy_model(tmp_path, "toy", "1", seed=1), "2": build_toy_model(tmp_path, "toy", "2", seed=2)}
    with ServerThread(make_config(tmp_path, model_control="explicit")) as server, Client(server.address) as c:
        decoder = server.handle.engine.served("toy", "1").model.decoder
        inner = decoder.run
        started = threading.Event()

        def slow(inputs):
            started.set()
            time.sleep(1.0)
            return inner(inputs)

        decoder.run = slow
        result: list = []
        worker = threading.Thread(target=lambda: result.append(c.reconstruct(X, version="1", model="toy")))
        worker.start()
        assert started.wait(10)
        unloader = threading.Thread(target=lambda: result.append(c.unload_model("toy", version="1")))
        unloader.start()
        wait_until(lambda: states(c).get("1") == "draining", what="version 1 DRAINING")
        assert health_status(server.address, "model/toy/1") == NOT_SERVING
        assert health_status(server.address, "model/toy") == SERVING
        with pytest.raises(NotFoundError):
            c.encode(X, model="toy", version="1")  # new requests no longer resolve it
        assert c.encode(X, model="toy").model == ("toy", "2")
        worker.join(10)
        unloader.join(10)
        r = next(x for x in result if not isinstance(x, list))
        assert r.model == ("toy", "1")
        mean, _ = refs["1"].encode(X.transpose(0, 3, 1, 2))
        np.testing.assert_allclose(r.latents, mean, atol=1e-4)
        assert ["1"] in result
        assert states(c) == {"2": "ready"}

        assert c.unload_model("toy") == ["2"]
        assert health_status(server.address) == NOT_SERVING, "nothing servable: readiness NOT_SERVING"
        assert http_status(server.http_url + "/v2/health/ready") == 503
        assert health_status(server.address, LIVENESS_SERVICE) == SERVING
        assert http_status(server.http_url + "/v2/health/live") == 200
        assert health_status(server.address, "model/toy") == NOT_SERVING
        assert c.load_model("toy") == "2", "an empty version loads the newest directory"
        assert health_status(server.address) == SERVING
        assert http_status(server.http_url + "/v2/health/ready") == 200


def test_a_loading_version_is_listed_as_loading_and_not_served_until_it_is_warm(tmp_path, monkeypatch):
    from latentdial.serving import model_control

    build_toy_model(tmp_path, "toy", "1", seed=1)
    release = threading.Event()
    real_load = model_control.load_model

    def held_load(*args, **kwargs):
        release.wait(20)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(model_control, "load_model", held_load)
    with ServerThread(make_config(tmp_path, model_control="explicit")) as server, Client(server.address) as c:
        build_toy_model(tmp_path, "toy", "2", seed=2)
        loaded: list[str] = []
        loader = threading.Thread(target=lambda: loaded.append(c.load_model("toy", version="2")))
        loader.start()
        wait_until(lambda: states(c).get("2") == "loading", what="version 2 LOADING")
        assert health_status(server.address, "model/toy/2") == NOT_SERVING
        assert c.encode(X, model="toy").model == ("toy", "1"), "latest stays on 1 while 2 loads"
        release.set()
        loader.join(20)
        assert loaded == ["2"]
        assert states(c) == {"1": "ready", "2": "ready"}
        assert health_status(server.address, "model/toy/2") == SERVING
        assert c.encode(X, model="toy").model == ("toy", "2")


def test_a_pinned_default_version_answers_empty_refs_while_latest_moves(tmp_path):
    build_toy_model(tmp_path, "toy", "1", seed=1)
    config = make_config(tmp_path, model_control="explicit", default_model="toy/1")
    with ServerThread(config) as server, Client(server.address) as c:
        build_toy_model(tmp_path, "toy", "2", seed=2)
        c.load_model("toy", version="2")
        assert c.encode(X).model == ("toy", "1"), "the default model is pinned to version 1"
        assert c.encode(X, model="toy").model == ("toy", "2"), "naming the model gets its latest"
        (summary,) = c.list_models()
        assert summary.is_default and summary.default_version == "1" and summary.latest_version == "2"


def test_latest_follows_numeric_version_order_when_versions_arrive_out_of_order(tmp_path):
    build_toy_model(tmp_path, "toy", "9", seed=9)
    with ServerThread(make_config(tmp_path, model_control="explicit")) as server, Client(server.address) as c:
        for version in ("10", "2"):
            build_toy_model(tmp_path, "toy", version, seed=int(version))
            c.load_model("toy", version=version)
        (summary,) = c.list_models()
        assert list(summary.versions) == ["2", "9", "10"] and summary.latest_version == "10"
        assert c.encode(X).model == ("toy", "10")


def test_a_second_model_that_appears_does_not_take_the_default_from_the_only_one(tmp_path):
    build_toy_model(tmp_path, "toy", "1")
    with ServerThread(make_config(tmp_path, model_control="explicit")) as server, Client(server.address) as c:
        build_toy_model(tmp_path, "other", "1", seed=5)
        c.load_model("other")
        assert c.encode(X).model == ("toy", "1")
        assert {m.name: m.is_default for m in c.list_models()} == {"other": False, "toy": True}


def test_the_command_line_client_loads_unloads_and_lists_refused_versions(tmp_path):
    build_toy_model(tmp_path, "toy", "1")
    with ServerThread(make_config(tmp_path, model_control="explicit")) as server:
        build_toy_model(tmp_path, "toy", "2", seed=2)
        corrupt_copy(tmp_path, "3", seed=3)

        def client(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "latentdial.cli", "client", "--address", server.address,
                                   "--model", "toy", *args], capture_output=True, text=True, timeout=60)

        assert client("--version", "2", "load").stdout.strip() == "serving toy/2"
        refused = client("--version", "3", "load")
        assert refused.returncode == 1 and "toy/3 was refused" in refused.stderr
        assert client("--version", "1", "unload").stdout.strip() == "unloaded toy/1"
        listed = client("list").stdout
        assert "toy (default): versions ['2'], latest 2; 3 FAILED (" in listed and "sha256" in listed


def test_explicit_model_control_refuses_several_workers_whose_admin_calls_would_reach_one():
    with pytest.raises(ValueError, match="reaches one worker only"):
        ServerConfig(model_control="explicit", workers=2)
    assert ServerConfig(model_control="poll", workers=2).workers == 2


def test_admin_rpcs_need_the_token_and_explicit_mode(tmp_path):
    build_toy_model(tmp_path, "toy", "1")
    with ServerThread(make_config(tmp_path, token="s3cret")) as server:
        with Client(server.address) as anonymous, pytest.raises(UnauthenticatedError):
            anonymous.unload_model("toy")
        with Client(server.address, token="s3cret") as c:
            with pytest.raises(FailedPreconditionError, match="--model-control explicit"):
                c.unload_model("toy")
            assert [m.name for m in c.list_models()] == ["toy"]


def test_explicit_load_of_a_missing_version_is_not_found(tmp_path):
    build_toy_model(tmp_path, "toy", "1")
    with ServerThread(make_config(tmp_path, model_control="explicit")) as server, Client(server.address) as c:
        with pytest.raises(NotFoundError, match="manifest.json does not exist"):
            c.load_model("toy", version="9")
        with pytest.raises(NotFoundError, match="no served version"):
            c.unload_model("toy", version="9")


def test_the_async_client_loads_and_unloads_too(tmp_path):
    build_toy_model(tmp_path, "toy", "1")
    with ServerThread(make_config(tmp_path, model_control="explicit")) as server:
        build_toy_model(tmp_path, "toy", "2", seed=2)

        async def swap() -> tuple[str, list[str], str]:
            async with AsyncClient(server.address) as c:
                loaded = await c.load_model("toy", version="2")
                unloaded = await c.unload_model("toy", version="1")
                return loaded, unloaded, (await c.encode(X)).model[1]

        assert asyncio.run(swap()) == ("2", ["1"], "2")


# ------------------------------------------------------------------- poll --


def test_poll_serves_a_new_version_once_warm_refuses_a_half_copy_once_and_unloads_a_removed_one_under_load(
        tmp_path, caplog):
    caplog.set_level(logging.INFO)
    repo = tmp_path / "repo"
    refs = {"1": build_toy_model(repo, "toy", "1", seed=1)}
    config = make_config(repo, model_control="poll", poll_interval_s=0.05)
    with ServerThread(config) as server, Client(server.address) as c, ClosedLoop(server.address, reconstruct_latest) as load:
        load.wait_answers(20)

        # a new version copied in whole (built aside, then renamed into place)
        refs["2"] = build_toy_model(tmp_path / "staging", "toy", "2", seed=2)
        t_copy = time.monotonic()
        (tmp_path / "staging" / "toy" / "2").rename(repo / "toy" / "2")
        wait_until(lambda: c.list_models()[0].latest_version == "2", what="version 2 served")
        t_served = time.monotonic()
        load.wait_answers(20)

        # a half-copied version: refused with one line, retried once its files change, then served
        refs["3"], decoder_bytes = corrupt_copy(repo, "3", seed=3)
        wait_until(lambda: states(c).get("3") == "failed", what="version 3 refused")
        time.sleep(0.3)  # several polls: the unchanged refused copy is not tried again
        assert len(refused_lines(caplog, "toy/3")) == 1
        assert c.list_models()[0].latest_version == "2", "the previous version keeps serving"
        load.wait_answers(20)
        finished = refs["3"].path / "decoder.onnx.part"
        finished.write_bytes(decoder_bytes)
        finished.replace(refs["3"].path / "decoder.onnx")  # the copy completes
        wait_until(lambda: c.list_models()[0].latest_version == "3", what="completed version 3 served")
        load.wait_answers(20)

        # a removed version: drained and unloaded
        t_remove = time.monotonic()
        shutil.rmtree(repo / "toy" / "1")
        wait_until(lambda: "1" not in states(c), what="version 1 unloaded")
        t_removed = time.monotonic()
        load.wait_answers(20)
        assert list(c.list_models()[0].versions) == ["2", "3"]
        failures = load_failures(server)

    assert load.failures == [], load.failures[:5]
    by_version = check_answers(load, refs)
    assert set(by_version) == {"1", "2", "3"}
    assert all(o.sent >= t_copy for o in by_version["2"])
    assert all(o.sent <= t_removed for o in by_version["1"])
    assert versions_sent_between(load, t_served, t_remove) <= {"2", "3"}
    assert failures == 1
