"""Runtime selection: configured name or the best available one, with reasons for the rest."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest

from latentdial.manifest import Manifest
from latentdial.serving.runtimes import (
    ALL_RUNTIMES,
    AUTO_ORDER,
    Runtime,
    RuntimeFailure,
    RuntimeOptions,
    RuntimeUnavailable,
    available_runtimes,
    load_runtime,
)
from latentdial.serving.runtimes.onnxruntime_gpu import profile_shapes, provider_options
from latentdial.serving.runtimes.torch_runtime import batch_buckets, bucket_for, ieee_fp32


@pytest.fixture
def toy(toy_repo):
    root, model = toy_repo
    model_dir = root / "toy" / "1"
    return model_dir, Manifest.load(model_dir), model


def test_auto_order_is_fastest_first():
    assert AUTO_ORDER == ("tensorrt", "onnxruntime-tensorrt", "onnxruntime-cuda", "torch-cuda", "onnxruntime-cpu")
    assert set(AUTO_ORDER) < set(ALL_RUNTIMES) and "torch-cpu" in ALL_RUNTIMES


def test_available_runtimes_names_every_runtime_and_why_not(toy):
    _, manifest, _ = toy
    avail = available_runtimes(manifest)
    assert set(avail) == set(ALL_RUNTIMES)
    assert avail["onnxruntime-cpu"] is None
    for reason in avail.values():
        assert reason is None or isinstance(reason, str) and reason
    # the toy model was not exported with torch programs
    assert "torch.export program" in (avail["torch-cpu"] or "") or "torch is not installed" in avail["torch-cpu"]


def test_auto_falls_through_to_onnxruntime_cpu_logging_each_skip(toy, caplog, monkeypatch):
    model_dir, manifest, model = toy
    from latentdial.serving.runtimes import selection

    skipped = {"tensorrt": "no GPU (test)", "onnxruntime-tensorrt": "no EP (test)",
               "onnxruntime-cuda": "no EP (test)", "torch-cuda": "no CUDA (test)"}
    real = selection.unavailable_reason
    monkeypatch.setattr(selection, "unavailable_reason",
                        lambda name, m=None, g="encoder": skipped.get(name) or real(name, m, g))
    with caplog.at_level(logging.INFO, logger="latentdial.serving.runtimes"):
        runtime = load_runtime(model_dir, manifest, "encoder", max_batch_size=5)
    assert runtime.name == "onnxruntime-cpu" and runtime.max_batch_size == 5
    text = caplog.text
    for name, reason in skipped.items():
        assert f"runtime {name} skipped: {reason}" in text
    assert "toy/1 encoder runs on onnxruntime-cpu" in text
    x = np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)
    np.testing.assert_allclose(runtime.run({"images": x})["mean"], model.encode(x)[0], atol=1e-5)


def test_a_runtime_that_fails_to_load_hands_over_to_the_next(toy, caplog):
    model_dir, manifest, _ = toy

    def broken(*args, **kwargs):
        raise RuntimeUnavailable("engine build failed (test)")

    with caplog.at_level(logging.WARNING, logger="latentdial.serving.runtimes"):
        runtime = load_runtime(model_dir, manifest, "decoder", constructors={"tensorrt": broken})
    assert runtime.name == "onnxruntime-cpu"
    assert [r.getMessage() for r in caplog.records if "could not load" in r.getMessage()] == [
        "toy/1 decoder: runtime tensorrt could not load, trying the next one: engine build failed (test)"]


def test_unknown_runtime_lists_the_valid_names(toy):
    model_dir, manifest, _ = toy
    with pytest.raises(RuntimeUnavailable, match=r"'tensorrt', 'onnxruntime-tensorrt'"):
        load_runtime(model_dir, manifest, "encoder", preference="tensorflow")


def test_configured_runtime_that_cannot_run_says_why(toy):
    model_dir, manifest, _ = toy
    with pytest.raises(RuntimeUnavailable, match="onnxruntime-cuda: .*CUDAExecutionProvider"):
        load_runtime(model_dir, manifest, "encoder", preference="onnxruntime-cuda")


def test_missing_precision_variant_lists_what_the_model_has(toy):
    model_dir, manifest, _ = toy
    with pytest.raises(RuntimeUnavailable, match=r"no encoder at int8; has \['decoder/fp32', 'encoder/fp32'\]"):
        load_runtime(model_dir, manifest, "encoder", precision="int8")


def test_selection_on_a_cpu_host_never_imports_torch(toy):
    model_dir, _, _ = toy
    code = (
        "import sys; from pathlib import Path\n"
        "from latentdial.manifest import Manifest\n"
        "from latentdial.serving.runtimes import load_runtime, available_runtimes\n"
        f"d = Path({str(model_dir)!r}); m = Manifest.load(d)\n"
        "r = load_runtime(d, m, 'encoder')\n"
        "available_runtimes()\n"
        "print(r.name, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["onnxruntime-cpu", "False"]


def test_tensorrt_ep_gets_profile_shapes_and_caches():
    assert profile_shapes("images", (3, 64, 64), {"min": 1, "opt": 64, "max": 256}) == {
        "trt_profile_min_shapes": "images:1x3x64x64",
        "trt_profile_opt_shapes": "images:64x3x64x64",
        "trt_profile_max_shapes": "images:256x3x64x64",
    }
    providers = provider_options("tensorrt", input_name="latents", item_shape=(10,),
                                 profile={"min": 1, "opt": 8, "max": 32}, cache_dir="/cache", fp16=True)
    name, opts = providers[0]
    assert name == "TensorrtExecutionProvider" and providers[1][0] == "CUDAExecutionProvider"
    assert opts["trt_engine_cache_enable"] and opts["trt_engine_cache_path"] == "/cache"
    assert opts["trt_timing_cache_enable"] and opts["trt_fp16_enable"]
    assert opts["trt_profile_max_shapes"] == "latents:32x10"
    assert provider_options("cuda")[0][0] == "CUDAExecutionProvider"


def test_cuda_graph_buckets_pad_up_to_the_smallest_that_fits():
    buckets = batch_buckets(9)
    assert buckets == (1, 2, 4, 8, 9)
    assert [bucket_for(n, buckets) for n in range(1, 10)] == [1, 2, 4, 4, 8, 8, 8, 8, 9]
    with pytest.raises(ValueError, match="exceeds the largest bucket 9"):
        bucket_for(10, buckets)


def _session_config(runtime, key: str) -> str:
    return runtime._session.get_session_options().get_session_config_entry(key)


def test_an_fp32_torch_runtime_on_cuda_turns_tf32_off_for_convolutions_and_matrix_products():
    # on an H100, cuDNN's default TF32 put dsprites/5's decoder 1.3e-3 from ONNX Runtime CPU
    torch = pytest.importorskip("torch")
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        ieee_fp32(torch)
        assert torch.backends.cudnn.allow_tf32 is False and torch.backends.cuda.matmul.allow_tf32 is False
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_runtime_options_reach_the_onnxruntime_session(toy):
    model_dir, manifest, _ = toy
    default = load_runtime(model_dir, manifest, "encoder", preference="onnxruntime-cpu")
    quiet = load_runtime(model_dir, manifest, "encoder", preference="onnxruntime-cpu",
                         options=RuntimeOptions(intra_op_threads=1, allow_spinning=False))
    assert _session_config(default, "session.intra_op.allow_spinning") == "1"
    assert _session_config(quiet, "session.intra_op.allow_spinning") == "0"
    assert quiet._session.get_session_options().intra_op_num_threads == 1


def test_a_served_model_runs_onnxruntime_without_spinning_threads(toy):
    from latentdial.serving.repository import load_model

    model_dir, _, _ = toy
    served = load_model(model_dir, "toy", "1", runtime="onnxruntime-cpu")
    for runtime in (served.encoder, served.decoder):
        assert _session_config(runtime, "session.intra_op.allow_spinning") == "0"


def test_torch_programs_may_be_absent_only_where_torch_is_not_installed(monkeypatch):
    from latentdial.serving.runtimes import selection

    assert selection.formats_not_runnable_here() == ()  # the dev environment has torch
    monkeypatch.setattr(selection, "_installed", lambda module: module != "torch")
    assert selection.formats_not_runnable_here() == ("torch-export",)


def test_a_torch_less_server_loads_a_model_whose_torch_programs_were_left_out(toy_repo, tmp_path, monkeypatch):
    """The serving images carry no .pt2 files; the manifest still lists them (export wrote them)."""
    import shutil

    from latentdial.manifest import GraphFile, ManifestError
    from latentdial.serving import repository

    root, _ = toy_repo
    model_dir = tmp_path / "toy" / "1"
    shutil.copytree(root / "toy" / "1", model_dir)
    manifest = Manifest.load(model_dir)
    manifest.files.append(GraphFile("encoder", "encoder.pt2", "0" * 64, format="torch-export"))
    manifest.save(model_dir)
    with pytest.raises(ManifestError, match="encoder.pt2 is listed in the manifest but missing"):
        repository.load_model(model_dir, "toy", "1", runtime="onnxruntime-cpu")  # torch is installed here
    monkeypatch.setattr(repository, "formats_not_runnable_here", lambda: ("torch-export",))
    served = repository.load_model(model_dir, "toy", "1", runtime="onnxruntime-cpu")
    assert served.encoder.name == "onnxruntime-cpu"


def test_negative_intra_op_threads_are_refused():
    with pytest.raises(ValueError, match="intra_op_threads must be >= 0"):
        RuntimeOptions(intra_op_threads=-1)


class _Recording(Runtime):
    """A backend that records the calls run() lets through."""

    name = "recording"
    max_batch_size = 3
    input_names = ("x",)
    output_names = ("y",)

    def __init__(self) -> None:
        self.calls: list[int] = []

    def _run(self, inputs, n):
        self.calls.append(n)
        return {"y": inputs["x"] * 2}


def test_run_validates_every_call_before_any_backend_sees_it():
    runtime = _Recording()
    assert runtime.run({"x": np.ones((3, 2), np.float32)})["y"].shape == (3, 2)
    for bad, why in (({"x": np.ones((4, 2), np.float32)}, r"batch 4 is outside 1\.\.3"),
                     ({"x": np.ones((0, 2), np.float32)}, r"batch 0 is outside 1\.\.3"),
                     ({"z": np.ones((1, 2), np.float32)}, r"missing input\(s\) \['x'\]")):
        with pytest.raises(RuntimeFailure, match=why):
            runtime.run(bad)
    assert runtime.calls == [3]
