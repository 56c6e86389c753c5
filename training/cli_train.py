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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from latentdial.training.config import TrainConfig

#: Stands for the epilog; ``_ChoicesInHelp`` replaces it with the registries when help is shown.
_CHOICES_EPILOG = "(the registered objectives, datasets and architectures)"


def choices_text() -> str:
    """What a config may choose, read from the registries themselves: the objectives, datasets and
    architectures by name, each with its options and their defaults."""
    import dataclasses
    import inspect

    from latentdial.training.data import DATASETS
    from latentdial.training.model import ARCHITECTURES, ModelConfig
    from latentdial.training.objectives import OBJECTIVES

    def options(pairs: list[tuple[str, object]]) -> str:
        return ", ".join(n if v is inspect.Parameter.empty else f"{n}={v!r}" for n, v in pairs) or "-"

    def config_fields(cls: type) -> list[tuple[str, object]]:
        """(name, default) of a config dataclass; a field without any default is required."""
        out: list[tuple[str, object]] = []
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                out.append((f.name, f.default))
            elif f.default_factory is not dataclasses.MISSING:
                out.append((f.name, f.default_factory()))
            else:
                out.append((f.name, inspect.Parameter.empty))
        return out

    lines = ["A config chooses (TOML keys; --set KEY=VALUE overrides any of them):", "",
             "objective.name      options: objective.<option> (default)"]
    labels = {name: (cls.__doc__ or "").split("\n")[0].split(" (")[0].split(":")[0].strip()
              for name, cls in OBJECTIVES.items()}
    width = max(map(len, labels.values()), default=0)
    for name, cls in OBJECTIVES.items():
        lines.append(f"  {name:<17} {labels[name]:<{width}}  {options(config_fields(cls.Config))}")
    lines += ["", "dataset.name        options: dataset.<option> (default; none: required)"]
    for name, factory in DATASETS.items():
        params = [(q.name, q.default) for q in inspect.signature(factory).parameters.values()]
        lines.append(f"  {name:<17} {options(params)}")
    model = [(n, v) for n, v in config_fields(ModelConfig) if n != "architecture"]
    lines += ["", "model.architecture  options: model.<option> (default)"]
    lines += [f"  {name:<17} {options(model)}" for name in ARCHITECTURES]
    return "\n".join(lines) + "\n"


class _ChoicesInHelp(argparse.RawDescriptionHelpFormatter):
    """Writes ``choices_text()`` in place of the epilog, so only ``--help`` imports the registries."""

    def add_text(self, text: str | None) -> None:
        if text is _CHOICES_EPILOG:
            try:
                text = choices_text()
            except ImportError as e:  # a serving-only install has no torch
                text = f"(install the train extra to list the objectives, datasets and architectures: {e})"
        super().add_text(text)


class _ListChoices(argparse.Action):
    """``--list``: print ``choices_text()`` and exit, like ``--help`` (no --out needed)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)  # type: ignore[arg-type]

    def __call__(self, parser: argparse.ArgumentParser, namespace: object, values: object,
                 option_string: str | None = None) -> None:
        sys.stdout.write(choices_text())
        parser.exit(0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = _ChoicesInHelp
    parser.epilog = _CHOICES_EPILOG
    parser.add_argument("--list", action=_ListChoices,
                        help="list the objectives, datasets and architectures a config may choose, and exit")
    parser.add_argument("--config", help="TOML config (see configs/); defaults apply when omitted")
    parser.add_argument("--out", required=True, help="run directory to create (or continue with --resume)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set objective.beta=8 --set steps=2000 (repeatable)",
    )
    parser.add_argument(
        "--data", metavar="DIR",
        help="train on your labelled image folder (metadata.csv + factors.toml; docs/datasets.md): "
             "sets [dataset] to it, at the model's channels and image size",
    )
    parser.add_argument("--schema", metavar="FILE", help="with --data: the factor schema (default DIR/factors.toml)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="with --data: skip bad rows (missing or unreadable images, bad labels) and say how many")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run(args: argparse.Namespace) -> int:
    import json
    import os
    from pathlib import Path

    from latentdial.training.config import ConfigError, load_config
    from latentdial.training.stargan.config import is_stargan_config
    from latentdial.training.trainer import TrainingError, train

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if (args.schema or args.skip_bad) and not args.data:
        print("latentdial train: --schema and --skip-bad go with --data DIR", file=sys.stderr)
        return 2
    try:
        if is_stargan_config(args.config, args.overrides):  # family = "stargan": a GAN editor, not a VAE
            from latentdial.training.stargan.cli import run as run_stargan
            return run_stargan(args)
        cfg = load_config(args.config, args.overrides)
        if args.data:
            cfg = with_folder(cfg, args.data, schema=args.schema, skip_bad=args.skip_bad)
    except ConfigError as e:
        print(f"latentdial train: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    from latentdial.training.evaluate import resolve_dataset

    try:
        dataset = resolve_dataset(cfg.dataset)  # bad data stops here, with the file and row named
    except (ValueError, OSError) as e:
        print(f"latentdial train: dataset: {e}", file=sys.stderr)
        return 2
    if hasattr(dataset, "summary"):
        print(dataset.summary())
    try:
        out = train(cfg, Path(args.out), resume=args.resume, progress=not args.no_progress, dataset=dataset)
    except (ConfigError, TrainingError) as e:
        print(f"latentdial train: {e}", file=sys.stderr)
        return 1
    if os.environ.get("RANK", "0") == "0":
        print(f"run directory: {out}")
    return 0


def with_folder(cfg: TrainConfig, data: str, *, schema: str | None = None, skip_bad: bool = False) -> TrainConfig:
    """``cfg`` training on the labelled folder ``data`` at the model's channels and image size."""
    import dataclasses
    from pathlib import Path

    from latentdial.training.config import ConfigError

    if not Path(data).is_dir():
        raise ConfigError(f"--data {data}: no such folder")
    dataset = {"name": "labelled_folder", "path": str(Path(data).resolve()),
               "channels": cfg.model.channels, "image_size": cfg.model.image_size}
    if schema:
        dataset["schema"] = str(Path(schema).resolve())
    if skip_bad:
        dataset["skip_bad"] = True
    return dataclasses.replace(cfg, dataset=dataset)
