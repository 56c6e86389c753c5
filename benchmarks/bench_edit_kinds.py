"""EditAttributes on the two model kinds, side by side: a VAE against a StarGAN editor.

One server, one run, the same images and the same edit for both models:

- ``vae``: the shipped semi-supervised VAE ``models/dsprites/5`` (encode -> edit the latents
  by the factor card -> decode);
- ``editor``: a StarGAN editor (Choi et al. 2018) of the full recipe (configs/families/)
  ``configs/families/dsprites_stargan.toml`` (classifier -> edit the codes by the card ->
  editor graph). Only speed is measured, so its weights are untrained: the recipe is trained
  for 2 steps (networks of the recipe's size) and exported with ``latentdial export``, unless
  ``--editor-model DIR`` names an exported editor version to use instead.

Both model versions are copied into a temporary model repository (the repository refuses
files that resolve outside it, so no symlinks) and served by ONE ``latentdial serve`` child
process (``latentdial.serving.embedded.ServerProcess``). The load comes from this process
through the SDK (``latentdial.client.AsyncClient``): closed loop, C callers each sending an
``edit`` of N dataset images (dSprites, uint8) setting ``--factor`` (``scale``) to the middle
value of the model's card, waiting for the answer, sending the next. Each answer is checked:
N images of the model's shape and N x D latents (codes). Cells are (callers, images per
request), ``--warmup`` seconds unmeasured then ``--duration`` seconds measured; each round
measures every cell on both models back to back, the first model alternating between rounds,
so that both see the same machine state; each cell reports its median round (images/s, p50
and p99 latency per request) and the ratio editor / VAE.

The ONNX files of each model (bytes, parameters) are printed with the figures: they are why
the speeds differ. The load average before and after, and the CPU other processes used, are
recorded (``latentdial.machine_load``); a busy machine is reported loudly and its figures must
not be published. Writes ``bench_edit_kinds.json`` and ``bench_edit_kinds.md`` under ``--out``.

Usage::

    python benchmarks/bench_edit_kinds.py                 # 3 cells x 2 models x 3 rounds, about 2 minutes
    python benchmarks/bench_edit_kinds.py --editor-model models/dsprites_stargan/1
    python benchmarks/bench_edit_kinds.py --cells 1x1 --duration 0.2 --warmup 0.05 --repeat 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STARGAN_RECIPE = ROOT / "configs" / "families" / "dsprites_stargan.toml"
DEFAULT_VAE = ROOT / "models" / "dsprites" / "5"
DEFAULT_CELLS = ("1x1", "16x1", "1x64")
KINDS = ("vae", "editor")


@dataclass(frozen=True)
class Cell:
    """One load shape: ``callers`` closed-loop callers, ``images`` images per request."""

    callers: int
    images: int

    @classmethod
    def parse(cls, text: str) -> Cell:
        """``"16x1"`` -> Cell(16, 1)."""
        try:
            c, n = (int(x) for x in text.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"a cell is CALLERSxIMAGES, e.g. 16x1; got {text!r}") from None
        if c < 1 or n < 1:
            raise argparse.ArgumentTypeError(f"callers and images must be >= 1; got {text!r}")
        return cls(c, n)

    def __str__(self) -> str:
        return f"{self.callers}x{self.images}"


@dataclass
class Round:
    """One measured cell of one model in one round."""

    kind: str
    callers: int
    images: int
    requests: int
    seconds: float
    images_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int  # calls that raised
    bad_answers: int  # answers of the wrong shape
    #: every distinct (images shape, latents shape) answered, e.g. [[[64, 64, 64, 1], [64, 6]]]
    answer_shapes: list[list[list[int]]] = field(default_factory=list)
    error_messages: list[str] = field(default_factory=list)


# -------------------------------------------------------------------- setup --
def _run(cmd: list[str], what: str) -> None:
    """Run a setup command on one thread; RuntimeError with its output's tail if it fails."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise RuntimeError(f"{what} failed ({' '.join(cmd)}):\n{tail}")


