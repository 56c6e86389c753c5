"""Export a StarGAN run to a model directory of kind "editor" (latentdial/manifest.py).

Two graphs, with the contract's names and a dynamic batch axis:

- ``classifier``: ``images`` (N, C, H, W) float32 in [0, 1] -> ``codes`` (N, D) float32, the
  factor codes in the values the factor card describes;
- ``editor``: ``images`` (N, C, H, W) in [0, 1] and ``codes`` (N, D) target codes -> ``edited``
  (N, C, H, W) in [0, 1] (the sigmoid is inside).

Each graph goes through the VAE export's steps (export/bundle.py): torch -> ONNX (opset >= 17,
``onnx.checker``), parity of ONNX Runtime against torch on the batch sizes of
:data:`~latentdial.export.parity.PARITY_BATCHES` (fail above ``FP32_TOLERANCE``), onnxslim with
parity re-checked, the raw export kept beside it as the "raw" variant, and an optional
``torch.export`` program. Parity inputs: images uniform in [0, 1]; codes drawn from the card's
code tables (the values a server sends). Precision variants and the graph choice measurement are
not done for editor models. Everything is written into a temporary sibling directory renamed into
place only when every check passed.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentdial.export.bundle import publish_model_dir, staged_model_dir, with_hashes
from latentdial.manifest import GraphFile, Manifest
from latentdial.provenance import code_version

Report = Callable[[str], None]
GRAPH_IO: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    graph: (tuple(io["inputs"]), tuple(io["outputs"])) for graph, io in Manifest.default_io("editor").items()
}


def parity_inputs(graph: str, image_shape: Sequence[int], card_tables: list[tuple[list[int], np.ndarray]],
                  code_dim: int, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random inputs of ``graph`` for ``n`` images: images uniform in [0, 1] (N, C, H, W) and,
    for the editor, codes (N, D) made of random rows of each factor's code table."""
    images = rng.random((n, *image_shape), dtype=np.float32)
    if graph == "classifier":
        return {"images": images}
    codes = np.zeros((n, code_dim), dtype=np.float32)
    for dims, table in card_tables:
        codes[:, dims] = table[rng.integers(0, len(table), size=n)]
    return {"images": images, "codes": codes}


def _torch_run(module) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
    import torch

    @torch.no_grad()
    def fn(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        out = module(*(torch.from_numpy(v) for v in inputs.values()))
        return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]
    return fn


def _ort_run(path: Path) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return lambda inputs: [np.asarray(o, dtype=np.float32) for o in sess.run(None, inputs)]


def max_abs_diff(a, b, graph: str, image_shape: Sequence[int], card_tables, code_dim: int, *,
                 batches: Sequence[int], seed: int = 0) -> float:
    """Largest |a - b| over every output and batch size (shapes must agree, b must be finite)."""
    from latentdial.export.parity import ParityError

    rng = np.random.default_rng(seed)
    worst = 0.0
    for n in batches:
        inputs = parity_inputs(graph, image_shape, card_tables, code_dim, n, rng)
        for ya, yb in zip(a(inputs), b(inputs), strict=True):
            if ya.shape != yb.shape or not np.all(np.isfinite(yb)):
                raise ParityError(f"{graph} batch {n}: output {yb.shape} (finite: {np.all(np.isfinite(yb))}) "
                                  f"vs torch {ya.shape}")
            worst = max(worst, float(np.max(np.abs(ya.astype(np.float64) - yb.astype(np.float64)))))
    return worst


def export_onnx(module, graph: str, example: tuple, path: Path, *, opset: int, exporter: str) -> Path:
    """``module`` as ONNX with the contract's I/O names and a dynamic batch on every input; checked."""
    import onnx
    import torch

    from latentdial.export.graphs import MAX_TRACE_BATCH

    if opset < 17:
        raise ValueError(f"opset {opset} is too old; latentdial exports opset >= 17")
    inputs, outputs = GRAPH_IO[graph]
    if set(inputs) & set(outputs):  # ONNX Runtime and onnx.checker refuse such a file
        raise ValueError(f"{graph}: the contract names an output like an input ({inputs} -> {outputs}); "
                         "an ONNX graph cannot (latentdial/manifest.py)")
    if exporter == "dynamo":
        batch = torch.export.Dim("batch", min=1, max=MAX_TRACE_BATCH)
        program = torch.onnx.export(module, example, dynamo=True, opset_version=opset, input_names=list(inputs),
                                    output_names=list(outputs), dynamic_shapes={k: {0: batch} for k in inputs},
                                    verbose=False)
        program.save(str(path))
    elif exporter == "torchscript":
        torch.onnx.export(module, example, str(path), dynamo=False, opset_version=opset,
                          input_names=list(inputs), output_names=list(outputs),
                          dynamic_axes={k: {0: "batch"} for k in (*inputs, *outputs)})
    else:
        raise ValueError(f"unknown exporter {exporter!r}; valid: ['dynamo', 'torchscript']")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    got = (tuple(i.name for i in model.graph.input), tuple(o.name for o in model.graph.output))
    if got != (inputs, outputs):
        raise ValueError(f"{graph}: exported I/O {got}, expected {(inputs, outputs)}")
    for value in (*model.graph.input, *model.graph.output):
        if value.type.tensor_type.shape.dim[0].HasField("dim_value"):
            raise ValueError(f"{graph}: {value.name} has a fixed batch; must be dynamic")
    return Path(path)


