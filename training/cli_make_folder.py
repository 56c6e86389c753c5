"""``latentdial make-folder``: render a labelled image folder from a ground-truth dataset.

Writes ``--num`` images of ``--dataset`` to ``--out`` in the ``imagefolder`` layout
(``metadata.csv``, ``factors.toml``, ``images/``) with ``--labelled`` of them labelled,
the rest with empty cells (training/data/write_folder.py, docs/datasets.md)::

    latentdial make-folder --dataset idsprites --dataset-option num_shapes=5 \\
        --num 10000 --labelled 500 --seed 0 --out data/idsprites_500

Only the standard library is imported at module level (see latentdial/cli.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def parse_option(text: str) -> tuple[str, object]:
    """``"num_shapes=5"`` -> ("num_shapes", 5). The value is a TOML literal, else a string."""
    from latentdial.training.config import parse_literal  # imports torch: not at module level

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--dataset-option {text!r} must look like key=value, e.g. num_shapes=5")
    return key.strip(), parse_literal(raw)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="a registered dataset, e.g. dsprites, color_dsprites, idsprites")
    parser.add_argument("--dataset-option", dest="options", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of the dataset, e.g. --dataset-option num_shapes=5 (repeatable)")
    parser.add_argument("--num", type=int, required=True, help="number of images to write")
    parser.add_argument("--labelled", type=int, required=True,
                        help="how many of them keep their labels (the others have empty cells)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the factors, the labelled subset and any noise (default 0)")
    parser.add_argument("--out", type=Path, required=True, help="folder to create; must not exist or be empty")
    parser.add_argument("--format", dest="image_format", choices=("png", "jpeg"), default="png",
                        help="image file format (default png, lossless)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from latentdial.training.data import get_dataset
    from latentdial.training.data.write_folder import write_labelled_folder

    try:
        options = dict(parse_option(text) for text in args.options)
        dataset = get_dataset(args.dataset, **options)
        with tqdm(total=args.num, desc="make-folder", unit="img", disable=args.no_progress) as bar:
            out = write_labelled_folder(dataset, args.out, args.num, args.labelled, np.random.default_rng(args.seed),
                                        image_format=args.image_format, progress=bar.update)
    except (ValueError, FileExistsError, ImportError) as e:
        print(f"latentdial make-folder: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.num:,} images ({args.labelled:,} labelled) of {args.dataset} to {out}")
    return 0
