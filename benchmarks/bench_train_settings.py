"""Training settings per CPU hour: steps/s and images/s by batch size and memory format.

The shipped semi-supervised dSprites model (configs/shipped/dsprites.toml) trains one step
per batch; this times that step at each batch size, in the default (NCHW contiguous) and
in ``torch.channels_last`` memory format, interleaved round-robin so that load on a shared
machine hits every setting alike. Prints the load average before and after: figures from a
loaded machine are not figures.

    python benchmarks/bench_train_settings.py                       # batch 32, 64, 128; 3 + 15 steps
    python benchmarks/bench_train_settings.py --batches 64 --steps 5 --threads 1
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from latentdial.training.config import load_config
from latentdial.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]


def make_trainer(batch: int, channels_last: bool, threads: int, out: Path) -> Trainer:
    cfg = load_config(REPO / "configs" / "shipped" / "dsprites.toml",
                      [f"batch_size={batch}", f"num_threads={threads}"])
    trainer = Trainer(cfg, out / f"b{batch}-{channels_last}")
    if channels_last:
        trainer.objective.model.to(memory_format=torch.channels_last)
    return trainer


def step_batch(trainer: Trainer, i: int, channels_last: bool):
    images, labels = trainer.stream.batch_at(i)
    x = torch.from_numpy(images)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, torch.from_numpy(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="*", default=[32, 64, 128])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    settings = [(b, cl) for b in args.batches for cl in (False, True)]
    times: dict[tuple[int, bool], list[float]] = {s: [] for s in settings}
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {s: make_trainer(s[0], s[1], args.threads, Path(tmp)) for s in settings}
        for i in range(args.warmup + args.steps):
            for s, trainer in trainers.items():
                batch = step_batch(trainer, i, s[1])
                t0 = time.perf_counter()
                loss, _ = trainer.objective.loss(batch, i)
                trainer.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                trainer.optimizer.step()
                if i >= args.warmup:
                    times[s].append(time.perf_counter() - t0)
    print(f"load average after: {os.getloadavg()}")
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.steps} steps")
    print("| batch | memory format | ms/step | steps/s | images/s |")
    print("|---:|---|---:|---:|---:|")
    for (b, cl), t in times.items():
        sec = sorted(t)[len(t) // 2]
        print(f"| {b} | {'channels_last' if cl else 'contiguous'} | {sec * 1e3:.1f} | {1 / sec:.1f} | {b / sec:.0f} |")


if __name__ == "__main__":
    main()
