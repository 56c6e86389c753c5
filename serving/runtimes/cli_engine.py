"""``latentdial build-engine MODEL_DIR``: build (or refresh) the TensorRT engines of a model.

MODEL_DIR may be one model directory (with manifest.json) or a whole repository
(``models/``), in which case every model version in it is built (editor-kind versions are
skipped: their graphs run on ONNX Runtime). Engines go to the
cache directory keyed by GPU model, TensorRT version and ONNX sha256; a valid
cached engine is reused. Engines always cover the manifest's whole batch profile
(min/opt/max), which is what serving looks up. Imports only the standard library at top level.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", type=Path, help="a model directory or a model repository")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="engine cache (default: $LATENTDIAL_ENGINE_CACHE or ~/.cache/latentdial/engines)")
    parser.add_argument("--fp16", action="store_true",
                        help="fp16 engines (TensorRT 10: FP16 builder flag; 11: the fp16 ONNX variant)")
    parser.add_argument("--workspace-mb", type=int, default=1024, help="builder workspace limit (MiB)")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index")
    parser.add_argument("--force", action="store_true", help="rebuild even if a valid engine is cached")


def run(args: argparse.Namespace) -> int:
    from latentdial.manifest import MANIFEST_NAME, Manifest, ManifestError, iter_model_dirs
    from latentdial.serving.runtimes.base import RuntimeFailure
    from latentdial.serving.runtimes.selection import (
        default_engine_cache,
        formats_not_runnable_here,
    )
    from latentdial.serving.runtimes.tensorrt_build import (
        engine_key,
        ensure_engine,
        import_tensorrt,
    )
    from latentdial.serving.runtimes.tensorrt_runtime import gpu_name, import_cudart

    root: Path = args.model_dir
    if (root / MANIFEST_NAME).is_file():
        targets = [root]
    else:
        targets = [path for _, _, path in iter_model_dirs(root)]
    if not targets:
        print(f"build-engine: no model directory at {root} (expected {MANIFEST_NAME})", file=sys.stderr)
        return 2
    cache = args.cache_dir or default_engine_cache()
    try:
        trt, cudart = import_tensorrt(), import_cudart()
        gpu = gpu_name(cudart, args.device)
        print(f"TensorRT {trt.__version__} on {gpu}; engine cache {cache}")
        for model_dir in targets:
            manifest = Manifest.load(model_dir)
            if manifest.kind != "vae":  # an editor's graphs run on ONNX Runtime (runtimes/selection.py)
                print(f"{manifest.name}/{manifest.version}: skipped, a model of kind {manifest.kind!r} has no "
                      "TensorRT engines (its graphs run on ONNX Runtime)")
                continue
            manifest.verify_files(model_dir, may_be_absent=formats_not_runnable_here())
            for graph in ("encoder", "decoder"):
                if args.force:
                    key, _ = engine_key(trt, gpu, manifest, graph, fp16=args.fp16)
                    key.sidecar_path(cache).unlink(missing_ok=True)
                path = ensure_engine(trt, gpu, model_dir, manifest, graph, cache, fp16=args.fp16,
                                     workspace_mb=args.workspace_mb)
                print(f"{manifest.name}/{manifest.version} {graph}: {path}")
    except (RuntimeFailure, ManifestError) as e:
        print(f"build-engine failed: {e}", file=sys.stderr)
        return 1
    return 0
