"""``latentdial train`` for a StarGAN config (``family = "stargan"``; training/cli_train.py hands it here).

    latentdial train --config configs/stargan.toml --out runs/stargan
    latentdial train --config configs/stargan.toml --out runs/stargan --resume --set steps=2000
    latentdial export runs/stargan models/dsprites_stargan/1
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    """Train (or resume) a StarGAN run from the ``latentdial train`` arguments."""
    from latentdial.training.cli_train import with_folder
    from latentdial.training.config import ConfigError
    from latentdial.training.stargan.config import load_stargan_config
    from latentdial.training.stargan.trainer import StarGANTrainingError, train

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_stargan_config(args.config, args.overrides)
        if args.data:
            cfg = with_folder(cfg, args.data, schema=args.schema, skip_bad=args.skip_bad)
    except ConfigError as e:
        print(f"latentdial train: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    try:
        out = train(cfg, Path(args.out), resume=args.resume, progress=not args.no_progress)
    except (ConfigError, StarGANTrainingError, ValueError, OSError) as e:
        print(f"latentdial train: {e}", file=sys.stderr)
        return 1
    print(f"run directory: {out}")
    return 0
