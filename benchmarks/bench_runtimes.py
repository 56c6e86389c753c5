"""Images/s of every runtime available here, encoder and decoder, side by side in one run.

    python benchmarks/bench_runtimes.py [--run-dir RUN] [--batches 1,8,64,256] [--json out.json]

Without --run-dir an untrained model of the default architecture (conv64, 1x64x64,
10 latents) is exported into a temporary directory; speed does not depend on the
weights. Runtimes: torch eager (the fp32 training modules), ONNX Runtime on the raw
exported graph with default session options ("ort-fp32"), on the onnxslim-optimised
graph with tuned session options ("ort-optimised"), the INT8 variant if the export
kept it, and on a GPU host every GPU runtime that loads (tensorrt, onnxruntime-tensorrt,
onnxruntime-cuda, torch-cuda). Rounds alternate between runtimes so that background
load on a shared machine hits all of them alike; the figure is the median round.
Ratios are against torch eager at the same batch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run-dir", type=Path, help="a training run directory (default: an untrained model)")
    p.add_argument("--batches", default="1,8,64,256")
    p.add_argument("--rounds", type=int, default=5, help="alternating measurement rounds (median is kept)")
    p.add_argument("--items-per-round", type=int, default=512, help="images per runtime per round")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch and ORT (0: all usable)")
    p.add_argument("--exporter", choices=("dynamo", "torchscript"), default="dynamo")
    p.add_argument("--json", type=Path, help="also write the results here")
    return p.parse_args(argv)


def make_run_dir(root: Path) -> Path:
    import torch

    from latentdial.training.model import ModelConfig, build_model
    from latentdial.training.run_dir import save_weights

    torch.manual_seed(0)
    cfg = ModelConfig()
    run = root / "run"
    run.mkdir()
    save_weights(build_model(cfg), run / "model.safetensors")
    (run / "config.json").write_text(json.dumps({"model": cfg.to_dict(), "dataset": {"name": "dsprites"},
                                                 "objective": {"name": "untrained"}}))
    return run


def build_runtimes(run_dir: Path, work: Path, args, max_batch: int) -> tuple[dict, object]:
    """name -> {graph: callable(x) -> outputs}; plus the manifest."""
    import torch

    from latentdial.export import graphs
    from latentdial.export.bundle import export_run
    from latentdial.serving.runtimes.base import RuntimeOptions
    from latentdial.serving.runtimes.onnxruntime_cpu import OrtCpuRuntime, usable_cpus
    from latentdial.serving.runtimes.selection import available_runtimes, load_runtime
    from latentdial.training.run_dir import load_run

    threads = args.threads or usable_cpus()
    torch.set_num_threads(threads)
    model_dir = work / "model" / "1"
    manifest = export_run(run_dir, model_dir, variant_names="fp16,int8", exporter=args.exporter,
                          report=lambda s: print("  " + s, file=sys.stderr))
    model = load_run(run_dir).model
    runtimes: dict[str, dict[str, Callable]] = {"torch-eager": {}, "ort-fp32": {}, "ort-optimised": {}}
    for graph in ("encoder", "decoder"):
        module = graphs.graph_module(model, graph)

        @torch.inference_mode()
        def eager(x, module=module):
            return module(torch.from_numpy(x))

        runtimes["torch-eager"][graph] = eager
        raw = graphs.export_onnx(module, graph, graphs.example_input(graph, manifest.image_shape,
                                                                     manifest.latent_dim),
                                 work / f"{graph}.raw.onnx", exporter=args.exporter)
        name = manifest.io[graph]["inputs"][0]
        options = RuntimeOptions(intra_op_threads=threads)
        plain = OrtCpuRuntime(raw, max_batch_size=max_batch, tuned=False, options=options)
        tuned = OrtCpuRuntime(model_dir / manifest.graph_file(graph).path, max_batch_size=max_batch,
                              options=options)
        runtimes["ort-fp32"][graph] = lambda x, r=plain, n=name: r.run({n: x})
        runtimes["ort-optimised"][graph] = lambda x, r=tuned, n=name: r.run({n: x})
        if any(f.graph == graph and f.precision == "int8" for f in manifest.files):
            int8 = OrtCpuRuntime(model_dir / manifest.graph_file(graph, "int8").path,
                                 max_batch_size=max_batch, options=options)
            runtimes.setdefault("ort-int8", {})[graph] = lambda x, r=int8, n=name: r.run({n: x})
        for gpu_name in ("tensorrt", "onnxruntime-tensorrt", "onnxruntime-cuda", "torch-cuda"):
            for precision in ("fp32", "fp16"):
                if available_runtimes(manifest, graph)[gpu_name] is not None:
                    continue
                try:
                    rt = load_runtime(model_dir, manifest, graph, preference=gpu_name,
                                      precision=precision, max_batch_size=max_batch,
                                      engine_cache_dir=work / "engines")
                except (RuntimeError, OSError, ValueError) as e:  # one broken GPU runtime must not end the run
                    print(f"  {gpu_name} {precision}: {e}", file=sys.stderr)
                    continue
                runtimes.setdefault(f"{gpu_name}-{precision}", {})[graph] = (
                    lambda x, r=rt, n=name: r.run({n: x}))
    return runtimes, manifest


def measure(runtimes: dict, manifest, batches: list[int], rounds: int, items: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for graph in ("encoder", "decoder"):
        names = [n for n in runtimes if graph in runtimes[n]]
        for batch in batches:
            if graph == "encoder":
                x = rng.random((batch, *manifest.image_shape), dtype=np.float32)
            else:
                x = rng.standard_normal((batch, manifest.latent_dim), dtype=np.float32)
            calls = max(1, items // batch)
            rates: dict[str, list[float]] = {n: [] for n in names}
            for n in names:
                runtimes[n][graph](x)  # warm-up
            for _ in range(rounds):
                for n in names:
                    fn = runtimes[n][graph]
                    t0 = time.perf_counter()
                    for _ in range(calls):
                        fn(x)
                    rates[n].append(calls * batch / (time.perf_counter() - t0))
            base = statistics.median(rates["torch-eager"])
            for n in names:
                med = statistics.median(rates[n])
                rows.append({"graph": graph, "batch": batch, "runtime": n, "images_per_s": med,
                             "vs_torch_eager": med / base})
            print(f"  {graph} batch {batch}: done", file=sys.stderr)
    return rows


def markdown(rows: list[dict], batches: list[int]) -> str:
    lines = ["| graph | runtime | " + " | ".join(f"batch {b}" for b in batches) + " |",
             "|---|---|" + "---:|" * len(batches)]
    seen = []
    for r in rows:
        if (r["graph"], r["runtime"]) not in seen:
            seen.append((r["graph"], r["runtime"]))
    for graph, name in seen:
        cells = []
        for b in batches:
            r = next(x for x in rows if x["graph"] == graph and x["runtime"] == name and x["batch"] == b)
            cells.append(f"{r['images_per_s']:,.0f} ({r['vs_torch_eager']:.2f}x)")
        lines.append(f"| {graph} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    import onnxruntime
    import torch

    from latentdial.machine_load import LoadWatch
    from latentdial.serving.runtimes.onnxruntime_cpu import usable_cpus

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run_dir = args.run_dir or make_run_dir(work)
        print(f"exporting {run_dir} ...", file=sys.stderr)
        runtimes, manifest = build_runtimes(run_dir, work, args, max(batches))
        print(f"measuring {sorted(runtimes)} ...", file=sys.stderr)
        with LoadWatch("bench_runtimes") as watch:  # warns loudly on stderr when the machine was busy
            rows = measure(runtimes, manifest, batches, args.rounds, args.items_per_round)
    threads = args.threads or usable_cpus()
    header = (f"images/s (ratio vs torch eager); {threads} CPU threads; torch {torch.__version__}, "
              f"onnxruntime {onnxruntime.__version__}; model {manifest.image_shape} -> {manifest.latent_dim}")
    print(header)
    print(markdown(rows, batches))
    print(f"\n{watch.report.line()}")
    if args.json:
        args.json.write_text(json.dumps({"header": header, "rows": rows, "load": watch.report.as_dict()},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
