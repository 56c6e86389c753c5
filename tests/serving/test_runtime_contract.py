"""Every runtime that can run here honours the Runtime contract on the same exported model.

Parity with the ONNX reference (ONNX Runtime on the fp32 graph) for EVERY batch size
from 1 to the runtime's max (9 here), non-contiguous inputs, and clear refusals.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fixtures.torch_run import write_run_dir

from latentdial.export import graphs, parity, variants
from latentdial.export.bundle import export_run
from latentdial.manifest import Manifest
from latentdial.serving.runtimes import RuntimeFailure, load_runtime
from latentdial.serving.runtimes.onnxruntime_cpu import OrtCpuRuntime
from latentdial.training.run_dir import load_run

MAX_BATCH = 9
LATENT_DIM = 6


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> tuple[Path, Manifest]:
    """An exported 3-channel model (fp32, fp16, torch programs) plus unoptimised and int8 files."""
    root = tmp_path_factory.mktemp("contract")
    run = write_run_dir(root / "run", channels=3, latent_dim=LATENT_DIM, seed=1,
                        config={"dataset": "x", "objective": "y"})
    model_dir = root / "m" / "1"
    manifest = export_run(run, model_dir, variant_names="fp16", exporter="torchscript", choice_rounds=0,
                          report=lambda s: None)
    extra = root / "extra"
    extra.mkdir()
    net = load_run(run).model
    for graph in ("encoder", "decoder"):
        module = graphs.graph_module(net, graph)
        example = graphs.example_input(graph, manifest.image_shape, LATENT_DIM)
        graphs.export_onnx(module, graph, example, extra / f"{graph}.unoptimised.onnx", exporter="torchscript")
        variants.quantise_int8(model_dir / f"{graph}.onnx", extra / f"{graph}.int8.onnx", graph,
                               manifest.image_shape, LATENT_DIM)
    return model_dir, manifest


Factory = Callable[[Path, Manifest, str], object]
RUNTIMES: dict[str, tuple[Factory, float]] = {
    # name -> (factory(model_dir, manifest, graph), tolerance against the fp32 ONNX reference)
    "ort-cpu-fp32-unoptimised": (lambda d, m, g: OrtCpuRuntime(
        d.parent.parent / "extra" / f"{g}.unoptimised.onnx", max_batch_size=MAX_BATCH, tuned=False), 1e-4),
    "ort-cpu-fp32-optimised": (lambda d, m, g: load_runtime(
        d, m, g, preference="onnxruntime-cpu", max_batch_size=MAX_BATCH), 1e-4),
    "ort-cpu-fp16": (lambda d, m, g: load_runtime(
        d, m, g, preference="onnxruntime-cpu", precision="fp16", max_batch_size=MAX_BATCH),
        variants.FP16_TOLERANCE),
    "ort-cpu-int8": (lambda d, m, g: OrtCpuRuntime(
        d.parent.parent / "extra" / f"{g}.int8.onnx", max_batch_size=MAX_BATCH), variants.INT8_TOLERANCE),
    "torch-cpu": (lambda d, m, g: load_runtime(d, m, g, preference="torch-cpu", max_batch_size=MAX_BATCH), 1e-4),
}
CASES = [(name, graph) for name in RUNTIMES for graph in ("encoder", "decoder")]


@pytest.fixture(scope="module")
def loaded(model):
    model_dir, manifest = model
    cache = {}

    def get(name: str, graph: str):
        if (name, graph) not in cache:
            cache[name, graph] = RUNTIMES[name][0](model_dir, manifest, graph)
        return cache[name, graph]

    return get


def reference(model, graph: str):
    model_dir, manifest = model
    return parity.ort_fn(model_dir / manifest.graph_file(graph).path)


def inputs_for(manifest: Manifest, graph: str, n: int, seed: int) -> np.ndarray:
    return parity.random_batch(graph, manifest.image_shape, manifest.latent_dim, n, np.random.default_rng(seed))


@pytest.mark.parametrize(("name", "graph"), CASES, ids=[f"{n}-{g}" for n, g in CASES])
def test_every_batch_size_matches_the_onnx_reference(model, loaded, name, graph):
    _, manifest = model
    runtime, tol = loaded(name, graph), RUNTIMES[name][1]
    ref = reference(model, graph)
    assert runtime.max_batch_size == MAX_BATCH
    assert list(runtime.input_names) == manifest.io[graph]["inputs"]
    for n in range(1, MAX_BATCH + 1):
        x = inputs_for(manifest, graph, n, seed=n)
        out = runtime.run({runtime.input_names[0]: x})
        assert set(out) == set(manifest.io[graph]["outputs"])
        for want, key in zip(ref(x), manifest.io[graph]["outputs"], strict=True):
            got = out[key]
            assert got.shape == want.shape and got.dtype == np.float32
            np.testing.assert_allclose(got, want, atol=tol, rtol=0, err_msg=f"{name} {graph} batch {n}")


@pytest.mark.parametrize(("name", "graph"), CASES, ids=[f"{n}-{g}" for n, g in CASES])
def test_non_contiguous_inputs_give_the_contiguous_result(model, loaded, name, graph):
    _, manifest = model
    runtime = loaded(name, graph)
    x = inputs_for(manifest, graph, 5, seed=99)
    if graph == "encoder":
        view = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)  # NHWC buffer, NCHW view
    else:
        view = np.ascontiguousarray(x.T).T  # column-major
    strided = np.repeat(x, 2, axis=0)[::2]  # every other row of a bigger buffer
    assert not view.flags.c_contiguous and not strided.flags.c_contiguous
    want = runtime.run({runtime.input_names[0]: x})
    for arr in (view, strided):
        got = runtime.run({runtime.input_names[0]: arr})
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])


@pytest.mark.parametrize("name", list(RUNTIMES))
def test_batch_above_max_and_missing_inputs_are_refused(model, loaded, name):
    _, manifest = model
    runtime = loaded(name, "decoder")
    with pytest.raises(RuntimeFailure, match=f"outside 1..{MAX_BATCH}"):
        runtime.run({"latents": inputs_for(manifest, "decoder", MAX_BATCH + 1, 0)})
    with pytest.raises(RuntimeFailure, match="missing input"):
        runtime.run({"z": inputs_for(manifest, "decoder", 2, 0)})


def test_runtime_names_are_what_model_info_reports(loaded):
    assert loaded("ort-cpu-fp32-optimised", "encoder").name == "onnxruntime-cpu"
    assert loaded("torch-cpu", "encoder").name == "torch-cpu"
    assert "encoder.fp16.onnx" in loaded("ort-cpu-fp16", "encoder").describe()
