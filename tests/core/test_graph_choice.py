"""Serving runs the fastest graph file and session options on ONNX Runtime CPU, chosen by measurement.

The regression guard: an export records the choice for this host; serving loads exactly that; and
re-timing every candidate in this run, the served one is not slower than any other by more than the
noise measured in the same run (the spread of repeated timings).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fixtures.torch_run import write_run_dir

from latentdial import graph_choice
from latentdial.manifest import Manifest
from latentdial.serving.repository import SERVING_RUNTIME_OPTIONS
from latentdial.serving.runtimes import load_runtime
from latentdial.serving.runtimes.base import RuntimeOptions
from latentdial.serving.runtimes.onnxruntime_cpu import OrtCpuRuntime

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SHIPPED = Path(__file__).resolve().parents[2] / "models" / "dsprites" / "5"


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Manifest]:
    """An untrained conv64 model exported with the raw graph and this host's choice (3 rounds)."""
    from latentdial.export.bundle import export_run

    root = tmp_path_factory.mktemp("choice")
    run = write_run_dir(root / "run", channels=1, latent_dim=6, seed=0, weights_metadata={"step": "0"},
                        config={"dataset": {"name": "dsprites"}, "objective": {"name": "beta_vae"}})
    model_dir = root / "models" / "m" / "1"
    manifest = export_run(run, model_dir, exporter="torchscript", torch_program=False, choice_rounds=3,
                          report=lambda s: None)
    return model_dir, manifest


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTDIAL_GRAPH_CHOICE_CACHE", str(tmp_path / "choice-cache"))
    monkeypatch.delenv("LATENTDIAL_GRAPH_CHOICE", raising=False)


def test_export_keeps_the_raw_graph_and_records_the_winner_with_its_figures(exported):
    model_dir, manifest = exported
    manifest.verify_files(model_dir)
    assert {f.path for f in manifest.alternatives("encoder")} == {"encoder.onnx", "encoder.raw.onnx"}
    assert manifest.graph_file("encoder").path == "encoder.onnx"  # the main file is still the optimised one
    key = graph_choice.host_key()
    record = manifest.graph_choice[key]
    assert record["host"]["threads"] >= 1 and record["runtime"] == "onnxruntime-cpu"
    for graph in ("encoder", "decoder"):
        rec = record[graph]
        assert len(rec["candidates"]) == 2 * len(graph_choice.SESSION_SETS)
        best = max(rec["candidates"], key=lambda c: c["score"])
        assert (rec["file"], rec["session"]) == (best["file"], best["session"])
        assert all(c["score"] > 0 and c["spread"] >= 0 and set(c["images_per_s"]) == {"1", "64"}
                   for c in rec["candidates"])
    assert Manifest.load(model_dir).graph_choice == manifest.graph_choice  # written, and read back


@pytest.mark.slow
def test_served_choice_is_not_slower_than_any_candidate_beyond_the_noise(exported, tmp_path):
    """Re-time every candidate now; the one serving loads must be within noise of the fastest."""
    model_dir, manifest = exported
    for graph in ("encoder", "decoder"):
        rt = load_runtime(model_dir, manifest, graph, preference="onnxruntime-cpu", options=SERVING_RUNTIME_OPTIONS)
        served = (rt.path.name, rt.session_set)
        rec = manifest.graph_choice[graph_choice.host_key()][graph]
        assert served == (rec["file"], rec["session"])  # serving loads what the manifest recorded
        now = graph_choice.measure(model_dir, manifest, graph, repeats=7, window_s=0.1)
        verdict = graph_choice_verdict(now["candidates"], served, rec["candidates"])
        assert verdict is None, f"{graph}: {verdict}; now: {json.dumps(now['candidates'])}; at export: " \
                                f"{json.dumps(rec['candidates'])}"


def graph_choice_verdict(rows: list[dict], served: tuple[str, str], chosen_from: list[dict] = ()) -> str | None:
    """None when the served candidate's score is within the noise of every other's, else why not.

    A candidate's spread is (max - min) / median of its repeated rounds, the larger of this
    measurement's and the one the choice was made from (``chosen_from``: the export's, earlier in the
    same run). The noise of a comparison is the two candidates' spreads added: their ranges of
    repeated timings overlap within it.
    """
    by = {(r["file"], r["session"]): r for r in rows}
    before = {(r["file"], r["session"]): r["spread"] for r in chosen_from}

    def spread(key: tuple[str, str]) -> float:
        return max(by[key]["spread"], before.get(key, 0.0))

    mine = by[served]
    for key, other in by.items():
        noise = spread(served) + spread(key)
        if other["score"] > mine["score"] * (1 + noise):
            return (f"served {served} scores {mine['score']:.0f}, {key} {other['score']:.0f}: "
                    f"{other['score'] / mine['score'] - 1:.0%} faster, beyond the noise {noise:.0%}")
    return None


