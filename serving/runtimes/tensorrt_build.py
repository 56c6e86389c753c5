"""Build TensorRT engines from a model directory's ONNX graphs, and cache them.

Engines are a cache, never the source of truth (docs/architecture.md; layout in
docs/runtimes.md, "TensorRT engines"): they live in
``<cache_dir>/<gpu model>/trt-<TensorRT version>/`` named by graph, precision, the
ONNX file's sha256 and the batch profile, with a JSON sidecar recording what they
were built from. A cached engine is used only when GPU model, TensorRT version and
ONNX sha256 all match; otherwise it is rebuilt.

Precision:

- TensorRT 10: the fp32 ONNX graph, plus ``BuilderFlag.FP16`` when fp16 is asked for
  (weak typing: TensorRT may choose fp16 kernels).
- TensorRT >= 11 removed the precision builder flags; networks are strongly typed and
  precision comes from the ONNX types, so fp16 builds the export's fp16 ONNX variant
  (float32 I/O, float16 inside).

Every builder setting (optimisation profile min/opt/max batch from
``manifest.batch_profile``, workspace limit via ``set_memory_pool_limit``, a timing
cache persisted next to the engines) is applied through the documented Python API.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from latentdial.manifest import Graph, Manifest
from latentdial.serving.runtimes.base import RuntimeFailure, RuntimeUnavailable

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE_MB = 1024


def parse_version(text: str) -> tuple[int, int, int]:
    """"10.13.3.9" -> (10, 13, 3); "11.0.0b1" -> (11, 0, 0). ValueError on garbage."""
    m = re.match(r"^\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", text or "")
    if not m:
        raise ValueError(f"cannot parse a TensorRT version from {text!r}")
    return tuple(int(g) if g else 0 for g in m.groups())  # type: ignore[return-value]


def strongly_typed(trt_version: tuple[int, int, int]) -> bool:
    """TensorRT >= 11 builds strongly typed networks only (no FP16/INT8 builder flags)."""
    return trt_version[0] >= 11


def onnx_precision_for(trt_version: tuple[int, int, int], fp16: bool) -> str:
    """Which ONNX file to parse: the fp16 variant on TensorRT >= 11, else the fp32 graph."""
    return "fp16" if fp16 and strongly_typed(trt_version) else "fp32"


def slug(text: str) -> str:
    """A file-system-safe name: "NVIDIA H100 80GB HBM3" -> "nvidia-h100-80gb-hbm3"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; its path and sidecar are derived from it."""

    gpu: str
    trt_version: str
    graph: str
    precision: str  # "fp32" or "fp16" (what was asked for)
    onnx_sha256: str
    profile: tuple[int, int, int]  # (min, opt, max) batch

    def directory(self, cache_dir: Path) -> Path:
        return Path(cache_dir) / slug(self.gpu) / f"trt-{self.trt_version}"

    def engine_path(self, cache_dir: Path) -> Path:
        lo, opt, hi = self.profile
        name = f"{self.graph}-{self.precision}-{self.onnx_sha256[:16]}-b{lo}_{opt}_{hi}.engine"
        return self.directory(cache_dir) / name

    def sidecar_path(self, cache_dir: Path) -> Path:
        return self.engine_path(cache_dir).with_suffix(".json")

    def timing_cache_path(self, cache_dir: Path) -> Path:
        return self.directory(cache_dir) / "timing.cache"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["profile"] = list(self.profile)
        return d


def profile_of(manifest: Manifest, max_batch_size: int | None = None) -> tuple[int, int, int]:
    """(min, opt, max) batch from the manifest, max capped at ``max_batch_size``; validated."""
    p = manifest.batch_profile
    lo, opt, hi = int(p["min"]), int(p["opt"]), int(p["max"])
    if max_batch_size is not None:
        hi = min(hi, int(max_batch_size))
        opt = min(opt, hi)
    lo = min(lo, hi)
    if not 1 <= lo <= opt <= hi:
        raise ValueError(f"bad batch profile min={lo} opt={opt} max={hi}; need 1 <= min <= opt <= max")
    return lo, opt, hi


def cached_engine_valid(key: EngineKey, cache_dir: Path) -> str | None:
    """None if a usable engine for ``key`` is cached; else why it must be (re)built."""
    engine, sidecar = key.engine_path(cache_dir), key.sidecar_path(cache_dir)
    if not engine.is_file() or not sidecar.is_file():
        return f"no cached engine at {engine}"
    try:
        recorded = json.loads(sidecar.read_text())
    except json.JSONDecodeError:
        return f"{sidecar} is unreadable"
    for field in ("gpu", "trt_version", "onnx_sha256", "profile"):
        if recorded.get(field) != key.to_dict()[field]:
            return f"cached engine was built for {field}={recorded.get(field)!r}, now {key.to_dict()[field]!r}"
    return None


def build_engine(trt, onnx_path: Path, key: EngineKey, cache_dir: Path, *, input_name: str,
                 item_shape: tuple[int, ...], workspace_mb: int = DEFAULT_WORKSPACE_MB) -> Path:
    """Build and serialise one engine with ``trt`` (the imported ``tensorrt`` module).

    Writes the engine, its sidecar and the updated timing cache; returns the engine path.
    """
    version = parse_version(trt.__version__)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    typed_flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed(version) and typed_flag is not None:  # always on in 11.x; explicit is harmless
        flags |= 1 << int(typed_flag)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeFailure(f"TensorRT cannot parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    lo, opt, hi = key.profile
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, (lo, *item_shape), (opt, *item_shape), (hi, *item_shape))
    config.add_optimization_profile(profile)
    if key.precision == "fp16" and not strongly_typed(version):
        config.set_flag(trt.BuilderFlag.FP16)

    timing_path = key.timing_cache_path(cache_dir)
    timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    config.set_timing_cache(timing, ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeFailure(f"TensorRT failed to build an engine for {onnx_path} (see its log above)")
    engine_path = key.engine_path(cache_dir)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = engine_path.with_suffix(".engine.partial")
    tmp.write_bytes(bytes(serialized))
    tmp.replace(engine_path)
    key.sidecar_path(cache_dir).write_text(json.dumps(
        {**key.to_dict(), "workspace_mb": workspace_mb, "onnx": str(onnx_path)}, indent=2) + "\n")
    timing_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    return engine_path


def import_tensorrt():
    """The ``tensorrt`` module, or RuntimeUnavailable saying how to get it."""
    try:
        import tensorrt
    except ImportError as e:
        raise RuntimeUnavailable("tensorrt is not installed (pip install 'latentdial[tensorrt]' "
                                 "on a GPU host)") from e
    return tensorrt


def engine_key(trt, gpu: str, manifest: Manifest, graph: Graph, *, fp16: bool,
               max_batch_size: int | None = None) -> tuple[EngineKey, str]:
    """(key, onnx file path relative to the model dir) for ``graph`` at the asked precision."""
    version = parse_version(trt.__version__)
    source = manifest.graph_file(graph, onnx_precision_for(version, fp16))  # type: ignore[arg-type]
    key = EngineKey(gpu=gpu, trt_version=trt.__version__, graph=graph,
                    precision="fp16" if fp16 else "fp32", onnx_sha256=source.sha256,
                    profile=profile_of(manifest, max_batch_size))
    return key, source.path


def ensure_engine(trt, gpu: str, model_dir: Path, manifest: Manifest, graph: Graph, cache_dir: Path, *,
                  fp16: bool = False, max_batch_size: int | None = None,
                  workspace_mb: int = DEFAULT_WORKSPACE_MB, rebuild: bool = True) -> Path:
    """Path of a valid cached engine for ``graph``; builds it if missing or stale (one log line).

    rebuild=False raises RuntimeUnavailable instead of building (so the caller falls back).
    """
    key, rel = engine_key(trt, gpu, manifest, graph, fp16=fp16, max_batch_size=max_batch_size)
    reason = cached_engine_valid(key, cache_dir)
    if reason is None:
        return key.engine_path(cache_dir)
    if not rebuild:
        raise RuntimeUnavailable(f"TensorRT engine for {manifest.name}/{manifest.version} {graph}: {reason}")
    log.warning("building TensorRT engine for %s/%s %s (%s): %s", manifest.name, manifest.version,
                graph, key.precision, reason)
    io = manifest.io[graph]
    item_shape = tuple(manifest.image_shape) if graph == "encoder" else (manifest.latent_dim,)
    return build_engine(trt, Path(model_dir) / rel, key, cache_dir, input_name=io["inputs"][0],
                        item_shape=item_shape, workspace_mb=workspace_mb)
