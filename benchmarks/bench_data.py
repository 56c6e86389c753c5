"""How fast the procedural datasets render, against what training consumes.

Prints, for each procedural dataset at batch 64, images per second for plain
batches, weak pairs (Locatello et al. 2020) and the ``BatchStream`` (inline and
with its background prefetch thread), and the ratio to 1,280 images/s: what a
training loop at 50 ms per step of 64 images consumes (for pairs, 64 pairs per
step). A ratio well above 1 means data is never the bottleneck. All rates are
measured side by side in one run; state the machine with the figures.

    python benchmarks/bench_data.py [--seconds 1.0] [--examples docs/images]

``--examples DIR`` also writes one example PNG per dataset.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from latentdial.training.data import BatchStream, get_dataset
from latentdial.training.data.dsprites import _tiles
from latentdial.training.data.pairs import sample_weak_pairs
from latentdial.training.data.preview import factor_sweeps, image_grid, save_png

BATCH = 64
CONSUMED_PER_S = 1280.0  # 64 images per 50 ms step
PROCEDURAL = ("dsprites", "color_dsprites", "noisy_dsprites")


def rate(fn: Callable[[int], object], seconds: float, rounds: int = 3) -> float:
    """Best of ``rounds`` runs of about ``seconds``: calls per second of ``fn(step)``."""
    fn(0)  # warm up (first call renders the sprite tiles)
    best = 0.0
    for r in range(rounds):
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / rounds:
            fn(r * 100_000 + calls)
            calls += 1
        best = max(best, calls / (time.perf_counter() - start))
    return best


def stream_rate(stream: BatchStream, prefetch: int, seconds: float) -> float:
    """Batches per second pulled from ``stream.iterate`` for about ``seconds``."""
    it = stream.iterate(prefetch=prefetch)
    next(it)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(it)
        calls += 1
    elapsed = time.perf_counter() - start
    it.close()
    return calls / elapsed


def measure(name: str, seconds: float) -> list[tuple[str, float, str]]:
    """(mode, rate, unit) rows for one dataset at batch 64."""
    data = get_dataset(name)
    rng = np.random.default_rng(0)
    return [
        ("batch", BATCH * rate(lambda s: data.sample_observations(BATCH, rng), seconds), "images"),
        ("pairs", BATCH * rate(lambda s: sample_weak_pairs(data, BATCH, rng), seconds), "pairs"),
        ("stream, inline", BATCH * stream_rate(BatchStream(data, BATCH, 0), 0, seconds), "images"),
        ("stream, prefetch", BATCH * stream_rate(BatchStream(data, BATCH, 0), 2, seconds), "images"),
    ]


def loop_rate(stream: BatchStream, prefetch: int, step_s: float, seconds: float) -> float:
    """Steps per second of a loop whose step takes ``step_s`` without holding the GIL
    (``time.sleep`` stands in for a torch step), fed by ``stream.iterate``."""
    it = stream.iterate(prefetch=prefetch)
    next(it)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(it)
        time.sleep(step_s)
        steps += 1
    elapsed = time.perf_counter() - start
    it.close()
    return steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    parser.add_argument("--examples", default=None, help="folder to write example PNGs into")
    args = parser.parse_args()

    start = time.perf_counter()
    _tiles()
    print(f"one-off sprite rendering (720 sprites): {1000 * (time.perf_counter() - start):.0f} ms\n")

    header = f"| {'dataset':<15} | {'mode':<16} | {'per second':>17} | {'x training need':>15} |"
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for name in PROCEDURAL:
        for mode, per_s, unit in measure(name, args.seconds):
            print(
                f"| {name:<15} | {mode:<16} | {per_s:>10,.0f} {unit:<6} | "
                f"{per_s / CONSUMED_PER_S:>14.1f}x |"
            )
    print("\n'pairs' counts pairs (x1, x2); a weakly supervised step consumes 64 pairs.")

    step_ms = 20.0
    print(f"\nTraining-loop simulation: a {step_ms:.0f} ms step that releases the GIL, batch 64")
    print(f"| {'dataset':<15} | {'inline steps/s':>14} | {'prefetch steps/s':>16} | {'ideal':>5} |")
    print(f"|{'-' * 17}|{'-' * 16}|{'-' * 18}|{'-' * 7}|")
    for name in PROCEDURAL:
        stream = BatchStream(get_dataset(name), BATCH, 0)
        inline = loop_rate(stream, 0, step_ms / 1000, args.seconds)
        ahead = loop_rate(stream, 2, step_ms / 1000, args.seconds)
        print(f"| {name:<15} | {inline:>14.1f} | {ahead:>16.1f} | {1000 / step_ms:>5.0f} |")

    if args.examples:
        for name in PROCEDURAL:
            data = get_dataset(name)
            rng = np.random.default_rng(1)
            if name == "dsprites":
                images = factor_sweeps(data, 10, rng, base=np.array([2, 5, 0, 16, 16]))
            else:
                images = data.sample_observations(20, rng)
            colors = 32 if name == "noisy_dsprites" else None  # noise does not compress
            path = save_png(image_grid(images, cols=10), f"{args.examples}/{name}.png", colors)
            print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    from latentdial.machine_load import LoadWatch

    with LoadWatch("bench_data") as watch:  # warns loudly on stderr when the machine was busy
        main()
    print(f"\n{watch.report.line()}")
