"""Train every shipped model at full length on a GPU host and write their model directories.

    python scripts/ship_gpu.py                       # 300k steps each, cuda, bounded to 9 minutes
    python scripts/ship_gpu.py --device cpu --steps 3 --only dsprites --out /tmp/ship   # the path, on CPU

Every ``configs/shipped/*.toml`` (or ``--only`` names) trains in its own process, all at
once on the one device: the conv64 model is small, so a single run leaves most of a modern
GPU idle and the runs overlap. Each run gets ``--budget-s`` minus a reserve for
evaluation and export as its ``time_limit_s``: it stops at a checkpoint of the step
reached when the budget is spent (``make ship-gpu`` again resumes every run bit for bit from
there, up to ``--steps``). Then each run is evaluated (the factor card, with MIG) and
exported to ``OUT/models/<name>/<version>``; the quality figures of docs/models.md come
from ``make ship`` on the exported directories.

On CUDA each graph-safe step is replayed from a CUDA graph (training/graphed_step.py).
The bound holds by construction (the time limit); whether 300k steps fit inside it depends
on the GPU's steps per second, which this command prints per model at the end (and
docs/training.md records for the GPU it was run on).

The children are started from ``--out``, not the checkout, so that an installed
latentdial (a wheel on a bare GPU host: docs/training.md) is what they import.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "configs" / "shipped"


def latentdial(*args: str) -> list[str]:
    return [sys.executable, "-m", "latentdial.cli", *args]


def steps_reached(run: Path) -> int | None:
    """The step of the newest checkpoint of ``run`` (None when it has none)."""
    ckpts = sorted((run / "checkpoints").glob("step_*.pt"))
    return int(ckpts[-1].stem.split("_")[1]) if ckpts else None


def train_command(config: Path, run: Path, steps: int, device: str, threads: int, limit_s: float,
                  checkpoint_every: int, cuda_graph: bool = True, cooldown_steps: int = 0) -> list[str]:
    """`latentdial train` for one shipped config, resuming when the run already has a checkpoint.

    cooldown_steps: the lr decays linearly to 0 over the last this many of ``steps``
    (``optimizer.cooldown_steps``; 0 = the config's own schedule).
    """
    cooldown = ["--set", f"optimizer.cooldown_steps={cooldown_steps}"] if cooldown_steps else []
    resume = ["--resume"] if steps_reached(run) is not None else []
    return latentdial(
        "train", "--config", str(config), "--out", str(run), *resume, "--no-progress",
        "--set", f"steps={steps}", "--set", f"device={device}", "--set", f"num_threads={threads}",
        "--set", f"time_limit_s={limit_s}", "--set", f"checkpoint_every={checkpoint_every}",
        "--set", f"cuda_graph={'true' if cuda_graph else 'false'}", *cooldown,
    )



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300_000, help="steps per model (default 300000)")
    parser.add_argument("--device", default="cuda", help="torch device of every run (default cuda)")
    parser.add_argument("--budget-s", type=float, default=540.0, help="wall-clock bound of the whole command")
    parser.add_argument("--reserve-s", type=float, default=120.0, help="of the budget, kept for evaluation and export")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads per run (data and metrics)")
    parser.add_argument("--only", nargs="*", default=None, help="shipped config names (default: all)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "ship-gpu", help="runs/ and models/ go here")
    parser.add_argument("--version", default="1", help="version directory of every exported model")
    parser.add_argument("--checkpoint-every", type=int, default=10_000,
                        help="steps between checkpoints (the time limit writes its own; default 10000)")
    parser.add_argument("--eager", action="store_true", help="no CUDA graphs: every step eager")
    parser.add_argument("--choice-rounds", type=int, default=5,
                        help="rounds of the export's graph timing on this host (latentdial export "
                             "--choice-rounds; 0: the server measures at load)")
    parser.add_argument("--cooldown-steps", type=int, default=0,
                        help="decay the lr linearly to 0 over the last N of --steps (default 0: constant lr); "
                             "a run stopped by the budget before it reaches the cooldown has not cooled down")
    args = parser.parse_args(argv)
    args.out = args.out.resolve()

    configs = sorted(SHIPPED.glob("*.toml"))
    if args.only:
        missing = sorted(set(args.only) - {c.stem for c in configs})
        if missing:
            parser.error(f"no shipped config named {missing}; valid: {[c.stem for c in configs]}")
        configs = [c for c in configs if c.stem in args.only]
    limit = max(1.0, args.budget_s - args.reserve_s)
    started = time.monotonic()
    print(f"training {len(configs)} models at once on {args.device}: {args.steps} steps or {limit:.0f} s each",
          flush=True)
    procs = {}
    args.out.mkdir(parents=True, exist_ok=True)
    first = {}
    for config in configs:
        run = args.out / "runs" / config.stem
        run.parent.mkdir(parents=True, exist_ok=True)
        first[config.stem] = steps_reached(run) or 0
        log = (args.out / "runs" / f"{config.stem}.log").open("w")
        procs[config.stem] = (subprocess.Popen(
            train_command(config, run, args.steps, args.device, args.threads, limit, args.checkpoint_every,
                          not args.eager, args.cooldown_steps),
            stdout=log, stderr=subprocess.STDOUT, cwd=args.out,
        ), run)
    failed = [name for name, (p, _) in procs.items() if p.wait() != 0]
    trained_s = time.monotonic() - started
    for name, (_, run) in procs.items():
        reached = steps_reached(run)
        if reached is not None:
            done = reached - first[name]
            print(f"{name}: step {reached} of {args.steps} ({done} steps in {trained_s:.0f} s with "
                  f"{len(procs)} runs sharing the device: {done / trained_s:.0f} steps/s)", flush=True)
    for name, (p, run) in procs.items():
        if name in failed:
            print(f"{name}: training failed (exit {p.returncode}); see {run}.log", flush=True)
            continue
        model_dir = args.out / "models" / name / args.version
        for cmd in (
            latentdial("evaluate", str(run), "--metrics", "mig", "--quiet"),
            latentdial("export", str(run), str(model_dir), "--overwrite", "--no-torch-program",
                       "--choice-rounds", str(args.choice_rounds)),
        ):
            if subprocess.run(cmd, cwd=args.out, stdout=subprocess.DEVNULL).returncode != 0:
                failed.append(name)
                print(f"{name}: {' '.join(cmd[2:4])} failed", flush=True)
                break
        else:
            print(f"{name}: {model_dir}", flush=True)
    print(f"done in {time.monotonic() - started:.0f} s (budget {args.budget_s:.0f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
