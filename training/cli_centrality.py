"""``latentdial centrality RUN_OR_SWEEP_DIR...``: ModelCentrality (Lin et al. 2020) over trained models.

Examples::

    latentdial centrality runs/sweep                        # every finished trial of a sweep
    latentdial centrality runs/a runs/b runs/c --out centrality.json
    python -m latentdial.training.cli_centrality runs/sweep --groups 100 --group-size 50

Each model's generator makes the data the others are scored on (the FactorVAE metric on its
own latent factors); the model most similar on average to the others is selected. No labels are
read. See ``latentdial.training.model_centrality``. Only the standard library is imported at
module level (see latentdial/cli.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", type=Path, nargs="+",
                        help="finished run directories, or directories holding them (a sweep's --out)")
    parser.add_argument("--groups", type=int, default=None,
                        help="groups with one factor fixed per model (default 500, the authors')")
    parser.add_argument("--group-size", type=int, default=None, help="images per group (default 100)")
    parser.add_argument("--std-images", type=int, default=None,
                        help="free images for each representation's scale (default 10000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=Path, default=None, help="write the similarity matrix and ranking as JSON")


def run(args: argparse.Namespace) -> int:
    import torch

    from latentdial.training import model_centrality as mc

    torch.set_num_threads(args.threads)
    runs = mc.finished_runs(args.paths)
    if len(runs) < 2:
        print(f"latentdial centrality: found {len(runs)} finished run(s) under {[str(p) for p in args.paths]}; "
              "ModelCentrality needs at least two", file=sys.stderr)
        return 2
    sizes = {k: v for k, v in (("num_groups", args.groups), ("group_size", args.group_size),
                               ("num_std", args.std_images)) if v is not None}
    result = mc.centrality_of_runs(runs, seed=args.seed, **sizes)
    print("centrality  run")
    for name, score in result["ranking"]:
        print(f"{score:10.3f}  {name}")
    print(f"selected: {result['ranking'][0][0]}")
    if args.out is not None:
        mc.write_result(result, args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="latentdial centrality", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
