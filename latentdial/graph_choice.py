"""Serve the fastest ONNX graph file and session options on the CPU, chosen by measurement.

Shared by export (which measures and records) and serving (which reads the record, or measures
at load); it lives in the core because neither stage may import the other. Imports onnxruntime
only when a measurement or a session is made.

A model directory may hold more than one file that computes a graph at fp32: the main one (the
onnxslim-optimised ``encoder.onnx``) and alternatives (``variant`` in the manifest, e.g. ``raw``:
the export before onnxslim). ONNX Runtime can open each with several session option sets
(:data:`SESSION_SETS`). Which pair is fastest depends on the host: the quiet run of docs/runtimes.md
measured the optimised file with the tuned options at 0.65x the raw export with ONNX Runtime's
defaults (encoder, batch 64).

:func:`measure` times every (file, option set) pair on this host: images/s at batch 1 and at the
profile's opt batch, in ``repeats`` interleaved rounds; a candidate's score is the geometric mean
of its two median rates, its ``spread`` the (max - min) / median of its rounds' scores (the noise
of the measurement). The highest score wins. The record (:func:`measure`'s dict) goes into the
manifest's ``graph_choice`` under this host's key at export; a host with no record for itself
measures at load (briefly) and keeps the record in a cache (``$LATENTDIAL_GRAPH_CHOICE_CACHE`` or
``~/.cache/latentdial/graph-choice``, else the temporary directory when home is not writable),
never in the model directory, which may be read-only. ``LATENTDIAL_GRAPH_CHOICE=off`` skips measuring at load and
serves the main file with the tuned options (the behaviour before the choice existed).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import math
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from latentdial.manifest import Graph, Manifest

log = logging.getLogger("latentdial.serving.runtimes")  # its messages are about serving

RUNTIME = "onnxruntime-cpu"
#: Session option sets: graph optimisation level, threading, execution mode. Intra-op threads and
#: spinning always come from the caller's RuntimeOptions (the server's share of the host).
SESSION_SETS: dict[str, dict[str, Any]] = {
    # one inter-op thread, sequential: the graphs are a plain chain (the choice before measuring)
    "tuned": {"graph_optimization_level": "ORT_ENABLE_ALL", "inter_op_threads": 1,
              "execution_mode": "ORT_SEQUENTIAL"},
    # ONNX Runtime's own defaults
    "ort-default": {},
    # no layout transformation (NCHWc) of the convolutions
    "extended": {"graph_optimization_level": "ORT_ENABLE_EXTENDED", "inter_op_threads": 1,
                 "execution_mode": "ORT_SEQUENTIAL"},
}
DEFAULT_SET = "tuned"
#: What ``latentdial serve`` runs with (serving/repository.py SERVING_RUNTIME_OPTIONS): every usable
#: CPU (0) and no spinning. Export measures with these, so its record applies to the server.
SERVER_THREADS = 0
SERVER_SPINNING = False


def usable_cpus() -> int:
    """CPUs this process may run on (container CPU sets included)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def session_options(name: str, threads: int = SERVER_THREADS, spinning: bool = SERVER_SPINNING) -> Any:
    """``onnxruntime.SessionOptions`` of set ``name`` with the caller's intra-op threads (0 = every
    usable CPU) and spinning."""
    import onnxruntime as ort

    if name not in SESSION_SETS:
        raise ValueError(f"unknown session option set {name!r}; valid: {list(SESSION_SETS)}")
    spec = SESSION_SETS[name]
    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                            spec.get("graph_optimization_level", "ORT_ENABLE_ALL"))
    opts.intra_op_num_threads = threads or usable_cpus()
    if "inter_op_threads" in spec:
        opts.inter_op_num_threads = spec["inter_op_threads"]
    if "execution_mode" in spec:
        opts.execution_mode = getattr(ort.ExecutionMode, spec["execution_mode"])
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return opts


def host_info(threads: int = SERVER_THREADS, spinning: bool = SERVER_SPINNING) -> dict[str, Any]:
    """What a timing depends on: CPU model, threads, ONNX Runtime version, machine."""
    import onnxruntime as ort

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu or "unknown", "machine": platform.machine(), "threads": threads or usable_cpus(),
            "spinning": spinning, "onnxruntime": ort.__version__}


def host_key(threads: int = SERVER_THREADS, spinning: bool = SERVER_SPINNING) -> str:
    """The key of this host's records in ``Manifest.graph_choice``."""
    h = host_info(threads, spinning)
    return (f"{RUNTIME} | {h['cpu']} | {h['machine']} | {h['threads']} threads | "
            f"spinning {'on' if h['spinning'] else 'off'} | onnxruntime {h['onnxruntime']}")


def candidates(manifest: Manifest, graph: Graph) -> list[tuple[str, str]]:
    """Every (file, session set) pair that can serve ``graph`` at fp32 on ONNX Runtime CPU."""
    return [(f.path, s) for f in manifest.alternatives(graph, "fp32", "onnx") for s in SESSION_SETS]


def _rate(session: Any, feed: dict[str, np.ndarray], n: int, window_s: float) -> float:
    """Images/s of repeated runs for at least ``window_s`` (and two runs)."""
    runs, t0 = 0, time.perf_counter()
    while runs < 2 or time.perf_counter() - t0 < window_s:
        session.run(None, feed)
        runs += 1
    return runs * n / (time.perf_counter() - t0)