def _export_graph(module, graph: str, image_shape, card_tables, code_dim: int, out: Path, *, opset: int,
                  exporter: str, torch_program: bool, batches: Sequence[int], report: Report) -> list[GraphFile]:
    import torch

    from latentdial.export import graphs, parity

    example = tuple(torch.from_numpy(v) for v in parity_inputs(
        graph, image_shape, card_tables, code_dim, 2, np.random.default_rng(1)).values())
    reference = _torch_run(module)

    def diff(run) -> float:
        return max_abs_diff(reference, run, graph, image_shape, card_tables, code_dim, batches=batches)

    raw = export_onnx(module, graph, example, out / f"{graph}.raw.onnx", opset=opset, exporter=exporter)
    d_raw = diff(_ort_run(raw))
    report(f"{graph}: ONNX Runtime vs torch, batches {list(batches)}: max abs diff {d_raw:.3g}")
    parity.require(d_raw, parity.FP32_TOLERANCE, f"{graph} (exported ONNX vs torch)")
    fp32 = graphs.optimise_onnx(raw, out / f"{graph}.onnx")
    d_opt = diff(_ort_run(fp32))
    report(f"{graph}: after onnxslim: max abs diff {d_opt:.3g}")
    parity.require(d_opt, parity.FP32_TOLERANCE, f"{graph} (optimised ONNX vs torch)")
    notes: dict[str, Any] = {"opset": opset, "exporter": exporter, "parity_batches": list(batches),
                             "tolerance": parity.FP32_TOLERANCE}
    files = [GraphFile(graph, fp32.name, "", "fp32", d_opt,  # type: ignore[arg-type]
                       {**notes, "optimised": "onnxslim", "max_abs_error_before_optimisation": d_raw}),
             GraphFile(graph, raw.name, "", "fp32", d_raw, {**notes, "optimised": "none"},  # type: ignore[arg-type]
                       variant="raw")]
    if torch_program:
        inputs = GRAPH_IO[graph][0]
        batch = torch.export.Dim("batch", min=1, max=graphs.MAX_TRACE_BATCH)
        program = torch.export.export(module, example, dynamic_shapes={k: {0: batch} for k in inputs})
        path = out / f"{graph}.pt2"
        torch.export.save(program, str(path))
        d_pt = diff(_torch_run(torch.export.load(str(path)).module()))
        parity.require(d_pt, parity.FP32_TOLERANCE, f"{graph} (torch.export program vs torch)")
        files.append(GraphFile(graph, path.name, "", "fp32", d_pt, {"torch": torch.__version__},  # type: ignore[arg-type]
                               format="torch-export"))
    return files


def export_editor_run(run_dir: Path, model_dir: Path, *, name: str | None = None, version: str | None = None,
                      variant_names: str | Sequence[str] = (), opset: int = 17, exporter: str = "dynamo", torch_program: bool = True,
                      batches: Sequence[int] | None = None, overwrite: bool = False,
                      report: Report = print) -> Manifest:
    """Export the StarGAN run ``run_dir`` into ``model_dir`` (module docstring); return the manifest.

    Raises ExportError / ParityError (export/bundle.py, export/parity.py) on a failed check,
    leaving ``model_dir`` untouched.
    """
    import torch

    from latentdial.export import parity
    from latentdial.export.bundle import ExportError, _library_versions, parse_variants
    from latentdial.training.stargan.run import load_stargan_run

    run_dir, model_dir = Path(run_dir), Path(model_dir)
    batches = tuple(batches or parity.PARITY_BATCHES)
    if parse_variants(variant_names):
        raise ExportError(f"precision variants {list(parse_variants(variant_names))} are not exported for "
                          "editor models; export without --variants")
    if model_dir.exists() and not overwrite:
        raise ExportError(f"{model_dir} already exists; pick a new version or pass --overwrite")
    try:
        run = load_stargan_run(run_dir)
    except (FileNotFoundError, KeyError, TypeError, ValueError) as e:
        raise ExportError(f"cannot load the StarGAN run directory {run_dir}: {e}") from e
    m = run.cfg.model
    image_shape = (m.channels, m.image_size, m.image_size)
    code_dim = run.factor_card.latent_dim
    tables = [(list(f.dims), np.asarray(f.latent_table, dtype=np.float32)) for f in run.factor_card.factors]
    name = name or model_dir.parent.name or "model"
    version = version or model_dir.name
    with staged_model_dir(model_dir) as tmp:
        files: list[GraphFile] = []
        with torch.no_grad():
            for graph, module in (("classifier", run.classifier()), ("editor", run.generator.eval())):
                files += _export_graph(module, graph, image_shape, tables, code_dim, tmp, opset=opset,
                                       exporter=exporter, torch_program=torch_program, batches=batches,
                                       report=report)
        files = with_hashes(files, tmp)
        manifest = Manifest(
            name=name, version=str(version), image_shape=image_shape, latent_dim=code_dim, files=files,
            io=Manifest.default_io("editor"), kind="editor", factor_card=run.factor_card.to_dict(),
            provenance={
                "run_dir": str(run_dir.resolve()), "dataset": run.config.get("dataset"),
                "family": run.cfg.family, "objective": run.config.get("objective"), "config": run.config,
                "weights_metadata": run.weights_metadata, "code_version": code_version(),
                "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "versions": _library_versions(),
            },
        )
        publish_model_dir(tmp, model_dir, manifest)
    report(f"wrote {model_dir} ({', '.join(f.path for f in manifest.files)})")
    return manifest
