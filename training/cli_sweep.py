"""``latentdial sweep SPEC --out DIR``: a sweep or study as Ray Tune trials, ranked by the metrics.

Examples::

    latentdial sweep configs/sweep/dsprites.toml --out runs/sweep
    latentdial sweep configs/sweep/dsprites.toml --out runs/sweep --steps 300 --only beta_vae,ada_gvae
    latentdial sweep configs/sweep/label_study.toml --out runs/label-study          # hours: see the file
    latentdial sweep configs/sweep/label_study.toml --out runs/label-study --only color_dsprites \
        --seeds 1 --grid 'objective.num_labelled=[1000, 100]'                         # a part of it
    latentdial sweep configs/sweep/label_study.toml --out runs/try --steps 50 --edits 20 --preset fast
    latentdial sweep configs/sweep/label_study.toml --out /shared/study --address auto --cpus-per-trial 4
    latentdial sweep configs/sweep/label_study_gpu.toml --out runs/gpu --train-only --time-limit-s 480  # GPU host
    latentdial sweep configs/sweep/label_study_gpu.toml --out runs/gpu      # then anywhere: scores the weights

A local Ray with every core of this machine runs the trials (one at a time unless
``--cpus-per-trial`` is smaller) and is stopped at the end; ``--address`` joins a running
Ray cluster instead. Run the same command again to continue a stopped sweep. See
``latentdial.training.sweep`` for the file format. Only the standard library is imported
at module level (see latentdial/cli.py).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", type=Path, help="sweep TOML file (see configs/sweep/)")
    parser.add_argument("--out", type=Path, required=True,
                        help="directory of the run directories, Tune's records (tune/) and "
                             "sweep.json / sweep.md / sweep.png / sweep_plot.png")
    parser.add_argument("--steps", type=int, default=None,
                        help="override the sweep's steps per trial (chunk ends at or past it are dropped)")
    parser.add_argument("--seeds", default=None, help="override the sweep's seeds, e.g. 0,1,2")
    parser.add_argument("--only", default=None, help="comma-separated run names to train now")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=[V,...]",
                        help="only these values of one of the file's grid keys, e.g. "
                             "--grid 'objective.num_labelled=[10000, 0]' (repeatable)")
    parser.add_argument("--root", type=Path, default=None,
                        help="directory the runs' config paths are relative to (default: the current one)")
    parser.add_argument("--address", default=None,
                        help="join this Ray cluster (auto, or ray://host:port) instead of starting a local Ray")
    parser.add_argument("--cpus-per-trial", type=float, default=None,
                        help="CPUs of one trial, also its torch threads (default: the file's cpus_per_trial, "
                             "else every core of this machine, i.e. one trial at a time)")
    parser.add_argument("--max-failures", type=int, default=0,
                        help="retry a failed trial this many times (it resumes from its checkpoint)")
    parser.add_argument("--plot-metric", default=None, help="metric of sweep_plot.png (default: the file's)")
    parser.add_argument("--plot-x", default=None, help="grid key on sweep_plot.png's x axis (default: the file's)")
    parser.add_argument("--num-train", type=int, default=None,
                        help="training points of every metric (default: the preset's)")
    parser.add_argument("--num-test", type=int, default=None, help="test points of every metric")
    parser.add_argument("--preset", choices=("fast", "reference"), default=None,
                        help="sample sizes of the metrics (default: the file's metrics_preset, else fast)")
    parser.add_argument("--edits", type=int, default=None, metavar="N",
                        help="edits per factor of every trial's edit evaluation (default: the file's [edits] "
                             "num; 0 turns it off)")
    parser.add_argument("--quiet", action="store_true", help="no Ray or Tune progress output")
    parser.add_argument("--train-only", action="store_true",
                        help="train the trials one after another in this process (no Ray) and measure "
                             "nothing: for a GPU host; the same command without it scores them anywhere")
    parser.add_argument("--time-limit-s", type=float, default=None, metavar="S",
                        help="with --train-only: stop at a checkpoint after S seconds (the command resumes)")
    parser.add_argument("--threads", type=int, default=1, help="with --train-only: torch threads per trial")
    parser.add_argument("--collect", action="store_true",
                        help="train nothing: write the table, the plots and the ledger of the trials "
                             "already finished in --out or recorded in the sweep's ledger")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from latentdial.training.config import ConfigError
    from latentdial.training.sweep import (
        RESULTS_MD,
        EditSpec,
        SweepIncomplete,
        load_sweep,
        run_sweep,
        with_grid,
    )
    from latentdial.training.trainer import TrainingError

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    failed = None
    try:
        spec = with_grid(load_sweep(args.spec, args.root), args.grid)
        if args.steps is not None:
            spec = dataclasses.replace(spec, steps=args.steps)
        if args.seeds is not None:
            spec = dataclasses.replace(spec, seeds=tuple(int(s) for s in args.seeds.split(",") if s.strip()))
        if args.plot_metric is not None or args.plot_x is not None:
            plot = dataclasses.replace(spec.plot, metric=args.plot_metric or spec.plot.metric,
                                       x=args.plot_x or spec.plot.x)
            spec = dataclasses.replace(spec, plot=plot)
        if args.preset is not None:
            spec = dataclasses.replace(spec, metrics_preset=args.preset)
        if args.edits is not None:
            edits = None if args.edits == 0 else dataclasses.replace(spec.edits or EditSpec(), num=args.edits)
            spec = dataclasses.replace(spec, edits=edits)
        only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
        sizes = {k: v for k, v in (("num_train", args.num_train), ("num_test", args.num_test)) if v is not None}
        if sizes and spec.ledger is not None:
            logging.getLogger("latentdial.sweep").warning(
                "--num-train / --num-test score at other sizes than the file's preset: not using the ledger %s",
                spec.ledger)
            spec = dataclasses.replace(spec, ledger=None)
        if args.train_only:
            return _train_only(spec, args, only)
        ranked = run_sweep(spec, args.out, only=only, progress=not args.quiet, eval_overrides=sizes,
                           address=args.address, cpus_per_trial=args.cpus_per_trial,
                           max_failures=args.max_failures, collect_only=args.collect)
    except SweepIncomplete as e:
        failed, ranked = e, []
    except KeyboardInterrupt:
        print("latentdial sweep: stopped; run the same command again to resume it", file=sys.stderr)
        return 130
    except ConnectionError as e:
        print(f"latentdial sweep: could not join the Ray cluster at {args.address}: {e}", file=sys.stderr)
        return 2
    except (ConfigError, TrainingError, ValueError) as e:
        print(f"latentdial sweep: {e}", file=sys.stderr)
        return 2
    table = args.out / RESULTS_MD
    if table.is_file():
        print(table.read_text())
    if ranked and ranked[0]["score"] is not None:
        print(f"best: {ranked[0]['name']} (score {ranked[0]['score']:.3f})")
    if failed is not None:
        print(f"latentdial sweep: {failed}", file=sys.stderr)
        return 1
    return 0


def _train_only(spec: Any, args: argparse.Namespace, only: list[str] | None) -> int:
    """``--train-only``: train, report the step each trial reached, and say how to score them."""
    from latentdial.training.sweep import newest_checkpoint_step, train_sweep

    short = train_sweep(spec, args.out, only=only, threads=args.threads, progress=not args.quiet,
                        time_limit_s=args.time_limit_s)
    for trial in spec.trials():
        run_dir = args.out / trial.dir_name
        if run_dir.is_dir():
            print(f"{trial.dir_name}: step {newest_checkpoint_step(run_dir):,} of {spec.steps:,}")
    if short:
        print(f"latentdial sweep: {len(short)} trial(s) stopped before their budget; run the same command "
              "again to resume them", file=sys.stderr)
        return 1
    print(f"trained; score with: latentdial sweep {args.spec} --out {args.out}")
    return 0