def test_the_verdict_fails_a_choice_slower_than_the_noise():
    rows = [{"file": "a.onnx", "session": "tuned", "score": 100.0, "spread": 0.05},
            {"file": "b.onnx", "session": "tuned", "score": 150.0, "spread": 0.10}]
    assert "50% faster, beyond the noise 15%" in graph_choice_verdict(rows, ("a.onnx", "tuned"))
    assert graph_choice_verdict(rows, ("b.onnx", "tuned")) is None
    export_time = [{"file": "b.onnx", "session": "tuned", "spread": 0.5}]  # noisier when the choice was made
    assert graph_choice_verdict(rows, ("a.onnx", "tuned"), export_time) is None


def test_an_older_manifest_without_a_choice_loads_and_is_measured_once_then_cached(tmp_path, caplog):
    model_dir = tmp_path / "dsprites" / "5"
    shutil.copytree(SHIPPED, model_dir)
    manifest = Manifest.load(model_dir)
    assert manifest.graph_choice == {} and all(f.variant == "" for f in manifest.files)
    assert "graph_choice" not in manifest.to_dict()
    first = graph_choice.choose(model_dir, manifest, "decoder")
    assert first[2] == "measured at load" and first[0] == "decoder.onnx" and first[1] in graph_choice.SESSION_SETS
    again = graph_choice.choose(model_dir, manifest, "decoder")
    assert again[:2] == first[:2] and again[2].startswith("cache ")
    rt = load_runtime(model_dir, manifest, "decoder", preference="onnxruntime-cpu", options=SERVING_RUNTIME_OPTIONS)
    assert rt.session_set == first[1] and f"{first[1]} options" in rt.describe()


def test_a_recorded_choice_for_this_host_is_served_without_measuring(tmp_path, monkeypatch):
    model_dir = tmp_path / "dsprites" / "5"
    shutil.copytree(SHIPPED, model_dir)
    manifest = Manifest.load(model_dir)
    key = graph_choice.host_key()
    manifest.graph_choice = {key: {"encoder": {"file": "encoder.onnx", "session": "extended"}},
                             "another host": {"decoder": {"file": "decoder.onnx", "session": "ort-default"}}}
    monkeypatch.setattr(graph_choice, "measure", lambda *a, **k: pytest.fail("measured despite a record"))
    assert graph_choice.choose(model_dir, manifest, "encoder") == (
        "encoder.onnx", "extended", "manifest")
    monkeypatch.setenv("LATENTDIAL_GRAPH_CHOICE", "off")  # another host's record does not count
    assert graph_choice.choose(model_dir, manifest, "decoder")[:2] == ("decoder.onnx",
                                                                                               "tuned")
    manifest.graph_choice[key]["encoder"]["file"] = "gone.onnx"  # a record naming an unlisted file is ignored
    assert graph_choice.recorded(manifest, "encoder", key) is None


def test_export_measures_with_the_servers_threads_and_spinning():
    assert SERVING_RUNTIME_OPTIONS == RuntimeOptions(graph_choice.SERVER_THREADS, graph_choice.SERVER_SPINNING)


def test_every_session_set_computes_the_same_outputs():
    import numpy as np

    manifest = Manifest.load(SHIPPED)
    x = np.random.default_rng(0).random((5, *manifest.image_shape), dtype=np.float32)
    outs = [OrtCpuRuntime(SHIPPED / "encoder.onnx", options=SERVING_RUNTIME_OPTIONS, session=s).run({"images": x})
            for s in graph_choice.SESSION_SETS]
    for o in outs[1:]:
        for k in o:
            np.testing.assert_allclose(o[k], outs[0][k], atol=1e-5)


def test_without_a_writable_cache_the_choice_is_kept_in_the_temporary_directory(tmp_path, monkeypatch):
    import tempfile

    model_dir = tmp_path / "dsprites" / "5"
    shutil.copytree(SHIPPED, model_dir)
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("LATENTDIAL_GRAPH_CHOICE_CACHE", str(tmp_path / "a-file" / "cache"))  # cannot be made
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    manifest = Manifest.load(model_dir)
    first = graph_choice.choose(model_dir, manifest, "encoder")
    assert first[2] == "measured at load"
    again = graph_choice.choose(model_dir, manifest, "encoder")
    assert again[:2] == first[:2] and again[2].startswith(f"cache {tmp_path / 'tmp'}")
