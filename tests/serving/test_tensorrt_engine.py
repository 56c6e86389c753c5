"""TensorRT engine building, caching and execution, against a fake ``tensorrt`` module.

TensorRT cannot be installed on CPU machines. The fake records every call made to the
documented Python API, reads the real ONNX I/O so engines have the right tensors,
and "executes" an engine as out[n] = sum(in[n]) broadcast over the output shape, on
emulated device memory (a fake cuda-python runtime). scripts/gpu_host_check.sh runs
the same code paths against real TensorRT on a GPU host.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import shutil
import sys
import types
from importlib.machinery import ModuleSpec
from pathlib import Path

import numpy as np
import onnx
import pytest

from latentdial.export.variants import convert_fp16
from latentdial.manifest import GraphFile, Manifest, sha256_file
from latentdial.serving.runtimes import RuntimeUnavailable, load_runtime, selection
from latentdial.serving.runtimes import tensorrt_build as tb
from latentdial.serving.runtimes.base import RuntimeFailure
from latentdial.serving.runtimes.tensorrt_runtime import TensorRTRuntime, gpu_name

# ----------------------------------------------------------------------------- fakes


def make_fake_trt(version: str, calls: list, *, fail_build: bool = False) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__spec__ = ModuleSpec("tensorrt", None)
    trt.__version__ = version
    major = tb.parse_version(version)[0]

    class Logger:
        WARNING = "WARNING"

        def __init__(self, level):
            self.level = level

    class Network:
        def __init__(self, flags):
            self.flags, self.inputs, self.outputs = flags, {}, {}

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            self.network = network

        def parse(self, data: bytes) -> bool:
            calls.append(("parse", hashlib.sha256(data).hexdigest()))
            g = onnx.load_from_string(data).graph
            dims = lambda v: [d.dim_value for d in v.type.tensor_type.shape.dim][1:]
            self.network.inputs = {v.name: dims(v) for v in g.input}
            self.network.outputs = {v.name: dims(v) for v in g.output}
            return True

    class TimingCache:
        def __init__(self, data: bytes):
            self.data = data

        def serialize(self) -> bytes:
            return self.data + b"+"

    class Profile:
        def set_shape(self, name, lo, opt, hi):
            calls.append(("set_shape", name, tuple(lo), tuple(opt), tuple(hi)))
            self.shapes = {name: (list(lo), list(opt), list(hi))}

    class Config:
        def set_memory_pool_limit(self, pool, size):
            calls.append(("set_memory_pool_limit", pool, size))

        def add_optimization_profile(self, profile):
            self.profile = profile

        def set_flag(self, flag):
            calls.append(("set_flag", flag))

        def create_timing_cache(self, data: bytes):
            calls.append(("create_timing_cache", data))
            self.cache = TimingCache(data)
            return self.cache

        def set_timing_cache(self, cache, ignore_mismatch):
            calls.append(("set_timing_cache", ignore_mismatch))

        def get_timing_cache(self):
            return self.cache

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls.append(("create_network", flags))
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            calls.append(("build",))
            if fail_build:
                return None
            return json.dumps({"inputs": network.inputs, "outputs": network.outputs,
                               "profile": config.profile.shapes}).encode()

    class Context:
        def __init__(self, engine):
            self.engine, self.addresses, self.batch = engine, {}, None

        def set_input_shape(self, name, shape):
            lo, _, hi = self.engine.profile[name]
            self.batch = shape[0]
            return lo[0] <= shape[0] <= hi[0] and list(shape[1:]) == self.engine.inputs[name]

        def get_tensor_shape(self, name):
            return [self.batch, *self.engine.outputs[name]]

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = ptr

        def execute_async_v3(self, stream):
            calls.append(("execute_async_v3", stream, self.batch))
            (name, item), = self.engine.inputs.items()
            x = _device_view(self.addresses[name], (self.batch, *item))
            total = x.reshape(self.batch, -1).sum(axis=1)
            for out, shape in self.engine.outputs.items():
                y = _device_view(self.addresses[out], (self.batch, *shape))
                y[...] = total.reshape(-1, *([1] * len(shape)))
            return True

    class Engine:
        def __init__(self, spec):
            self.inputs, self.outputs = spec["inputs"], spec["outputs"]
            self.profile = spec["profile"]
            self.names = [*self.inputs, *self.outputs]
            self.num_io_tensors = len(self.names)

        def get_tensor_name(self, i):
            return self.names[i]

        def get_tensor_mode(self, name):
            return "INPUT" if name in self.inputs else "OUTPUT"

        def get_tensor_dtype(self, name):
            return "float32"

        def get_tensor_profile_shape(self, name, index):
            return self.profile[name]

        def create_execution_context(self):
            return Context(self)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data: bytes):
            return Engine(json.loads(data))

    trt.Logger, trt.Builder, trt.OnnxParser, trt.Runtime = Logger, Builder, OnnxParser, Runtime
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16") if major < 11 else types.SimpleNamespace(TF32="TF32")
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    trt.nptype = lambda dtype: np.float32
    return trt


_MEMORY: dict[int, np.ndarray] = {}


def _device_view(ptr: int, shape) -> np.ndarray:
    return _MEMORY[ptr][: int(np.prod(shape)) * 4].view(np.float32).reshape(shape)


def make_fake_cudart(gpu: str = "Fake GPU 80GB") -> types.ModuleType:
    rt = types.ModuleType("cuda.bindings.runtime")
    ok = 0
    rt.cudaError_t = types.SimpleNamespace(cudaSuccess=ok)
    rt.cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
    rt.cudaGetDeviceCount = lambda: (ok, 1)
    rt.cudaGetDeviceProperties = lambda i: (ok, types.SimpleNamespace(name=gpu.encode()))
    rt.cudaStreamCreate = lambda: (ok, 77)
    rt.cudaStreamSynchronize = lambda s: (ok,)
    rt.cudaStreamDestroy = lambda s: (ok,)

    def malloc(n):
        buf = np.zeros(n, np.uint8)
        _MEMORY[buf.ctypes.data] = buf
        return ok, buf.ctypes.data

    def memcpy(dst, src, n, kind, stream):
        ctypes.memmove(dst, src, n)
        return (ok,)

    rt.cudaMalloc, rt.cudaMemcpyAsync = malloc, memcpy
    rt.cudaFree = lambda p: (_MEMORY.pop(p, None), (ok,))[1]
    return rt


@pytest.fixture
def toy(toy_repo, tmp_path) -> tuple[Path, Manifest]:
    """A private copy of the toy model with an fp16 encoder/decoder variant added."""
    root, _ = toy_repo
    model_dir = tmp_path / "toy" / "1"
    shutil.copytree(root / "toy" / "1", model_dir)
    manifest = Manifest.load(model_dir)
    for graph in ("encoder", "decoder"):
        path = convert_fp16(model_dir / f"{graph}.onnx", model_dir / f"{graph}.fp16.onnx")
        manifest.files.append(GraphFile(graph, path.name, sha256_file(path), "fp16"))
    manifest.batch_profile = {"min": 1, "opt": 4, "max": 8}
    manifest.save(model_dir)
    return model_dir, manifest


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize(("text", "want"), [("10.13.3.9", (10, 13, 3)), ("11.0.0b1", (11, 0, 0)),
                                            ("10", (10, 0, 0))])
def test_version_parsing(text, want):
    assert tb.parse_version(text) == want


def test_version_garbage_is_a_clear_error():
    with pytest.raises(ValueError, match="cannot parse a TensorRT version"):
        tb.parse_version("dev")


def test_trt10_fp16_uses_builder_flag_on_the_fp32_graph(toy, tmp_path):
    model_dir, manifest = toy
    calls: list = []
    trt = make_fake_trt("10.13.3.9", calls)
    tb.ensure_engine(trt, "Fake GPU", model_dir, manifest, "encoder", tmp_path / "cache", fp16=True,
                     workspace_mb=256)
    assert ("parse", manifest.graph_file("encoder", "fp32").sha256) in calls
    assert ("set_flag", "FP16") in calls
    assert ("create_network", 0) in calls
    assert ("set_memory_pool_limit", "WORKSPACE", 256 << 20) in calls
    assert ("set_shape", "images", (1, 1, 8, 8), (4, 1, 8, 8), (8, 1, 8, 8)) in calls


def test_trt11_fp16_builds_the_fp16_onnx_strongly_typed_without_flags(toy, tmp_path):
    model_dir, manifest = toy
    calls: list = []
    trt = make_fake_trt("11.1.0.4", calls)
    tb.ensure_engine(trt, "Fake GPU", model_dir, manifest, "decoder", tmp_path / "cache", fp16=True)
    assert ("parse", manifest.graph_file("decoder", "fp16").sha256) in calls
    assert ("create_network", 1 << 1) in calls  # STRONGLY_TYPED
    assert not [c for c in calls if c[0] == "set_flag"]
    assert ("set_shape", "latents", (1, 4), (4, 4), (8, 4)) in calls


def test_engine_cache_is_keyed_by_gpu_trt_version_and_onnx(toy, tmp_path, caplog):
    model_dir, manifest = toy
    cache, calls = tmp_path / "cache", []
    trt10 = make_fake_trt("10.13.3.9", calls)
    first = tb.ensure_engine(trt10, "NVIDIA H100 80GB HBM3", model_dir, manifest, "encoder", cache)
    assert first.parent == cache / "nvidia-h100-80gb-hbm3" / "trt-10.13.3.9"
    assert manifest.graph_file("encoder").sha256[:16] in first.name
    again = tb.ensure_engine(trt10, "NVIDIA H100 80GB HBM3", model_dir, manifest, "encoder", cache)
    assert again == first and calls.count(("build",)) == 1  # reused
    # the timing cache persisted by the first build seeds the next one
    tb.ensure_engine(trt10, "NVIDIA L4", model_dir, manifest, "encoder", cache)
    tb.ensure_engine(make_fake_trt("10.14.1.0", calls), "NVIDIA L4", model_dir, manifest, "encoder", cache)
    assert calls.count(("build",)) == 3
    # a stale sidecar (engine built from another ONNX) triggers ONE warning and a rebuild
    sidecar = first.with_suffix(".json")
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "onnx_sha256": "0" * 64}))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=tb.__name__):
        tb.ensure_engine(trt10, "NVIDIA H100 80GB HBM3", model_dir, manifest, "encoder", cache)
    assert calls.count(("build",)) == 4
    assert len(caplog.records) == 1 and "onnx_sha256" in caplog.records[0].getMessage()


def test_timing_cache_is_persisted_and_reloaded(toy, tmp_path):
    model_dir, manifest = toy
    cache, calls = tmp_path / "cache", []
    trt = make_fake_trt("10.13.3.9", calls)
    tb.ensure_engine(trt, "Fake GPU", model_dir, manifest, "encoder", cache)
    tb.ensure_engine(trt, "Fake GPU", model_dir, manifest, "decoder", cache)
    created = [c[1] for c in calls if c[0] == "create_timing_cache"]
    assert created == [b"", b"+"]
    assert ("set_timing_cache", False) in calls
    assert (cache / "fake-gpu" / "trt-10.13.3.9" / "timing.cache").read_bytes() == b"++"


def test_missing_engine_without_rebuild_is_unavailable(toy, tmp_path):
    model_dir, manifest = toy
    with pytest.raises(RuntimeUnavailable, match="no cached engine"):
        tb.ensure_engine(make_fake_trt("10.0.1", []), "g", model_dir, manifest, "encoder", tmp_path,
                         rebuild=False)


def test_profile_comes_from_the_manifest_and_is_validated(toy):
    _, manifest = toy
    assert tb.profile_of(manifest) == (1, 4, 8)
    assert tb.profile_of(manifest, max_batch_size=2) == (1, 2, 2)
    manifest.batch_profile = {"min": 5, "opt": 2, "max": 8}
    with pytest.raises(ValueError, match="min <= opt <= max"):
        tb.profile_of(manifest)


def test_runtime_runs_every_batch_of_the_profile_on_one_stream(toy, tmp_path):
    model_dir, manifest = toy
    calls: list = []
    trt, cudart = make_fake_trt("10.13.3.9", calls), make_fake_cudart()
    assert gpu_name(cudart) == "Fake GPU 80GB"
    engine = tb.ensure_engine(trt, gpu_name(cudart), model_dir, manifest, "decoder", tmp_path)
    runtime = TensorRTRuntime(engine, max_batch_size=64, trt=trt, cudart=cudart)
    assert runtime.max_batch_size == 8  # capped by the engine profile
    assert runtime.input_names == ("latents",) and runtime.output_names == ("images",)
    rng = np.random.default_rng(0)
    for n in range(1, 9):
        z = rng.standard_normal((n, 4)).astype(np.float32)
        out = runtime.run({"latents": np.asfortranarray(z)})["images"]
        assert out.shape == (n, 1, 8, 8)
        np.testing.assert_allclose(out[:, 0, 0, 0], z.sum(axis=1), rtol=1e-6)
        assert calls[-1] == ("execute_async_v3", 77, n)
    with pytest.raises(RuntimeFailure, match="outside 1..8"):
        runtime.run({"latents": np.zeros((9, 4), np.float32)})
    runtime.close()
    runtime.close()  # idempotent


def _install_fakes(monkeypatch, trt, cudart) -> None:
    cuda = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cudart
    cuda.bindings = bindings
    for name, mod in (("tensorrt", trt), ("cuda", cuda), ("cuda.bindings", bindings),
                      ("cuda.bindings.runtime", cudart)):
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(selection, "nvidia_gpu_present", lambda: True)
    monkeypatch.setattr(selection, "unavailable_reason", _no_torch_cuda(selection.unavailable_reason))


def _no_torch_cuda(real):
    def reason(name, manifest=None, graph="encoder"):
        return "no CUDA torch in this test" if name == "torch-cuda" else real(name, manifest, graph)

    return reason


def test_auto_selection_prefers_tensorrt_when_it_loads(toy, tmp_path, monkeypatch):
    model_dir, manifest = toy
    _install_fakes(monkeypatch, make_fake_trt("10.13.3.9", []), make_fake_cudart())
    runtime = load_runtime(model_dir, manifest, "encoder", engine_cache_dir=tmp_path)
    assert runtime.name == "tensorrt"
    out = runtime.run({"images": np.ones((3, 1, 8, 8), np.float32)})
    np.testing.assert_allclose(out["mean"], np.full((3, 4), 64.0))


def test_failed_engine_build_falls_back_to_the_next_runtime_with_one_line(toy, tmp_path, monkeypatch, caplog):
    model_dir, manifest = toy
    _install_fakes(monkeypatch, make_fake_trt("10.13.3.9", [], fail_build=True), make_fake_cudart())
    with caplog.at_level(logging.INFO, logger="latentdial.serving.runtimes"):
        runtime = load_runtime(model_dir, manifest, "encoder", engine_cache_dir=tmp_path)
    assert runtime.name == "onnxruntime-cpu"
    failed = [r for r in caplog.records if r.name == "latentdial.serving.runtimes" and "tensorrt could not" in
              r.getMessage()]
    assert len(failed) == 1 and "failed to build an engine" in failed[0].getMessage()


def test_build_engine_cli_builds_both_graphs_of_a_repository(toy, tmp_path, monkeypatch, capsys):
    from latentdial.cli import main

    model_dir, _ = toy
    calls: list = []
    _install_fakes(monkeypatch, make_fake_trt("11.1.0", calls), make_fake_cudart("NVIDIA A10"))
    cache = tmp_path / "engines"
    assert main(["build-engine", str(model_dir.parent.parent), "--cache-dir", str(cache), "--fp16"]) == 0
    out = capsys.readouterr().out
    assert "TensorRT 11.1.0 on NVIDIA A10" in out
    assert len(list((cache / "nvidia-a10" / "trt-11.1.0").glob("*-fp16-*.engine"))) == 2
    assert main(["build-engine", str(model_dir), "--cache-dir", str(cache), "--fp16"]) == 0
    assert calls.count(("build",)) == 2  # cached
    assert main(["build-engine", str(model_dir), "--cache-dir", str(cache), "--fp16", "--force"]) == 0
    assert calls.count(("build",)) == 4


def test_serving_finds_the_engines_build_engine_made_whatever_its_max_batch(toy, tmp_path, monkeypatch):
    from latentdial.cli import main

    model_dir, manifest = toy
    calls: list = []
    _install_fakes(monkeypatch, make_fake_trt("10.13.3.9", calls), make_fake_cudart())
    assert main(["build-engine", str(model_dir), "--cache-dir", str(tmp_path)]) == 0
    runtime = load_runtime(model_dir, manifest, "decoder", max_batch_size=4, engine_cache_dir=tmp_path)
    assert runtime.name == "tensorrt" and runtime.max_batch_size == 4
    assert calls.count(("build",)) == 2  # encoder + decoder by the CLI, nothing rebuilt at load