def build_editor(work: Path, *, steps: int = 2) -> Path:
    """Train the full StarGAN recipe for ``steps`` steps and export it; the model version's directory.

    The weights are untrained (speed only); the networks are the recipe's size.
    """
    run_dir, model_dir = work / "stargan-run", work / "export" / "dsprites_stargan" / "1"
    cli = [sys.executable, "-m", "latentdial.cli"]
    _run([*cli, "train", "--config", str(STARGAN_RECIPE), "--out", str(run_dir), "--set", f"steps={steps}",
          "--set", "checkpoint_every=1", "--no-progress"], "training the StarGAN recipe")
    _run([*cli, "export", str(run_dir), str(model_dir), "--choice-rounds", "0", "--no-torch-program"],
         "exporting the StarGAN run")
    return model_dir


def make_repository(root: Path, model_dirs: list[Path]) -> dict[str, Path]:
    """Copy each model version into ``root/<name>/<version>``; manifest kind -> copied directory."""
    from latentdial.manifest import Manifest

    out = {}
    for d in model_dirs:
        m = Manifest.load(d)
        dest = root / m.name / m.version
        if dest.exists():
            raise ValueError(f"two models named {m.name}/{m.version}")
        shutil.copytree(d, dest, symlinks=False)
        out[m.kind] = dest
    missing = set(KINDS) - set(out)
    if missing:
        raise ValueError(f"no model of kind {', '.join(sorted(missing))} among {[str(d) for d in model_dirs]}")
    return out


def graph_sizes(model_dir: Path) -> list[dict[str, Any]]:
    """Every ONNX file of a model version: graph, precision, variant, bytes and parameter count.

    Parameters are the elements of the graph's initializers (for a quantised file, its int8
    weights and their scales); reading them loads the file, which is cheap at these sizes.
    """
    import onnx

    from latentdial.manifest import Manifest

    rows = []
    for f in Manifest.load(model_dir).files:
        if f.format != "onnx":
            continue
        path = model_dir / f.path
        graph = onnx.load(str(path), load_external_data=False).graph
        params = sum(int(np.prod(t.dims)) for t in graph.initializer)
        rows.append({"graph": f.graph, "file": f.path, "precision": f.precision,
                     "variant": getattr(f, "variant", None) or "", "bytes": path.stat().st_size,
                     "parameters": params, "served": False})
    return rows


SERVED_LINE = re.compile(r"\] (?P<name>\S+)/(?P<version>\S+) (?P<graph>\w+) runs on (?P<runtime>\S+) "
                         r"\((?P<file>[^,]+), (?P<options>[^,]+) options")


def served_files(log_text: str) -> dict[tuple[str, str, str], str]:
    """(name, version, graph) -> "file (runtime, options)" from the server log's "runs on" lines."""
    return {(m["name"], m["version"], m["graph"]): f"{m['file']} ({m['runtime']}, {m['options']} options)"
            for m in SERVED_LINE.finditer(log_text)}


def dataset_images(count: int, seed: int = 0) -> np.ndarray:
    """``count`` dSprites images, (N, 64, 64, 1) uint8, as a client would send them."""
    from latentdial.training.data import get_dataset

    x = get_dataset("dsprites").sample_observations(count, np.random.default_rng(seed))  # (N, C, H, W) in [0, 1]
    return np.ascontiguousarray((np.clip(x, 0, 1) * 255).round().astype(np.uint8).transpose(0, 2, 3, 1))


