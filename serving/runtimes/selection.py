"""Which runtime runs a graph: the configured one, or the best available one.

Automatic order (fastest first): tensorrt, onnxruntime-tensorrt, onnxruntime-cuda,
torch-cuda, onnxruntime-cpu. Each runtime that cannot run here is skipped with its
reason logged; a runtime that is present but fails to load (e.g. an engine build
error) is logged and the next one is tried. ``torch-cpu`` exists as a reference
and is used only when named.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable
from pathlib import Path

from latentdial.manifest import FileFormat, Graph, Manifest, ManifestError
from latentdial.serving.runtimes.base import (
    Runtime,
    RuntimeFailure,
    RuntimeOptions,
    RuntimeUnavailable,
)

log = logging.getLogger("latentdial.serving.runtimes")

AUTO_ORDER = ("tensorrt", "onnxruntime-tensorrt", "onnxruntime-cuda", "torch-cuda", "onnxruntime-cpu")
ALL_RUNTIMES = (*AUTO_ORDER, "torch-cpu")
PRECISIONS = ("fp32", "fp16", "int8")
#: The graphs of an editor-kind model (``Manifest.kind``). They run on ONNX Runtime (CPU or CUDA):
#: the editor graph takes two inputs (images and codes), and the TensorRT profiles and engines, the
#: torch runtime's CUDA graphs and the graph choice's timings here are built for one-input VAE graphs.
EDITOR_GRAPHS = ("classifier", "editor")


def default_engine_cache() -> Path:
    """``$LATENTDIAL_ENGINE_CACHE`` or ``~/.cache/latentdial/engines``."""
    env = os.environ.get("LATENTDIAL_ENGINE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "latentdial" / "engines"


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def nvidia_gpu_present() -> bool:
    """Cheap check (no CUDA library loaded) for an NVIDIA driver with a device."""
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia/gpus").is_dir()


def formats_not_runnable_here() -> tuple[FileFormat, ...]:
    """The file formats no runtime here can load: ``torch-export`` where torch is not installed
    (the serving images). Their files may be absent from a model directory
    (``Manifest.verify_files(may_be_absent=...)``)."""
    return () if _installed("torch") else ("torch-export",)


def unavailable_reason(name: str, manifest: Manifest | None = None, graph: Graph = "encoder") -> str | None:
    """None if runtime ``name`` can run here (for ``manifest``'s ``graph`` when given); else why not."""
    if name in ("tensorrt", "onnxruntime-tensorrt", "torch-cuda", "torch-cpu") and graph in EDITOR_GRAPHS:
        return f"{name} runs the encoder and decoder of a VAE; an editor model's {graph} graph runs on ONNX Runtime"
    if name == "onnxruntime-cpu":
        return None if _installed("onnxruntime") else "onnxruntime is not installed"
    if name in ("onnxruntime-tensorrt", "onnxruntime-cuda"):
        from latentdial.serving.runtimes.onnxruntime_gpu import unavailable_reason as ort_reason

        return ort_reason("tensorrt" if name.endswith("tensorrt") else "cuda")
    if name in ("torch-cuda", "torch-cpu"):
        if not _installed("torch"):
            return "torch is not installed"
        if manifest is not None and manifest.find_file(graph, "fp32", "torch-export") is None:
            return "the model directory has no torch.export program (.pt2); re-export it"
        if name == "torch-cuda":
            if not nvidia_gpu_present():  # do not pay for importing torch on a CPU host
                return "no NVIDIA GPU on this host"
            import torch

            if not torch.cuda.is_available():
                return f"torch {torch.__version__} sees no CUDA device"
        return None
    if name == "tensorrt":
        if not _installed("tensorrt"):
            return "tensorrt is not installed"
        if not nvidia_gpu_present():
            return "no NVIDIA GPU on this host"
        try:
            from latentdial.serving.runtimes.tensorrt_runtime import gpu_name, import_cudart

            gpu_name(import_cudart())
        except RuntimeFailure as e:
            return str(e)
        return None
    return f"unknown runtime {name!r}; valid: {list(ALL_RUNTIMES)}"


def available_runtimes(manifest: Manifest | None = None, graph: Graph = "encoder") -> dict[str, str | None]:
    """Every runtime name -> None if it can run here, else the reason it cannot."""
    return {name: unavailable_reason(name, manifest, graph) for name in ALL_RUNTIMES}


def _construct(name: str, model_dir: Path, manifest: Manifest, graph: Graph, *, max_batch_size: int,
               precision: str, engine_cache_dir: Path | None, device_id: int,
               options: RuntimeOptions) -> Runtime:
    """Build runtime ``name``; RuntimeUnavailable if it cannot run this graph here."""
    io = manifest.io[graph]
    item_shape = tuple(manifest.image_shape) if graph in ("encoder", "classifier") else (manifest.latent_dim,)
    if name == "onnxruntime-cpu":
        from latentdial.serving.runtimes.onnxruntime_cpu import OrtCpuRuntime

        if graph in EDITOR_GRAPHS:  # the graph choice measures one-input VAE graphs: the main file, tuned
            from latentdial.graph_choice import DEFAULT_SET

            return OrtCpuRuntime(model_dir / manifest.graph_file(graph, precision, "onnx").path,
                                 max_batch_size=max_batch_size, options=options, session=DEFAULT_SET)
        if precision != "fp32":
            return OrtCpuRuntime(model_dir / manifest.graph_file(graph, precision, "onnx").path,
                                 max_batch_size=max_batch_size, options=options)
        from latentdial.graph_choice import choose

        path, session, source = choose(model_dir, manifest, graph, options.intra_op_threads, options.allow_spinning)
        log.info("%s/%s %s on onnxruntime-cpu: %s with %s options (%s)", manifest.name, manifest.version,
                 graph, path, session, source)
        return OrtCpuRuntime(model_dir / path, max_batch_size=max_batch_size, options=options, session=session)
    if name in ("onnxruntime-tensorrt", "onnxruntime-cuda"):
        from latentdial.serving.runtimes.onnxruntime_gpu import OrtGpuRuntime

        provider = "tensorrt" if name.endswith("tensorrt") else "cuda"
        # The TensorRT EP takes fp16 as a flag on the fp32 graph; CUDA runs the fp16 file.
        file_precision = "fp32" if provider == "tensorrt" else precision
        cache = (engine_cache_dir or default_engine_cache()) / "onnxruntime-trt"
        return OrtGpuRuntime(model_dir / manifest.graph_file(graph, file_precision, "onnx").path, provider,
                             item_shape=item_shape, max_batch_size=max_batch_size, device_id=device_id,
                             profile=manifest.batch_profile,
                             cache_dir=cache, fp16=precision == "fp16")
    if name in ("torch-cuda", "torch-cpu"):
        from latentdial.serving.runtimes.torch_runtime import TorchRuntime

        program = manifest.find_file(graph, "fp32", "torch-export")
        if program is None:
            raise RuntimeUnavailable("the model directory has no torch.export program (.pt2)")
        device = f"cuda:{device_id}" if name == "torch-cuda" else "cpu"
        return TorchRuntime(model_dir / program.path, tuple(io["inputs"]), tuple(io["outputs"]),
                            device=device, half=precision == "fp16", max_batch_size=max_batch_size)
    if name == "tensorrt":
        from latentdial.serving.runtimes.tensorrt_build import ensure_engine, import_tensorrt
        from latentdial.serving.runtimes.tensorrt_runtime import (
            TensorRTRuntime,
            gpu_name,
            import_cudart,
        )

        trt, cudart = import_tensorrt(), import_cudart()
        # Engines always cover the manifest's whole batch profile, so that the engines built by
        # `latentdial build-engine` are the ones serving finds, whatever max batch it runs with.
        engine = ensure_engine(trt, gpu_name(cudart, device_id), model_dir, manifest, graph,
                               engine_cache_dir or default_engine_cache(), fp16=precision == "fp16")
        return TensorRTRuntime(engine, max_batch_size=max_batch_size, trt=trt, cudart=cudart)
    raise RuntimeUnavailable(f"unknown runtime {name!r}; valid: {['auto', *ALL_RUNTIMES]}")


def load_runtime(
    model_dir: Path,
    manifest: Manifest,
    graph: Graph,
    *,
    preference: str = "auto",
    max_batch_size: int | None = None,
    precision: str = "fp32",
    engine_cache_dir: Path | None = None,
    device_id: int = 0,
    options: RuntimeOptions | None = None,
    constructors: dict[str, Callable[..., Runtime]] | None = None,
) -> Runtime:
    """Load ``graph`` of the model in ``model_dir`` on the runtime named by ``preference``.

    preference: "auto" (first of AUTO_ORDER that loads) or a name from ALL_RUNTIMES.
    precision: "fp32", "fp16" (GPU runtimes; the fp16 ONNX variant on CPU) or "int8"
    (ONNX Runtime CPU; only if the export kept an int8 variant).
    options: CPU threads and spinning (``RuntimeOptions``; None = its defaults); a server turns
    spinning off.
    constructors: name -> factory(model_dir, manifest, graph, *, max_batch_size, precision, options)
    overriding the built-in ones (tests that stand in for a GPU runtime).
    """
    model_dir = Path(model_dir)
    if preference not in ("auto", *ALL_RUNTIMES):
        raise RuntimeUnavailable(f"runtime {preference!r} is unknown; valid: {['auto', *ALL_RUNTIMES]}")
    if precision not in PRECISIONS:
        raise RuntimeUnavailable(f"precision {precision!r} is unknown; valid: {list(PRECISIONS)}")
    max_batch = int(max_batch_size or manifest.batch_profile["max"])
    candidates = AUTO_ORDER if preference == "auto" else (preference,)
    what = f"{manifest.name}/{manifest.version} {graph}"
    reasons: list[str] = []
    for name in candidates:
        factory = (constructors or {}).get(name)
        reason = None if factory else unavailable_reason(name, manifest, graph)
        if reason:
            log.info("%s: runtime %s skipped: %s", what, name, reason)
            reasons.append(f"{name}: {reason}")
            continue
        try:
            if factory:
                runtime = factory(model_dir, manifest, graph, max_batch_size=max_batch, precision=precision,
                                  options=options or RuntimeOptions())
            else:
                runtime = _construct(name, model_dir, manifest, graph, max_batch_size=max_batch,
                                     precision=precision, engine_cache_dir=engine_cache_dir,
                                     device_id=device_id, options=options or RuntimeOptions())
        except (RuntimeFailure, ManifestError, OSError) as e:
            log.warning("%s: runtime %s could not load, trying the next one: %s", what, name, e)
            reasons.append(f"{name}: {e}")
            continue
        log.info("%s runs on %s", what, runtime.describe())
        return runtime
    raise RuntimeUnavailable(f"no runtime can run {what} at {precision}: " + "; ".join(reasons))