def _inputs(manifest: Manifest, graph: Graph, batch: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    if graph == "encoder":
        return rng.random((batch, *manifest.image_shape), dtype=np.float32)
    return rng.standard_normal((batch, manifest.latent_dim)).astype(np.float32)


def measure(model_dir: Path, manifest: Manifest, graph: Graph, threads: int = SERVER_THREADS,
            spinning: bool = SERVER_SPINNING, *, repeats: int = 5, window_s: float = 0.2) -> dict[str, Any]:
    """Time every candidate on this host in ``repeats`` interleaved rounds; the record of the winner."""
    import onnxruntime as ort

    batches = sorted({1, int(manifest.batch_profile.get("opt", 64))})
    name = manifest.io[graph]["inputs"][0]
    feeds = {b: {name: _inputs(manifest, graph, b)} for b in batches}
    sessions = {}
    for path, s in candidates(manifest, graph):
        sess = ort.InferenceSession(str(Path(model_dir) / path), session_options(s, threads, spinning),
                                    providers=["CPUExecutionProvider"])
        for feed in feeds.values():
            sess.run(None, feed)  # first runs allocate; not timed
        sessions[(path, s)] = sess
    rates: dict[tuple[str, str], dict[int, list[float]]] = {k: {b: [] for b in batches} for k in sessions}
    for _ in range(repeats):
        for key, sess in sessions.items():
            for b in batches:
                rates[key][b].append(_rate(sess, feeds[b], b, window_s))
    rows = [candidate_row(path, s, rates[(path, s)]) for path, s in sessions]
    rows.sort(key=lambda r: r["score"], reverse=True)
    best = rows[0]
    return {"file": best["file"], "session": best["session"], "score": best["score"],
            "batches": batches, "repeats": repeats, "window_s": window_s, "candidates": rows,
            "measured": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}


def candidate_row(path: str, session: str, rates: dict[int, list[float]]) -> dict[str, Any]:
    """Median images/s per batch, score (their geometric mean) and spread of one candidate's rounds."""
    batches = sorted(rates)
    per_round = [math.exp(sum(math.log(rates[b][i]) for b in batches) / len(batches))
                 for i in range(len(rates[batches[0]]))]
    score = float(np.median(per_round))
    return {"file": path, "session": session, "score": round(score, 1),
            "images_per_s": {str(b): round(float(np.median(rates[b])), 1) for b in batches},
            "spread": round((max(per_round) - min(per_round)) / score, 4) if score else 0.0}


def _cache_paths(manifest: Manifest, graph: Graph, key: str) -> list[Path]:
    """Where a measured choice is kept: the configured cache, then the temporary directory (for a
    server user without a writable home, e.g. the container's)."""
    env = os.environ.get("LATENTDIAL_GRAPH_CHOICE_CACHE")
    roots = [Path(env) if env else Path.home() / ".cache" / "latentdial" / "graph-choice",
             Path(tempfile.gettempdir()) / f"latentdial-graph-choice-{os.getuid()}"]
    files = "".join(f.sha256 for f in manifest.alternatives(graph, "fp32", "onnx"))
    digest = hashlib.sha256(f"{key}\n{files}".encode()).hexdigest()[:24]
    return [root / f"{manifest.name}-{manifest.version}-{graph}-{digest}.json" for root in roots]


def _read_cached(paths: list[Path]) -> tuple[dict[str, Any], Path] | None:
    for path in paths:
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if rec.get("session") in SESSION_SETS:
            return rec, path
    return None


def _keep(paths: list[Path], rec: dict[str, Any]) -> None:
    """Write the record to the first cache location that takes it (atomically)."""
    for path in paths:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(rec, indent=1))
            tmp.replace(path)
            return
        except OSError as e:
            log.info("cannot keep the graph choice in %s: %s", path.parent, e)
    log.warning("the graph choice could not be kept anywhere; it will be measured again at the next load")


def recorded(manifest: Manifest, graph: Graph, key: str) -> dict[str, Any] | None:
    """The manifest's record for ``graph`` on the host ``key``, if its file is still listed."""
    rec = manifest.graph_choice.get(key, {}).get(graph)
    listed = {f.path for f in manifest.alternatives(graph, "fp32", "onnx")}
    if rec and rec.get("file") in listed and rec.get("session") in SESSION_SETS:
        return rec
    return None


def choose(model_dir: Path, manifest: Manifest, graph: Graph, threads: int = SERVER_THREADS,
           spinning: bool = SERVER_SPINNING) -> tuple[str, str, str]:
    """(file, session set, where the choice came from) to serve ``graph`` on ONNX Runtime CPU here.

    In order: the manifest's record for this host, the cache's, a measurement now (stored in the
    cache), or, with ``LATENTDIAL_GRAPH_CHOICE=off``, the main file with the tuned options.
    """
    main = manifest.graph_file(graph, "fp32", "onnx").path
    key = host_key(threads, spinning)
    rec = recorded(manifest, graph, key)
    if rec is not None:
        return rec["file"], rec["session"], "manifest"
    if os.environ.get("LATENTDIAL_GRAPH_CHOICE", "").lower() == "off":
        return main, DEFAULT_SET, "default (LATENTDIAL_GRAPH_CHOICE=off)"
    paths = _cache_paths(manifest, graph, key)
    cached = _read_cached(paths)
    if cached is not None:
        return cached[0]["file"], cached[0]["session"], f"cache {cached[1]}"
    t0 = time.perf_counter()
    rec = measure(model_dir, manifest, graph, threads, spinning, repeats=3, window_s=0.05)
    log.info("%s/%s %s: timed %d candidates on this host in %.1f s; fastest %s with %s options (%s)",
             manifest.name, manifest.version, graph, len(rec["candidates"]), time.perf_counter() - t0,
             rec["file"], rec["session"], ", ".join(f"{c['file']}/{c['session']} {c['score']:.0f}"
                                                    for c in rec["candidates"]))
    _keep(paths, rec | {"host": host_info(threads, spinning)})
    return rec["file"], rec["session"], "measured at load"
