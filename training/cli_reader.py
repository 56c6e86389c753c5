"""``latentdial train-reader``: (re)train the attribute reader of a dataset and report its accuracy.

The reader (training/reader/) reads every ground-truth factor of an image; ``latentdial
evaluate-edits`` judges edits with it. It is trained only on ground-truth renders, never on
a model's output. By default the result goes to the cache that ``evaluate-edits`` looks in
after the shipped weights; ``--ship`` replaces the shipped weights instead. ``--also DATASET``
trains it on the union of the dataset's renders and another renderer's of the same factor
grid (e.g. ``--also dsprites_elsewhere``) and stores it beside the plain one, as
``dsprites+dsprites_elsewhere``.

A dataset without a dSprites reader (``idsprites``, or any registered dataset that renders
images from its factors) gets the generic reader (training/reader/generic.py): one
classification head per factor over its grid; 2,000 steps by default, about five minutes on one
thread for ``idsprites`` on the busy 2-core machine; ``--ship`` writes
``training/reader/weights/<dataset>.safetensors``. ``--dataset-option KEY=VALUE`` trains it on
other options of the dataset (e.g. ``num_shapes=5``) into ``--out FILE``, for ``evaluate-edits
--reader FILE``.

Only the standard library is imported at module level (see latentdial/cli.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="dsprites",
                        help="dsprites (default), color_dsprites, or any registered dataset that renders from "
                             "its factors, e.g. idsprites (the generic reader)")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps (default 1500 for dsprites, 5000 for colour, 2000 for the generic "
                             "reader; batch 128)")
    parser.add_argument("--dataset-option", dest="options", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of a generic reader's dataset, e.g. num_shapes=5 (repeatable; needs --out: "
                             "the stored reader of a name is the one of its registered defaults)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument("--also", action="append", default=[], metavar="DATASET",
                        help="also train on this dataset's renders of the same factor grid, e.g. "
                             "dsprites_elsewhere (repeatable; default steps: twice the plain reader's per renderer)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, default=None, help="write the weights here instead of the cache")
    where.add_argument("--ship", action="store_true",
                       help="replace the weights shipped in training/reader/weights/")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def print_accuracy(accuracy: dict[str, dict[str, dict[str, float]]], title: str) -> None:
    """Held-out accuracy per factor (clean and softened renders) as a table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("factor")
    for split in accuracy:
        table.add_column(f"{split}: exact", justify="right")
        table.add_column(f"{split}: within edit tolerance", justify="right")
    for factor in next(iter(accuracy.values())):
        table.add_row(factor, *(f"{accuracy[s][factor][k]:.4f}" for s in accuracy
                                for k in ("exact", "edit_tolerance")))
    # A log or a pipe gets the whole table (a reader of two renderers has nine columns).
    Console(width=None if sys.stdout.isatty() else 160).print(table)


def run(args: argparse.Namespace) -> int:
    import torch

    from latentdial.training.cli_make_folder import parse_option
    from latentdial.training.reader.store import (
        cached_path,
        save_reader,
        shipped_path,
        train_reader,
    )

    torch.set_num_threads(args.threads)
    try:
        options = dict(parse_option(o) for o in args.options)
        if options and args.out is None:
            raise ValueError("--dataset-option needs --out FILE (pass it to evaluate-edits as --reader FILE)")
        reader, accuracy = train_reader(args.dataset, also=args.also, steps=args.steps, seed=args.seed,
                                        progress=not args.quiet, options=options)
    except (ValueError, ImportError) as e:
        print(f"latentdial train-reader: {e}", file=sys.stderr)
        return 2
    also = tuple(args.also)
    out = args.out or (shipped_path(args.dataset, also) if args.ship else cached_path(args.dataset, also))
    save_reader(reader, out, accuracy, also=also)
    trained_on = " + ".join((args.dataset, *also))
    print_accuracy(accuracy, f"attribute reader for {trained_on}: held-out accuracy (5,000 renders each)")
    if "train_seconds" in reader.metadata:
        print(f"trained in {int(reader.metadata['train_seconds']):,} s on {args.threads} thread(s); "
              f"load average at the end {reader.metadata.get('load_average', '?')}")
    print(f"wrote {out}")
    return 0
