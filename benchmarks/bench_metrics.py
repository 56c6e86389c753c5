"""Time every disentanglement metric on procedural dSprites and print a table.

    python benchmarks/bench_metrics.py                      # "fast" preset, random conv encoder
    python benchmarks/bench_metrics.py --preset reference   # disentanglement_lib's study sizes
    python benchmarks/bench_metrics.py --run runs/betavae   # a trained run directory's encoder
    python benchmarks/bench_metrics.py --dci-backends 2000  # LightGBM vs sklearn DCI, side by side

Without --run the representation is an untrained 10-latent conv encoder
(training/model.py): encoding costs the same as for a trained one, the classifier
times are of the same order. Figures depend on the machine: state it with them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from latentdial.training.data import get_dataset
from latentdial.training.evaluate import no_grad
from latentdial.training.factor_card_fit import compute_factor_card
from latentdial.training.metrics import (
    METRICS,
    PRESETS,
    SHARED_POINTS,
    compute_all,
    parse_names,
)
from latentdial.training.metrics.dci import _dci
from latentdial.training.metrics.utils import generate_batch_factor_code
from latentdial.training.model import ModelConfig, build_model
from latentdial.training.run_dir import load_run, representation_fn


class CountingEncoder:
    """Wrap a representation function and count the images it encodes."""

    def __init__(self, fn):
        self.fn, self.images = fn, 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.images += len(x)
        return self.fn(x)


def _encoder(run: str | None):
    if run:
        return no_grad(representation_fn(load_run(run).model)), f"run {run}"
    torch.manual_seed(0)
    model = build_model(ModelConfig(latent_dim=10)).eval()
    return no_grad(representation_fn(model)), "untrained conv64 encoder, 10 latents"


def _row(name: str, dt: float, images: int, scores: dict[str, float]) -> str:
    text = ", ".join(f"{k}={v:.3f}" for k, v in scores.items())
    return f"{name[:40]:<14}{dt:>10.1f}{images:>10d}{images / dt:>9.0f}  {text}"


def _groups(names: list[str], preset: str) -> list[list[str]]:
    """Metrics timed together: those sharing one encoded pool in the preset form one group."""
    if not SHARED_POINTS[preset]:
        return [[n] for n in names]
    pooled = [n for n in names if METRICS[n].on_points]
    return [[n] for n in names if not METRICS[n].on_points] + ([pooled] if pooled else [])


def bench_metrics(args) -> None:
    """Time what ``latentdial evaluate`` does: every metric, then the factor card."""
    dataset = get_dataset("dsprites")
    fn, what = _encoder(args.run)
    rows, total = [], 0.0
    artifacts: dict = {}
    print(f"{'metric':<14}{'seconds':>10}{'images':>10}{'img/s':>9}  scores", flush=True)
    for group in _groups(parse_names(args.metrics), args.preset):
        enc = CountingEncoder(fn)
        t0 = time.perf_counter()
        scores = compute_all(dataset, enc, np.random.default_rng(args.seed), group, preset=args.preset,
                             progress=False, artifacts=artifacts)
        row = ("+".join(group), time.perf_counter() - t0, enc.images, scores)
        total += row[1]
        rows.append(row)
        print(_row(*row), flush=True)
    enc = CountingEncoder(fn)
    t0 = time.perf_counter()
    card = compute_factor_card(dataset, enc, np.random.default_rng(args.seed),
                               importance=artifacts.get("dci.importance"),
                               points=artifacts.get("points.train"))
    row = ("factor_card", time.perf_counter() - t0, enc.images,
           {f.name: float(len(f.dims)) for f in card.factors})
    total += row[1]
    rows.append(row)
    print(_row(*row), flush=True)
    print(f"\nmetrics on procedural dSprites, preset {args.preset!r}, {what}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'metric':<14}{'seconds':>10}{'images':>10}{'img/s':>9}  scores")
    for row in rows:
        print(_row(*row))
    print(f"{'total':<14}{total:>10.1f}")


def bench_dci_backends(args) -> None:
    """Both DCI backends on the same encoded points: time ratio and score differences."""
    dataset = get_dataset("dsprites")
    fn, what = _encoder(args.run)
    rng = np.random.default_rng(args.seed)
    train = generate_batch_factor_code(dataset, fn, args.dci_backends, rng, 256)
    test = generate_batch_factor_code(dataset, fn, args.dci_backends // 2, rng, 256)
    results = {}
    for backend in ("lightgbm", "sklearn"):
        t0 = time.perf_counter()
        scores, importance = _dci(*train, *test, backend=backend, seed=0)
        results[backend] = (time.perf_counter() - t0, scores, importance)
    print(f"\nDCI backends on {args.dci_backends} train / {args.dci_backends // 2} test points, {what}")
    print(f"{'backend':<10}{'seconds':>9}  scores")
    for backend, (dt, scores, _) in results.items():
        print(f"{backend:<10}{dt:>9.1f}  " + ", ".join(f"{k}={v:.3f}" for k, v in scores.items()))
    ratio = results["sklearn"][0] / results["lightgbm"][0]
    diff = np.abs(results["sklearn"][2] - results["lightgbm"][2]).max()
    same_top = np.mean(results["sklearn"][2].argmax(0) == results["lightgbm"][2].argmax(0))
    print(f"sklearn / lightgbm time ratio: {ratio:.1f}x; importance max |diff| {diff:.3f}; "
          f"same top dim for {same_top:.0%} of factors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=list(PRESETS), default="fast")
    parser.add_argument("--metrics", default=",".join(METRICS))
    parser.add_argument("--run", default=None, help="trained run directory (default: untrained encoder)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dci-backends", type=int, default=0, metavar="N",
                        help="instead: compare the DCI backends on N training points")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.dci_backends:
        bench_dci_backends(args)
    else:
        bench_metrics(args)


if __name__ == "__main__":
    from latentdial.machine_load import LoadWatch

    with LoadWatch("bench_metrics") as watch:  # warns loudly on stderr when the machine was busy
        main()
    print(f"\n{watch.report.line()}")
