"""``latentdial sweep SPEC --out DIR``: a bounded sweep of objectives, ranked by the metrics.

Examples::

    latentdial sweep configs/sweep/dsprites.toml --out runs/sweep
    latentdial sweep configs/sweep/dsprites.toml --out runs/sweep --steps 300 --only beta_vae,ada_gvae

See ``latentdial.training.sweep`` for the file format. Only the standard library is
imported at module level (see latentdial/cli.py).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", type=Path, help="sweep TOML file (see configs/sweep/)")
    parser.add_argument("--out", type=Path, required=True,
                        help="directory of the run directories and sweep.json / sweep.md / sweep.png")
    parser.add_argument("--steps", type=int, default=None, help="override the sweep's steps per run")
    parser.add_argument("--seeds", default=None, help="override the sweep's seeds, e.g. 0,1,2")
    parser.add_argument("--only", default=None, help="comma-separated run names to train now")
    parser.add_argument("--root", type=Path, default=None,
                        help="directory the runs' config paths are relative to (default: the current one)")
    parser.add_argument("--num-train", type=int, default=None,
                        help="training points of every metric (default: the fast preset's)")
    parser.add_argument("--num-test", type=int, default=None, help="test points of every metric")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from latentdial.training.config import ConfigError
    from latentdial.training.sweep import RESULTS_MD, load_sweep, run_sweep
    from latentdial.training.trainer import TrainingError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        spec = load_sweep(args.spec, args.root)
        if args.steps is not None:
            spec = dataclasses.replace(spec, steps=args.steps)
        if args.seeds is not None:
            spec = dataclasses.replace(spec, seeds=tuple(int(s) for s in args.seeds.split(",") if s.strip()))
        only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
        sizes = {k: v for k, v in (("num_train", args.num_train), ("num_test", args.num_test)) if v is not None}
        ranked = run_sweep(spec, args.out, only=only, progress=not args.quiet, eval_overrides=sizes)
    except (ConfigError, TrainingError, ValueError) as e:
        print(f"latentdial sweep: {e}", file=sys.stderr)
        return 2
    print((args.out / RESULTS_MD).read_text())
    if ranked and ranked[0]["score"] is not None:
        print(f"best: {ranked[0]['name']} (score {ranked[0]['score']:.3f})")
    return 0
