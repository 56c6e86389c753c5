"""``latentdial evaluate-edits MODEL_DIR``: edit success of a model through a real server.

Without ``--address`` a server is started in this process on 127.0.0.1 (a free port)
over MODEL_DIR's repository (``<repository>/<name>/<version>``) and stopped at the
end. The dataset defaults to ``manifest.provenance["dataset"]``; its attribute reader
(``latentdial train-reader``) judges every edit. Prints one table row per factor, writes
the report as JSON and a PNG sheet of edits with the reader's verdicts; see
``latentdial.training.edit_success`` for the protocol and every field.

``--sources DATASET`` draws the source images (and the ground truth of the IoU) from another
dataset of the same factor grid, e.g. ``dsprites_elsewhere`` (the same factors drawn by other
conventions), so read-back and edits are measured on images the model was not trained on. The
judge is then, unless ``--reader`` names one, the model dataset's reader trained also on that
renderer (``latentdial train-reader --dataset dsprites --also dsprites_elsewhere``).

**A model trained on a labelled folder** (its manifest records ``{"name": "labelled_folder",
...}``) has no renderer of its own: a folder holds images, it cannot draw one for chosen
factors. ``--dataset NAME`` names a dataset that renders the folder's factor grid, e.g.
``--dataset idsprites`` for a folder written by ``latentdial make-folder --dataset idsprites``
(the same options: ``--dataset '{"name": "idsprites", "num_shapes": 5}'`` for one written with
``--dataset-option num_shapes=5``). The sources are drawn by it, edits go through the server by
the card's factor names, and its reader judges (the generic reader for a dataset without a
dSprites one). The card must name only factors of the renderer, on the renderer's grids (same
number of values, same values within 1e-9, a circular factor's modulo its period, the same
labels), and the model must take the renderer's image shape; otherwise it is refused, saying
which factor differs. A generic reader must have been trained on the dataset's options
(recorded in its file); ``--reader FILE`` passes another.

Only the standard library is imported at module level (see latentdial/cli.py).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", type=Path, help="model directory models/<name>/<version> (with manifest.json)")
    parser.add_argument("--address", default=None,
                        help="HOST:PORT of a running server that serves this model "
                             "(default: start one for the duration of the command)")
    parser.add_argument("--num", type=int, default=1000,
                        help="source images; each factor is edited once per source (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sources and the targets (default 0)")
    parser.add_argument("--out", type=Path, default=Path("edits.json"), help="report JSON (default edits.json)")
    parser.add_argument("--sheet", type=Path, default=None,
                        help="PNG sheet of edits with the reader's verdicts (default: OUT with .png)")
    parser.add_argument("--examples", type=int, default=5, help="edits per factor on the sheet (default 5)")
    parser.add_argument("--reader", type=Path, default=None,
                        help="attribute reader weights (default: shipped, else cached, else trained now for a "
                             "dSprites reader; a generic one is trained by latentdial train-reader)")
    parser.add_argument("--batch", type=int, default=128, help="images per RPC (default 128)")
    parser.add_argument("--dataset", default=None,
                        help='dataset name or JSON {"name": ..., options} (default: the manifest\'s provenance); '
                             "for a model trained on a labelled folder, a dataset that renders the folder's grid, "
                             "e.g. idsprites")
    parser.add_argument("--sources", default=None, metavar="DATASET",
                        help="draw the source images from this dataset of the same factor grid instead, "
                             'e.g. dsprites_elsewhere (name or JSON {"name": ..., options}); the judge '
                             "defaults to the reader trained on both renderers")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _print_table(report: dict[str, Any], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("factor", "success", "target hit", "others kept", "least kept", "read-back", "IoU edit"):
        table.add_column(col, justify="left" if col in ("factor", "least kept") else "right")
    for name, r in report["factors"].items():
        readback = f"{report['readback'][name]:.1%}"
        if not r["editable"]:
            table.add_row(name, "—", "—", "—", r["reason"], readback, "—")
            continue
        least = min(r["kept_by_factor"], key=r["kept_by_factor"].get)
        table.add_row(name, f"{r['success']:.1%}", f"{r['target_hit']:.1%}", f"{r['others_kept']:.1%}",
                      f"{least} {r['kept_by_factor'][least]:.1%}", readback, f"{r['iou']:.3f}")
    # A log or a pipe gets the whole table rather than rich's 80-column default.
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)
    console.print(f"reconstructions: every factor reads back in {report['readback']['all']:.1%}, "
                  f"IoU {report['recon_iou']:.3f}")


def _json_safe(x: Any) -> Any:
    """NaN / inf (e.g. a fidelity whose reconstruction scores 0) -> null, so the file is strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    return x


