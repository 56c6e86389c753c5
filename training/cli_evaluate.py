"""``latentdial evaluate PATH``: disentanglement metrics and the factor card.

PATH is either a run directory (config.json + model.safetensors: the torch model
is rebuilt) or a model directory (manifest.json + encoder.onnx: the encoder runs
on ONNX Runtime, no torch needed). The dataset defaults to the one recorded
there (run: ``config["dataset"]``; model: ``manifest.provenance["dataset"]``),
a dict ``{"name": ..., **options}`` for ``latentdial.training.data.get_dataset``.

Writes ``metrics.json`` (a flat dict of floats) and, for a run directory on
labelled data, ``factor_card.json``; prints a table of the scores.

The work is done by :mod:`latentdial.training.evaluate`; this module only parses
arguments and prints. Only the standard library is imported at module level (see
latentdial/cli.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from latentdial.factor_card import FactorCard


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="run directory or model directory (with manifest.json)")
    parser.add_argument("--dataset", default=None,
                        help="dataset name (default: the one recorded in PATH), or a JSON object "
                             '{"name": ..., options}')
    parser.add_argument("--metrics", default=None,
                        help="comma-separated metric names (default: all): beta_vae, factor_vae, mig, "
                             "sap, dci, modularity, unsupervised")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the sampled points (default 0)")
    parser.add_argument("--num-train", type=int, default=None, help="training points of every metric")
    parser.add_argument("--num-test", type=int, default=None, help="test points of every metric")
    parser.add_argument("--preset", choices=("fast", "reference"), default="fast",
                        help="'fast' (default): smaller BetaVAE/FactorVAE samples, a few minutes on a "
                             "CPU; 'reference': disentanglement_lib's study sizes")
    parser.add_argument("--out", type=Path, default=None, help="metrics JSON file (default PATH/metrics.json)")
    parser.add_argument("--no-card", action="store_true", help="do not compute the factor card")
    parser.add_argument("--points-per-value", type=int, default=64,
                        help="points averaged per factor value in the card's calibration tables (64)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def print_table(scores: dict[str, float], card: FactorCard | None = None) -> None:
    """Scores (and the card's factor -> dims) as a table on stdout."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="disentanglement metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in scores.items():
        table.add_row(key, f"{value:.4f}")
    console = Console()
    console.print(table)
    if card is not None:
        factors = Table(title="factor card")
        for col in ("factor", "kind", "dims", "importance"):
            factors.add_column(col)
        for f in card.factors:
            factors.add_row(f.name, f.kind, ", ".join(map(str, f.dims)),
                            ", ".join(f"{v:.2f}" for v in f.importance))
        console.print(factors)


def run(args: argparse.Namespace) -> int:
    from latentdial.training.evaluate import evaluate_model_dir, evaluate_run

    path: Path = args.path
    common = {"dataset": args.dataset, "metrics": args.metrics, "seed": args.seed,
              "num_train": args.num_train, "num_test": args.num_test, "preset": args.preset,
              "out": args.out, "progress": not args.quiet}
    try:
        if (path / "manifest.json").is_file():
            scores, card = evaluate_model_dir(path, **common), None
        elif (path / "config.json").is_file():
            scores, card = evaluate_run(path, card=not args.no_card,
                                        card_points_per_value=args.points_per_value, **common)
        else:
            print(f"error: {path} is neither a run directory (config.json) nor a model directory "
                  "(manifest.json)", file=sys.stderr)
            return 2
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_table(scores, card)
    print(f"wrote {args.out or path / 'metrics.json'}")
    return 0
