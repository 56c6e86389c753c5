"""Export a training run directory to a model directory (``models/<name>/<version>/``).

Steps, per graph (encoder, decoder):

1. torch -> ONNX (opset >= 17, dynamic batch, fixed I/O names), ``onnx.checker``;
2. parity of ONNX Runtime against torch on random batches of several sizes
   (:data:`~latentdial.export.parity.PARITY_BATCHES`), fail above 1e-4;
3. onnxslim optimisation, parity re-checked on the optimised file;
4. optional ``torch.export`` program (.pt2) for the torch runtime, parity-checked;
5. optional FP16 (checked against the fp32 reference at FP16_TOLERANCE) and INT8
   (kept only if faster at an acceptable error; the measurement goes into the notes).

Everything is written into a temporary sibling directory which is renamed to the
model directory only when every check passed, so a failed export never leaves a
half-written directory that looks like a valid model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentdial.export import graphs, parity, variants
from latentdial.manifest import Graph, GraphFile, Manifest, sha256_file
from latentdial.provenance import code_version

VARIANTS = ("fp16", "int8")
Report = Callable[[str], None]


class ExportError(RuntimeError):
    """The export could not be completed; nothing was written to the model directory."""


def parse_variants(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """"fp16,int8" -> ("fp16", "int8"); unknown names raise ExportError listing the valid ones."""
    if not spec:
        return ()
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    bad = [n for n in names if n not in VARIANTS]
    if bad:
        raise ExportError(f"unknown variant(s) {bad}; valid: {list(VARIANTS)}")
    return tuple(dict.fromkeys(names))


def _library_versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import onnxslim
    import torch

    return {"torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "onnxslim": onnxslim.__version__}


def _export_graph(
    model, graph: Graph, image_shape: tuple[int, int, int], latent_dim: int, out: Path, *,
    opset: int, exporter: graphs.Exporter, variant_names: tuple[str, ...], torch_program: bool,
    batches: Sequence[int], speed_rounds: int, report: Report,
) -> list[GraphFile]:
    """Write and check every file of one graph into ``out``; return their manifest entries."""
    module = graphs.graph_module(model, graph)
    example = graphs.example_input(graph, image_shape, latent_dim)
    reference = parity.torch_fn(module)

    def diff_to_torch(path: Path) -> float:
        return parity.max_abs_diff(reference, parity.ort_fn(path), graph, image_shape, latent_dim,
                                   batches=batches)

    raw = graphs.export_onnx(module, graph, example, out / f"{graph}.raw.onnx", opset=opset,
                             exporter=exporter)
    d_raw = diff_to_torch(raw)
    report(f"{graph}: ONNX Runtime vs torch, batches {list(batches)}: max abs diff {d_raw:.3g}")
    parity.require(d_raw, parity.FP32_TOLERANCE, f"{graph} (exported ONNX vs torch)")

    fp32 = graphs.optimise_onnx(raw, out / f"{graph}.onnx")
    d_opt = diff_to_torch(fp32)
    report(f"{graph}: after onnxslim: max abs diff {d_opt:.3g}")
    parity.require(d_opt, parity.FP32_TOLERANCE, f"{graph} (optimised ONNX vs torch)")
    notes: dict[str, Any] = {"opset": opset, "exporter": exporter,
                             "optimised": "onnxslim", "parity_batches": list(batches),
                             "max_abs_error_before_optimisation": d_raw,
                             "tolerance": parity.FP32_TOLERANCE}
    # the raw export stays beside the optimised file: which serves faster is measured (graph_choice)
    raw_notes = {"opset": opset, "exporter": exporter, "optimised": "none", "parity_batches": list(batches),
                 "tolerance": parity.FP32_TOLERANCE}
    files = [GraphFile(graph, fp32.name, "", "fp32", d_opt, notes),
             GraphFile(graph, raw.name, "", "fp32", d_raw, raw_notes, variant="raw")]

    if "fp16" in variant_names:
        path = variants.convert_fp16(fp32, out / f"{graph}.fp16.onnx")
        d16 = diff_to_torch(path)
        report(f"{graph}: fp16 (float32 I/O) vs torch fp32: max abs diff {d16:.3g} "
               f"(tolerance {variants.FP16_TOLERANCE})")
        parity.require(d16, variants.FP16_TOLERANCE, f"{graph} (fp16 variant vs fp32 torch)")
        files.append(GraphFile(graph, path.name, "", "fp16", d16, {
            "io_dtype": "float32", "tolerance": variants.FP16_TOLERANCE,
            "intended_for": "GPU (TensorRT, CUDA EP); slower than fp32 on CPU"}))

    if "int8" in variant_names:
        path = variants.quantise_int8(fp32, out / f"{graph}.int8.onnx", graph, image_shape, latent_dim)
        d8 = diff_to_torch(path)
        rng = np.random.default_rng(2)
        speed = variants.compare_speed(fp32, path, parity.random_batch(
            graph, image_shape, latent_dim, 64, rng), rounds=speed_rounds, threads=1)
        keep = d8 <= variants.INT8_TOLERANCE and speed.speedup >= variants.INT8_MIN_SPEEDUP
        measurement = {"max_abs_error": d8, "tolerance": variants.INT8_TOLERANCE,
                       "min_speedup": variants.INT8_MIN_SPEEDUP, "kept": keep,
                       "machine": "ONNX Runtime CPU on the exporting host, 1 thread",
                       **speed.to_notes()}
        report(f"{graph}: int8 vs torch fp32: max abs diff {d8:.3g}, "
               f"{speed.speedup:.2f}x fp32 speed at batch {speed.batch} -> "
               f"{'kept' if keep else 'dropped'}")
        if keep:
            files.append(GraphFile(graph, path.name, "", "int8", d8,
                                   {"quantisation": "static QDQ, per-channel",
                                    **measurement}))
        else:
            path.unlink()
        notes["int8_measurement"] = measurement

    if torch_program:
        import torch

        path = graphs.export_program(module, graph, example, out / f"{graph}.pt2")
        program = torch.export.load(str(path)).module()
        d_pt = parity.max_abs_diff(reference, parity.torch_fn(program), graph, image_shape,
                                   latent_dim, batches=batches)
        parity.require(d_pt, parity.FP32_TOLERANCE, f"{graph} (torch.export program vs torch)")
        files.append(GraphFile(graph, path.name, "", "fp32", d_pt, {"torch": torch.__version__},
                               format="torch-export"))
    return files


def choose_graphs(model_dir: Path, manifest: Manifest, rounds: int, report: Report) -> dict[str, Any]:
    """This host's ``graph_choice`` record: the fastest (file, session options) per graph, with every figure."""
    from latentdial import graph_choice

    record: dict[str, Any] = {"host": graph_choice.host_info(), "runtime": graph_choice.RUNTIME}
    for graph in ("encoder", "decoder"):  # with the server's threads and spinning (the defaults)
        rec = graph_choice.measure(model_dir, manifest, graph, repeats=rounds, window_s=0.1)
        record[graph] = rec
        others = ", ".join(f"{c['file']}/{c['session']} {c['score']:,.0f} (spread {c['spread']:.0%})"
                           for c in rec["candidates"])
        report(f"{graph}: serves {rec['file']} with {rec['session']} options on this host; "
               f"images/s score (batches {rec['batches']}): {others}")
    return {graph_choice.host_key(): record}


