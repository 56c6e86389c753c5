"""Training throughput per objective: optimisation steps per second at batch 64.

Each objective trains the disentanglement_lib conv model on pre-rendered dSprites
batches (so the figure is the step itself: forward, backward, Adam, and FactorVAE's
discriminator step); data rendering is timed separately. All objectives run side by
side in one process, their steps interleaved, so the "vs beta_vae" column holds up on a
shared, noisy machine.

    python benchmarks/bench_train.py                 # batch 64, 5 warm-up + 30 timed steps
    python benchmarks/bench_train.py --steps 10 --threads 2 --objectives beta_vae factor_vae
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

from latentdial.training.config import load_config
from latentdial.training.objectives import OBJECTIVES
from latentdial.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]


def make_trainer(name: str, batch_size: int, threads: int, out: Path) -> Trainer:
    cfg = load_config(None, [f"objective.name={name}", f"batch_size={batch_size}", "steps=1000000",
                             f"num_threads={threads}", "evaluate=false"])
    return Trainer(cfg, out / name)


def bench(names: list[str], batches: list, warmup: int, steps: int, batch_size: int, threads: int
          ) -> dict[str, float]:
    """Median seconds per step of each objective. Steps are interleaved round-robin across the
    objectives, so load changes on a shared machine hit all of them alike."""
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {n: make_trainer(n, batch_size, threads, Path(tmp)) for n in names}
        times: dict[str, list[float]] = {n: [] for n in names}
        for i in tqdm(range(warmup + steps), desc="rounds", leave=False):
            for name, trainer in trainers.items():
                batch = batches[i % len(batches)]
                if OBJECTIVES[name].requires_pairs:
                    batch = (batch, batches[(i + 1) % len(batches)])
                if OBJECTIVES[name].requires_labels:  # every image labelled, as the shipped model
                    batch = trainer.stream.batch_at(i)
                t0 = time.perf_counter()
                trainer.train_step(batch)
                if i >= warmup:
                    times[name].append(time.perf_counter() - t0)
    return {n: sorted(t)[len(t) // 2] for n, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--objectives", nargs="*", default=[n for n in OBJECTIVES if n != "vae"])
    args = parser.parse_args()

    from latentdial.training.data import BatchStream, get_dataset

    stream = BatchStream(get_dataset("dsprites"), args.batch_size, seed=0)
    t0 = time.perf_counter()
    batches = [stream.batch_at(i) for i in range(8)]
    data_ms = (time.perf_counter() - t0) / len(batches) * 1e3

    print(f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}, "
          f"batch {args.batch_size}, {args.warmup} warm-up + {args.steps} timed steps (median)")
    print(f"dSprites rendering: {data_ms:.1f} ms per batch of {args.batch_size} (prefetched in a thread while training)")
    results = bench(args.objectives, batches, args.warmup, args.steps, args.batch_size, args.threads)
    ref = results.get("beta_vae", next(iter(results.values())))
    print()
    print("| objective | ms/step | steps/s | images/s | vs beta_vae |")
    print("|---|---:|---:|---:|---:|")
    for name, sec in results.items():
        ipb = 2 * args.batch_size if OBJECTIVES[name].requires_pairs else args.batch_size
        print(f"| {name} | {sec * 1e3:.1f} | {1 / sec:.2f} | {ipb / sec:.0f} | {ref / sec:.2f}x |")


if __name__ == "__main__":
    from latentdial.machine_load import LoadWatch

    with LoadWatch("bench_train") as watch:  # warns loudly on stderr when the machine was busy
        main()
    print(f"\n{watch.report.line()}")