def _name_of(spec: Any) -> str | None:
    """The registry name of a dataset spec (a name, a JSON string or a {"name": ...} dict)."""
    if isinstance(spec, str):
        if spec.lstrip().startswith("{"):
            try:
                spec = json.loads(spec)
            except ValueError:
                return None
        else:
            return spec
    return spec.get("name") if isinstance(spec, dict) else getattr(spec, "name", None)


def _no_renderer(spec: Any) -> str | None:
    """Why the dataset ``spec`` cannot draw sources for chosen factors (a labelled folder), or None."""
    from latentdial.training.data import DATASETS

    name = _name_of(spec)
    factory = DATASETS.get(name) if isinstance(name, str) else None
    if factory is None or getattr(factory, "renders_from_factors", True):
        return None
    return (f"the dataset is {name!r}, which holds images but cannot draw one for chosen factors, so edits "
            "cannot be drawn from it or judged against it; pass --dataset NAME of a dataset that renders its "
            "factor grid, e.g. --dataset idsprites for a folder written by `latentdial make-folder --dataset "
            "idsprites` (give the same options as JSON: --dataset '{\"name\": \"idsprites\", \"num_shapes\": 5}')")


def _check_reader_options(reader: Any, name: str, spec: Any) -> None:
    """Raise ValueError if a generic reader was trained on other options of dataset ``name`` than ``spec``'s."""
    from latentdial.training.reader.store import dataset_options

    if reader.layout is None or "options" not in reader.metadata:
        return
    if isinstance(spec, str):
        spec = json.loads(spec) if spec.lstrip().startswith("{") else {"name": spec}
    given = {k: v for k, v in dict(spec).items() if k != "name"} if isinstance(spec, dict) else {}
    wanted, trained = dataset_options(name, given), json.loads(reader.metadata["options"])
    if wanted != trained:
        raise ValueError(f"the {name} reader was trained on {name} with options {trained}, the sources are "
                         f"drawn with {wanted}; train one on those (latentdial train-reader --dataset {name} "
                         "--dataset-option KEY=VALUE ... --out FILE) and pass --reader FILE")


