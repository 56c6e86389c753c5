"""Eager against CUDA-graph training steps of the shipped configs, side by side on one GPU.

For each shipped config (configs/shipped/*.toml), two trainers start from the same seed
on the same device, one eager (``cuda_graph = false``) and one replaying a captured step
(training/graphed_step.py). Both train the same ``--steps`` batches of the run's own
stream; the table gives each one's steps per second (wall clock of the loop, data
prefetched in a thread as in a real run) and the mean logged loss of the last half of the
steps, which must agree: a graph that replayed stale inputs or skipped the update would
drift away from the eager loss.

    python benchmarks/bench_train_gpu.py                       # 1500 steps of each
    python benchmarks/bench_train_gpu.py --steps 600 --only dsprites --check 0.15

Exits 1 when ``--check`` is given and a graphed mean loss differs from the eager one by
more than that fraction, or a graphed run fell back to eager steps.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "configs" / "shipped"


def run(config: Path, steps: int, graph: bool, out: Path, log_every: int) -> tuple[float, float, str]:
    """(steps/s, mean loss of the logged second half, how the step ran) of one short run."""
    from latentdial.training.config import load_config
    from latentdial.training.trainer import Trainer

    cfg = load_config(config, [f"steps={steps}", "device=cuda", f"cuda_graph={'true' if graph else 'false'}",
                               f"log_every={log_every}", f"checkpoint_every={10 * steps}", "num_threads=2"])
    trainer = Trainer(cfg, out)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for batch in trainer.stream.iterate(0, steps):
        log_now = (trainer.step + 1) % log_every == 0
        logs = trainer.train_step(batch, logs=log_now)
        if log_now:
            trainer.rows.append({"step": trainer.step, **logs})
    torch.cuda.synchronize()
    rate = steps / (time.perf_counter() - t0)
    half = [r["loss"] for r in trainer.rows if r["step"] > steps // 2]
    how = "eager"
    if trainer.graphed is not None:
        how = "graph" if trainer.graphed.captured else f"fell back: {trainer.graphed.failed}"
    return rate, sum(half) / max(1, len(half)), how


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--only", nargs="*", default=None, help="shipped config names (default: all)")
    parser.add_argument("--check", type=float, default=None,
                        help="fail when a graphed mean loss differs from the eager one by more than this fraction")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark needs a GPU", file=sys.stderr)
        return 2
    configs = [c for c in sorted(SHIPPED.glob("*.toml")) if not args.only or c.stem in args.only]
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, {args.steps} steps of each, "
          f"batch as configured, one run at a time")
    print("| config | eager steps/s | graph steps/s | speed-up | eager loss | graph loss | graph step |")
    print("|---|---:|---:|---:|---:|---:|---|")
    bad = []
    with tempfile.TemporaryDirectory() as tmp:
        for config in configs:
            e_rate, e_loss, _ = run(config, args.steps, False, Path(tmp) / f"{config.stem}-eager", args.log_every)
            g_rate, g_loss, how = run(config, args.steps, True, Path(tmp) / f"{config.stem}-graph", args.log_every)
            print(f"| {config.stem} | {e_rate:.0f} | {g_rate:.0f} | {g_rate / e_rate:.2f}x | {e_loss:.2f} | "
                  f"{g_loss:.2f} | {how} |", flush=True)
            if args.check is not None and (how != "graph" or abs(g_loss - e_loss) > args.check * abs(e_loss)):
                bad.append(config.stem)
    if bad:
        print(f"graphed training disagrees with eager (or fell back) for {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
