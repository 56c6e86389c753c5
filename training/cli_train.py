"""``latentdial train``: train a disentangling VAE into a run directory.

Examples::

    latentdial train --config configs/beta_vae.toml --out runs/beta4 --set steps=20000
    latentdial train --config configs/beta_vae.toml --out runs/beta4 --resume
    torchrun --nproc_per_node=2 -m latentdial.cli train --config configs/smoke.toml --out runs/ddp

Only the standard library is imported at module level (see latentdial/cli.py).
"""

from __future__ import annotations

import argparse
import logging
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML config (see configs/); defaults apply when omitted")
    parser.add_argument("--out", required=True, help="run directory to create (or continue with --resume)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set objective.beta=8 --set steps=2000 (repeatable)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run(args: argparse.Namespace) -> int:
    import json
    import os
    from pathlib import Path

    from latentdial.training.config import ConfigError, load_config
    from latentdial.training.trainer import TrainingError, train

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"latentdial train: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    try:
        out = train(cfg, Path(args.out), resume=args.resume, progress=not args.no_progress)
    except (ConfigError, TrainingError) as e:
        print(f"latentdial train: {e}", file=sys.stderr)
        return 1
    if os.environ.get("RANK", "0") == "0":
        print(f"run directory: {out}")
    return 0