def run(args: argparse.Namespace) -> int:
    import torch

    from latentdial.client import Client, LatentDialError
    from latentdial.factor_card import FactorCard
    from latentdial.manifest import Manifest, ManifestError
    from latentdial.serving.config import ServerConfig
    from latentdial.serving.embedded import EmbeddedServer
    from latentdial.training.edit_sheet import edit_sheet
    from latentdial.training.edit_success import check_card_grid, check_same_grid, evaluate_edits
    from latentdial.training.evaluate import resolve_dataset
    from latentdial.training.reader import load_reader
    from latentdial.training.reader.store import load_file_reader, reader_key, trained_also

    torch.set_num_threads(1)
    model_dir = args.model_dir.resolve()
    try:
        manifest = Manifest.load(model_dir)
    except ManifestError as e:
        print(f"latentdial evaluate-edits: {e}", file=sys.stderr)
        return 2
    if not manifest.factor_card:
        print(f"latentdial evaluate-edits: {model_dir} has no factor card; edits by factor name need one "
              "(export a run evaluated on labelled data)", file=sys.stderr)
        return 2
    trained_on = manifest.provenance.get("dataset")
    spec = args.dataset if args.dataset is not None else trained_on
    refusal = _no_renderer(spec)
    if refusal is not None:
        print(f"latentdial evaluate-edits: {refusal}", file=sys.stderr)
        return 2
    try:
        dataset = resolve_dataset(spec)
        name_of_data = getattr(dataset, "name", None)
    except (ValueError, FileNotFoundError, ImportError) as e:
        print(f"latentdial evaluate-edits: dataset {spec!r}: {e}; pass --dataset NAME", file=sys.stderr)
        return 2
    # a model judged by another dataset than the one it records, e.g. a folder model by a renderer of its grid
    elsewhere = trained_on is not None and _name_of(trained_on) != name_of_data
    card = FactorCard.from_dict(manifest.factor_card)
    try:
        check_card_grid(card, dataset, every_name=elsewhere)
    except ValueError as e:
        print(f"latentdial evaluate-edits: {model_dir} (trained on {_name_of(trained_on)!r}) against "
              f"{name_of_data!r}: {e}", file=sys.stderr)
        return 2
    source_data, also = None, ()
    if args.sources is not None:
        try:
            source_data = resolve_dataset(args.sources)
            check_same_grid(dataset, source_data)
        except (ValueError, FileNotFoundError) as e:
            print(f"latentdial evaluate-edits: --sources {args.sources!r}: {e}", file=sys.stderr)
            return 2
        if getattr(source_data, "name", None) != name_of_data:
            also = (str(getattr(source_data, "name", None)),)
    try:
        reader = load_file_reader(args.reader) if args.reader else load_reader(str(name_of_data), also=also,
                                                                                 progress=not args.quiet)
        _check_reader_options(reader, str(name_of_data), spec)
    except (ValueError, FileNotFoundError) as e:
        print(f"latentdial evaluate-edits: dataset {spec!r}: {e}; pass --dataset NAME", file=sys.stderr)
        return 2
    if tuple(manifest.image_shape) != tuple(dataset.observation_shape):
        print(f"latentdial evaluate-edits: {model_dir} takes {tuple(manifest.image_shape)} images, "
              f"{name_of_data!r} draws {tuple(dataset.observation_shape)}; pass --dataset NAME of the model's grid "
              "and image shape", file=sys.stderr)
        return 2
    name, version = model_dir.parent.name, model_dir.name
    kwargs = {"source_data": source_data, "model": name, "version": version, "num": args.num,
              "seed": args.seed, "batch": args.batch, "progress": not args.quiet}
    try:
        if args.address:
            with Client(args.address, timeout_s=300.0) as client:
                result = evaluate_edits(client, dataset, card, reader, **kwargs)
        else:
            config = ServerConfig(repository=str(model_dir.parent.parent), host="127.0.0.1", port=0, metrics_port=0,
                                  http=False, grace_s=2.0)
            with EmbeddedServer(config, name="evaluate-edits-server") as server, \
                    Client(server.address, timeout_s=300.0) as client:
                result = evaluate_edits(client, dataset, card, reader, **kwargs)
    except (ValueError, LatentDialError) as e:
        where = args.address or "the local server"
        print(f"latentdial evaluate-edits: {type(e).__name__} from {where}: {e}", file=sys.stderr)
        return 2
    if isinstance(spec, str) and spec.lstrip().startswith("{"):
        spec = json.loads(spec)  # options given as JSON are recorded as such
    report = {"model": {"name": name, "version": version, "dir": str(args.model_dir)},
              "dataset": spec if isinstance(spec, dict) else {"name": name_of_data}} | result.report
    if elsewhere:
        report["model"]["trained_on"] = trained_on
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(_json_safe(report), indent=2, allow_nan=False) + "\n")
    judge = reader_key(reader.dataset, trained_also(reader.metadata))
    judge += " generic" if reader.layout is not None else ""
    drawn = "" if source_data is None else f", sources drawn by {report['sources']}"
    if elsewhere and source_data is None:
        drawn = f", trained on {_name_of(trained_on)}, sources drawn by {report['sources']}"
    _print_table(report, f"edit success of {name}/{version} ({report['num']} edits per factor{drawn}, "
                         f"judged by the {judge} attribute reader)")
    print(f"wrote {args.out}")
    if result.edits:
        sheet = edit_sheet(result, dataset, args.sheet or args.out.with_suffix(".png"), examples=args.examples)
        print(f"wrote {sheet}")
    return 0