@contextlib.contextmanager
def staged_model_dir(model_dir: Path) -> Iterator[Path]:
    """A fresh temporary directory beside ``model_dir`` to write a model version into. It is
    removed when the block raises; :func:`publish_model_dir` renames it into place at the end."""
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}.partial-", dir=model_dir.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def with_hashes(files: Sequence[GraphFile], root: Path) -> list[GraphFile]:
    """``files`` with the sha256 of each as it lies under ``root``, for the manifest."""
    return [dataclasses.replace(f, sha256=sha256_file(root / f.path)) for f in files]


def publish_model_dir(tmp: Path, model_dir: Path, manifest: Manifest) -> None:
    """Write ``manifest`` into the finished temporary directory ``tmp``, check every file against
    it, then move ``tmp`` to ``model_dir`` in one rename (an existing version is swapped out and
    dropped), so a reader never sees a half-written model directory."""
    json.dumps(manifest.to_dict())  # fail here, not half-way through writing
    manifest.save(tmp)
    tmp.chmod(0o755)  # mkdtemp creates 0700; a model directory is read by the serving user
    Manifest.load(tmp).verify_files(tmp)
    if model_dir.exists():  # overwrite: swap, then drop the old directory
        old = model_dir.with_name(f".{model_dir.name}.old-{_dt.datetime.now().timestamp():.0f}")
        model_dir.rename(old)
        tmp.rename(model_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(model_dir)


def export_run(
    run_dir: Path,
    model_dir: Path,
    *,
    name: str | None = None,
    version: str | None = None,
    variant_names: Sequence[str] = (),
    opset: int = 17,
    exporter: graphs.Exporter = "dynamo",
    torch_program: bool = True,
    batches: Sequence[int] = parity.PARITY_BATCHES,
    overwrite: bool = False,
    speed_rounds: int = 5,
    choice_rounds: int = 5,
    report: Report = print,
) -> Manifest:
    """Export ``run_dir`` into ``model_dir`` and return the written manifest.

    name/version default to the last two components of ``model_dir``
    (``models/<name>/<version>``). speed_rounds: alternating rounds of the INT8-vs-fp32
    timing (single-threaded, so that a busy machine distorts both sides alike). choice_rounds:
    interleaved rounds timing every (graph file, session options) candidate with the server's
    settings on this host, recorded in the manifest's ``graph_choice`` (0 skips it; serving then
    measures at load). Raises ExportError (or ParityError) on any failed check, leaving
    ``model_dir`` untouched.
    """
    import torch

    from latentdial.training.run_dir import load_run
    from latentdial.training.stargan.run import is_stargan_run

    if is_stargan_run(Path(run_dir)):  # a model of kind "editor": classifier + editor graphs
        from latentdial.export.editor import export_editor_run

        return export_editor_run(run_dir, model_dir, name=name, version=version, variant_names=variant_names,
                                 opset=opset, exporter=exporter, torch_program=torch_program, batches=batches,
                                 overwrite=overwrite, report=report)
    run_dir, model_dir = Path(run_dir), Path(model_dir)
    variant_names = parse_variants(variant_names)
    if model_dir.exists() and not overwrite:
        raise ExportError(f"{model_dir} already exists; pick a new version or pass --overwrite")
    try:
        run = load_run(run_dir)
    except (FileNotFoundError, KeyError, TypeError) as e:
        raise ExportError(f"cannot load the run directory {run_dir}: {e}") from e
    cfg = run.model.config
    image_shape = (cfg.channels, cfg.image_size, cfg.image_size)
    name = name or model_dir.parent.name or "model"
    version = version or model_dir.name

    with staged_model_dir(model_dir) as tmp:
        files: list[GraphFile] = []
        with torch.no_grad():
            for graph in ("encoder", "decoder"):
                files += _export_graph(
                    run.model, graph, image_shape, cfg.latent_dim, tmp, opset=opset,
                    exporter=exporter, variant_names=variant_names, torch_program=torch_program,
                    batches=batches, speed_rounds=speed_rounds, report=report)
        files = with_hashes(files, tmp)
        manifest = Manifest(
            name=name, version=str(version), image_shape=image_shape, latent_dim=cfg.latent_dim,
            files=files, factor_card=run.factor_card.to_dict() if run.factor_card else None,
            metrics={k: float(v) for k, v in run.metrics.items() if isinstance(v, int | float)},
            provenance={
                "run_dir": str(run_dir.resolve()),
                "dataset": run.config.get("dataset"),
                "objective": run.config.get("objective"),
                "config": run.config,
                "weights_metadata": run.weights_metadata,
                "code_version": code_version(),
                "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "versions": _library_versions(),
                "variants_requested": list(variant_names),
            },
        )
        if choice_rounds > 0:
            manifest.graph_choice = choose_graphs(tmp, manifest, choice_rounds, report)
        publish_model_dir(tmp, model_dir, manifest)
    report(f"wrote {model_dir} ({', '.join(f.path for f in manifest.files)})")
    return manifest
