"""The data plane answers typed requests with typed results, and refuses a request before any graph runs.

Run against a stand-in engine that records its graph calls: no server, no runtime, no wire.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest
from fixtures.toy_model import TOY_CARD

from latentdial.serving.dataplane import DataPlane
from latentdial.serving.edits import CheckedEdit
from latentdial.serving.errors import FailedPrecondition, InvalidArgument
from latentdial.serving.repository import DRAINING, READY, VersionStatus
from latentdial.serving.requests import (
    EditRequest,
    EncodeRequest,
    GenerateRequest,
    ModelRef,
    Source,
    TraverseRequest,
)
from latentdial.serving.results import model_info, model_summaries

D = 4


class StandInEngine:
    """Graphs that record their calls: the encoder returns the first D pixels, the decoder zeros."""

    max_request_items = 16

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def encode(self, s, images, deadline):
        self.calls.append("encode")
        flat = images.reshape(len(images), -1)[:, :D]
        return flat.astype(np.float32), np.zeros_like(flat, np.float32)

    async def decode(self, s, z, deadline):
        self.calls.append("decode")
        return np.zeros((len(z), 1, 8, 8), np.float32)


def served(card=TOY_CARD) -> SimpleNamespace:
    model = SimpleNamespace(card=card, latent_dim=D, image_shape=(1, 8, 8),
                            manifest=SimpleNamespace(provenance={"dataset": {"name": "toy"}}, metrics={"mig": 0.5}),
                            runtime_name="onnxruntime-cpu", kind="vae")
    batching = SimpleNamespace(max_batch_size=8, max_queue_delay_s=0.002, max_queue_size=64, enabled=True)
    s = SimpleNamespace(name="toy", version="3", kind="vae", model=model, encoder=batching,
                        batchers={"encoder": batching, "decoder": batching})
    s.serves = lambda call: s  # a VAE serves every call
    return s


def run(coro):
    return asyncio.run(coro)


def images(n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).random((n, 1, 8, 8), dtype=np.float32)


def test_an_edit_is_checked_before_the_source_is_encoded():
    engine = StandInEngine()
    with pytest.raises(InvalidArgument, match="unknown factor 'colour'"):
        run(DataPlane(engine).edit(served(), EditRequest(Source(images=images()), [CheckedEdit("colour", None, "set_value", 1)])))
    assert engine.calls == []


def test_an_edit_encodes_once_applies_once_and_decodes_once():
    engine = StandInEngine()
    x = images()
    d = run(DataPlane(engine).edit(served(), EditRequest(Source(images=x), [CheckedEdit(None, 3, "shift", 1.0)])))
    assert engine.calls == ["encode", "decode"]
    np.testing.assert_allclose(d.latents[:, 3], x.reshape(2, -1)[:, 3] + 1.0)
    assert d.model == ModelRef("toy", "3")


def test_a_traversal_too_large_for_the_server_is_refused_before_any_graph_runs():
    engine = StandInEngine()
    r = TraverseRequest(Source(latents=np.zeros((2, D), np.float32)), dims=[0, 1], steps=8)  # 2 x 2 x 8 = 32 > 16
    with pytest.raises(InvalidArgument, match="= 32 images, more than max_request_items=16"):
        run(DataPlane(engine).traverse(served(), r))
    assert engine.calls == []


def test_a_traversal_decodes_its_whole_grid_in_one_call():
    engine = StandInEngine()
    t = run(DataPlane(engine).traverse(served(), TraverseRequest(Source(latents=np.zeros((1, D), np.float32)),
                                                                 factors=["shape"], steps=3)))
    assert engine.calls == ["decode"] and t.images.shape == (3, 1, 8, 8) and t.plan.targets == ["shape"]


def test_generate_checks_its_count_and_pins_before_sampling():
    engine = StandInEngine()
    plane = DataPlane(engine)
    with pytest.raises(InvalidArgument, match=r"count=17 is outside 1\.\.16"):
        run(plane.generate(served(), GenerateRequest(count=17)))
    with pytest.raises(FailedPrecondition, match="no factor card"):
        run(plane.generate(served(card=None), GenerateRequest(pins=[CheckedEdit("pos_x", None, "set_value", 0.5)])))
    assert engine.calls == []
    d = run(plane.generate(served(), GenerateRequest(count=3, seed=1, pins=[CheckedEdit(None, 2, "set_latent", 0.5)])))
    np.testing.assert_allclose(d.latents[:, 2], 0.5)


def test_encode_reads_factor_values_and_a_sample_only_when_asked():
    engine = StandInEngine()
    plane = DataPlane(engine)
    plain = run(plane.encode(served(), EncodeRequest(images())))
    assert plain.sample is None and plain.factors == {}
    full = run(plane.encode(served(), EncodeRequest(images(), sample=True, seed=4, factor_values=True)))
    assert full.sample.shape == (2, D) and set(full.factors) == {"pos_x", "shape", "angle"}


def test_model_info_is_built_once_with_everything_any_door_shows():
    repo = SimpleNamespace(versions=lambda name: ["2", "3"], names=lambda: ["toy"], default="toy", default_version=None,
                           statuses=lambda name: {"2": VersionStatus(DRAINING), "3": VersionStatus(READY)},
                           get=lambda name, version="": served().model)
    engine = SimpleNamespace(repository=repo, max_request_items=16)
    info = model_info(engine, served())
    assert info.model == ModelRef("toy", "3") and info.versions == ["2", "3"]
    assert [(v.version, v.state) for v in info.version_states] == [("2", DRAINING), ("3", READY)]
    assert info.provenance == {"dataset": {"name": "toy"}} and info.metrics == {"mig": 0.5}
    assert [(f.name, f.calibrated) for f in info.factors] == [("pos_x", True), ("shape", True), ("angle", True)]
    assert info.batching.max_queue_delay_ms == pytest.approx(2.0) and info.max_request_items == 16
    assert info.oip_models == ["toy.encoder", "toy.decoder"]
    (summary,) = model_summaries(engine)
    assert summary.is_default and summary.latest_version == "3" and len(summary.version_states) == 2


def test_each_door_writes_the_one_model_info_without_fields_of_its_own():
    from dataclasses import fields

    from latentdial.serving.http.rest_v1 import info_json
    from latentdial.serving.service import _factor_proto

    repo = SimpleNamespace(versions=lambda name: ["3"], statuses=lambda name: {"3": VersionStatus(READY)})
    info = model_info(SimpleNamespace(repository=repo, max_request_items=16), served())
    renamed = {"version_states": "version_status"}
    assert set(info_json(info)) == {renamed.get(f.name, f.name) for f in fields(info)}
    assert info_json(info)["provenance"] == info.provenance
    assert [_factor_proto(f).calibrated for f in info.factors] == [f.calibrated for f in info.factors]