def edit_of(info, factor: str) -> dict[str, float]:
    """The edit every request sends: ``factor`` set to the middle value of the model's card."""
    by_name = {f.name: f for f in info.factors}
    if factor not in by_name:
        raise ValueError(f"{info.model.name}/{info.model.version} has no factor {factor!r}; "
                         f"its card names {sorted(by_name)}")
    f = by_name[factor]
    if f.values:
        return {factor: float(f.values[len(f.values) // 2])}
    return {factor: (f.min_value + f.max_value) / 2}


# -------------------------------------------------------------------- load --
async def measure_cell(address: str, model: str, kind: str, edit: dict[str, float], shape: tuple[int, int, int],
                       latent_dim: int, pool: np.ndarray, cell: Cell, duration: float, warmup: float) -> Round:
    """Closed loop: ``cell.callers`` coroutines, each sends an edit of ``cell.images`` images and waits."""
    from latentdial.client import AsyncClient
    from latentdial.client.errors import LatentDialError

    lat: list[float] = []
    errors, bad = 0, 0
    messages: list[str] = []
    shapes: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
    want_images, want_latents = (cell.images, *shape), (cell.images, latent_dim)
    batches = [pool[(i * cell.images) % len(pool):][:cell.images] for i in range(8)]
    batches = [b if len(b) == cell.images else pool[:cell.images] for b in batches]
    async with AsyncClient(address, options=[("grpc.max_receive_message_length", 256 << 20)]) as client:
        await client.edit(batches[0], edit, output="uint8", model=model, timeout_s=60)  # connected and warm
        t_measure = time.perf_counter() + warmup
        t_end = t_measure + duration

        async def caller(k: int) -> None:
            nonlocal errors, bad
            i = k
            while (t0 := time.perf_counter()) < t_end:
                try:
                    r = await client.edit(batches[i % len(batches)], edit, output="uint8", model=model, timeout_s=60)
                    got = (tuple(r.images.shape), tuple(r.latents.shape))
                    shapes.add(got)
                    ok = got == (want_images, want_latents)
                except LatentDialError as e:
                    errors += 1
                    if len(messages) < 3:
                        messages.append(str(e)[:200])
                    ok = True
                i += 1
                if t0 >= t_measure:
                    lat.append(time.perf_counter() - t0)
                    bad += not ok

        await asyncio.gather(*(caller(k) for k in range(cell.callers)))
    a = np.asarray(lat) * 1e3
    done = len(lat) - errors
    return Round(kind, cell.callers, cell.images, len(lat), duration, done * cell.images / duration,
                 float(np.percentile(a, 50)) if len(a) else float("nan"),
                 float(np.percentile(a, 99)) if len(a) else float("nan"), errors, bad,
                 sorted([list(i), list(z)] for i, z in shapes), messages)


def median_round(rounds: list[Round]) -> dict[str, Any]:
    """The round with the median images/s, with every round's images/s and the totals of errors."""
    ranked = sorted(rounds, key=lambda r: r.images_per_s)
    pick = asdict(ranked[len(ranked) // 2])
    pick["rounds_images_per_s"] = [r.images_per_s for r in rounds]
    pick["answers"] = sum(r.requests - r.errors for r in rounds)
    pick["errors"] = sum(r.errors for r in rounds)
    pick["bad_answers"] = sum(r.bad_answers for r in rounds)
    pick["answer_shapes"] = sorted({json.dumps(s) for r in rounds for s in r.answer_shapes})
    pick["answer_shapes"] = [json.loads(s) for s in pick["answer_shapes"]]
    pick["error_messages"] = [m for r in rounds for m in r.error_messages][:3]
    return pick


async def measure(address: str, models: dict[str, dict[str, Any]], pool: np.ndarray, args) -> list[dict[str, Any]]:
    """Every cell on both kinds, ``args.repeat`` rounds; one median row per (kind, cell)."""
    rounds: dict[tuple[str, Cell], list[Round]] = {}
    for i in range(args.repeat):
        for cell in args.cells:
            order = KINDS if i % 2 == 0 else KINDS[::-1]  # alternate who goes first
            for kind in order:
                m = models[kind]
                r = await measure_cell(address, m["name"], kind, m["edit"], m["image_hwc"], m["latent_dim"], pool,
                                       cell, args.duration, args.warmup)
                rounds.setdefault((kind, cell), []).append(r)
                print(f"  round {i + 1}/{args.repeat} {kind:>6} {cell!s:>5}: {r.images_per_s:9.1f} img/s  "
                      f"p50 {r.p50_ms:7.2f} ms  p99 {r.p99_ms:7.2f} ms  errors {r.errors}",
                      file=sys.stderr, flush=True)
    return [median_round(rs) for rs in rounds.values()]


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per cell: editor images/s over VAE images/s (and the p50 latencies' ratio)."""
    by = {(r["kind"], r["callers"], r["images"]): r for r in rows}
    out = []
    for (kind, c, n), vae in by.items():
        ed = by.get(("editor", c, n))
        if kind != "vae" or ed is None:
            continue
        out.append({"callers": c, "images": n,
                    "editor_over_vae_images_per_s": ed["images_per_s"] / vae["images_per_s"]
                    if vae["images_per_s"] > 0 else float("nan"),
                    "editor_over_vae_p50": ed["p50_ms"] / vae["p50_ms"] if vae["p50_ms"] > 0 else float("nan")})
    return out


# ------------------------------------------------------------------ report --
def markdown(result: dict[str, Any]) -> str:
    lines = ["## EditAttributes: VAE against StarGAN editor", ""]
    for kind, m in result["models"].items():
        lines.append(f"- **{kind}** `{m['name']}/{m['version']}` (from {m['source']}): edit {m['edit']}; "
                     "served " + (
            "; ".join(f"{g}: {v}" for g, v in m["served"].items()) or m["runtime"]))
    lines += ["", "| model | graph | file | precision | bytes | parameters | served |",
              "|---|---|---|---|---:|---:|---|"]
    for kind, m in result["models"].items():
        for g in m["graphs"]:
            lines.append(f"| {kind} | {g['graph']} | {g['file']} | {g['precision']} | {g['bytes']:,} | "
                         f"{g['parameters']:,} | {'**yes**' if g['served'] else ''} |")
    lines += ["", "| callers x images | VAE img/s | VAE p50 / p99 ms | editor img/s | editor p50 / p99 ms | "
              "editor / VAE img/s | requests VAE / editor |", "|---|---:|---:|---:|---:|---:|---:|"]
    by = {(r["kind"], r["callers"], r["images"]): r for r in result["cells"]}
    for q in result["ratios"]:
        v, e = by[("vae", q["callers"], q["images"])], by[("editor", q["callers"], q["images"])]
        lines.append(f"| {q['callers']} x {q['images']} | {v['images_per_s']:.1f} | {v['p50_ms']:.2f} / "
                     f"{v['p99_ms']:.2f} | {e['images_per_s']:.1f} | {e['p50_ms']:.2f} / {e['p99_ms']:.2f} | "
                     f"{q['editor_over_vae_images_per_s']:.3f} | {v['requests']} / {e['requests']} |")
    meta = result["meta"]
    lines += ["", "Requests: measured requests of the median round (few requests make a loose p99).", "",
              f"Cells: {meta['cells']}. Client: {meta['client']}. Machine: {meta['machine']}.", "",
              f"Load: {result['load']['line']}", ""]
    if result["load"]["busy"]:
        lines += ["**THE MACHINE WAS BUSY: these figures must not be published.**", ""]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vae-model", type=Path, default=DEFAULT_VAE, help="VAE model version directory")
    p.add_argument("--editor-model", type=Path, default=None,
                   help="exported editor version directory (default: train the StarGAN recipe 2 steps and export)")
    p.add_argument("--cells", type=Cell.parse, nargs="+", default=[Cell.parse(c) for c in DEFAULT_CELLS],
                   help="CALLERSxIMAGES per request (default: 1x1 16x1 1x64)")
    p.add_argument("--factor", default="scale", help="factor the edit sets, to the middle value of each card")
    p.add_argument("--duration", type=float, default=3.0, help="measured seconds per cell")
    p.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before each cell")
    p.add_argument("--repeat", type=int, default=3, help="rounds; each cell reports its median round")
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "bench_edit_kinds")
    p.add_argument("--keep", action="store_true", help="keep the temporary repository and server log")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from latentdial.client import AsyncClient
    from latentdial.machine_load import LoadWatch
    from latentdial.manifest import Manifest
    from latentdial.serving.embedded import ServerProcess

    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-edit-kinds-"))
    watch = LoadWatch("bench_edit_kinds").start()  # before the setup: its start reading is the quiet check
    server = None
    try:
        editor_src = args.editor_model
        if editor_src is None:
            print("training and exporting the StarGAN recipe (2 steps) ...", file=sys.stderr, flush=True)
            editor_src = build_editor(work)
        sources = {Manifest.load(args.vae_model).kind: args.vae_model, Manifest.load(editor_src).kind: editor_src}
        dirs = make_repository(work / "repository", [args.vae_model, editor_src])
        largest = max(c.images for c in args.cells)
        most = max(c.images * c.callers for c in args.cells)
        pool = dataset_images(max(256, largest))
        env = os.environ | {"LATENTDIAL_GRAPH_CHOICE_CACHE": str(work / "graph-choice")}  # measured in this run
        server = ServerProcess(repository=work / "repository", log_path=work / "server.log", cwd=work, env=env,
                               startup_timeout_s=180,
                               args=["--max-request-items", str(max(1024, largest)),
                                     "--max-queue-size", str(max(1024, most))]).start()

        async def infos() -> dict[str, Any]:
            async with AsyncClient(server.address) as c:
                return {k: await c.model_info(Manifest.load(d).name, version=d.name) for k, d in dirs.items()}

        info = asyncio.run(infos())
        models = {}
        for kind, d in dirs.items():
            i, graphs = info[kind], graph_sizes(d)
            models[kind] = {"name": i.model.name, "version": i.model.version, "kind": i.kind,
                            "source": str(sources[kind]), "runtime": i.runtime, "latent_dim": i.latent_dim,
                            "image_hwc": (i.height, i.width, i.channels), "edit": edit_of(i, args.factor),
                            "graphs": graphs}
            print(f"{kind:>6} {i.model.name}/{i.model.version}: " + ", ".join(
                f"{g['file']} {g['bytes'] / 1e6:.2f} MB {g['parameters'] / 1e6:.2f} M params" for g in graphs),
                file=sys.stderr, flush=True)
        served = served_files((work / "server.log").read_text())
        for m in models.values():
            m["served"] = {g: v for (n, ver, g), v in served.items() if (n, ver) == (m["name"], m["version"])}
            for g in m["graphs"]:
                g["served"] = m["served"].get(g["graph"], "").startswith(g["file"] + " ")
        cells = asyncio.run(measure(server.address, models, pool, args))
    finally:
        if server is not None:
            server.stop()  # waited for, so its CPU counts as this run's own
        load = watch.stop()  # warns loudly when busy
    result = {
        "models": models, "cells": cells, "ratios": ratios(cells), "load": load.as_dict(),
        "meta": {"cells": f"{args.duration:g} s measured after {args.warmup:g} s warm-up, median of "
                          f"{args.repeat} round(s); models alternate within each round",
                 "client": "latentdial.client.AsyncClient in the benchmark process, closed loop, uint8 images "
                           "in and out; the server is a child process",
                 "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, "
                            f"{len(os.sched_getaffinity(0))} usable CPUs, client and server share them",
                 "server log": str(work / "server.log") if args.keep else None},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_edit_kinds.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (args.out / "bench_edit_kinds.md").write_text(text)
    print("\n" + text)
    print(f"wrote {args.out / 'bench_edit_kinds.json'} and {args.out / 'bench_edit_kinds.md'}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    failed = [r for r in cells if r["errors"] or r["bad_answers"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
