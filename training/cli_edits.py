"""``latentdial evaluate-edits MODEL_DIR``: edit fidelity of a model through a real server.

Without ``--address`` a server is started in this process on 127.0.0.1 (a free port)
over MODEL_DIR's repository (``<repository>/<name>/<version>``) and stopped at the
end. The dataset defaults to ``manifest.provenance["dataset"]``. Prints one table
row per factor of the factor card and writes the report as JSON; see
``latentdial.training.edit_fidelity`` for the protocol and every field.

Only the standard library is imported at module level (see latentdial/cli.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import threading
from pathlib import Path
from typing import Any, Self


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", type=Path, help="model directory models/<name>/<version> (with manifest.json)")
    parser.add_argument("--address", default=None,
                        help="HOST:PORT of a running server that serves this model "
                             "(default: start one for the duration of the command)")
    parser.add_argument("--num", type=int, default=2000, help="source images; each factor is edited once per source")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sources and the targets (default 0)")
    parser.add_argument("--out", type=Path, default=Path("edits.json"), help="report JSON (default edits.json)")
    parser.add_argument("--batch", type=int, default=128, help="images per RPC (default 128)")
    parser.add_argument("--dataset", default=None,
                        help='dataset name or JSON {"name": ..., options} (default: the manifest\'s provenance)')
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


class LocalServer:
    """A latentdial server on 127.0.0.1 (free port) in a background thread with its own event loop."""

    def __init__(self, repository: Path) -> None:
        self.repository = repository
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="evaluate-edits-server")
        self._handle: Any = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _call(self, coro: Any, timeout_s: float = 120.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def __enter__(self) -> Self:
        from latentdial.serving.config import ServerConfig
        from latentdial.serving.server import create_server

        config = ServerConfig(repository=str(self.repository), host="127.0.0.1", port=0, metrics_port=0, http=False,
                              grace_s=2.0)
        self._thread.start()
        try:
            self._handle, self.port = self._call(create_server(config))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._call(self._handle.stop(1.0))
            self._handle = None
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        if not self.loop.is_running():
            self.loop.close()


def _print_table(report: dict[str, Any], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    metric = report["metric"].upper()
    table = Table(title=title)
    for col in ("factor", "kind", f"{metric} edit / recon", "fidelity", "accuracy", "±1 step",
                "other drift mean / max (std)", "round trip (std)", "tolerance (std)", "within tol", "others kept"):
        table.add_column(col, justify="left" if col in ("factor", "kind") else "right")

    def f(x: Any, spec: str = ".3f") -> str:
        return "—" if x is None else format(x, spec)

    for name, r in report["factors"].items():
        table.add_row(
            name, r["kind"], f"{f(r['edit_score'])} / {f(r['recon_score'])}", f(r["fidelity"]),
            f"{f(r['accuracy'], '.1%')} (src {f(r['source_readback_accuracy'], '.0%')})",
            f(r["within_one_step"], ".1%"),
            f"{f(r['other_drift_mean_std'])} / {f(r['other_drift_max_std'], '.2f')}",
            f(r["round_trip_drift_mean_std"]), f(r["drift_tolerance_std"]), f(r["other_within_tolerance"], ".1%"), f(r["other_values_preserved"], ".1%"),
        )
    # A log or a pipe gets the whole table rather than rich's 80-column default.
    console = Console(width=None if sys.stdout.isatty() else 180)
    console.print(table)
    for name, reason in report["skipped"].items():
        console.print(f"skipped {name}: {reason}")


def _json_safe(x: Any) -> Any:
    """NaN / inf (e.g. a fidelity whose reconstruction scores 0) -> null, so the file is strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    return x


def run(args: argparse.Namespace) -> int:
    from latentdial.training.edit_fidelity import evaluate_edits
    from latentdial.training.evaluate import resolve_dataset

    from latentdial.client import Client, LatentDialError
    from latentdial.factor_card import FactorCard
    from latentdial.manifest import Manifest, ManifestError

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
    spec = args.dataset if args.dataset is not None else manifest.provenance.get("dataset")
    try:
        dataset = resolve_dataset(spec)
    except ValueError as e:
        print(f"latentdial evaluate-edits: dataset {spec!r}: {e}; pass --dataset NAME", file=sys.stderr)
        return 2
    card = FactorCard.from_dict(manifest.factor_card)
    name, version = model_dir.parent.name, model_dir.name
    kwargs = {"model": name, "version": version, "num": args.num, "seed": args.seed, "batch": args.batch,
              "progress": not args.quiet}
    try:
        if args.address:
            with Client(args.address, timeout_s=300.0) as client:
                report = evaluate_edits(client, dataset, card, **kwargs)
        else:
            with LocalServer(model_dir.parent.parent) as server, Client(server.address, timeout_s=300.0) as client:
                report = evaluate_edits(client, dataset, card, **kwargs)
    except (ValueError, LatentDialError) as e:
        where = args.address or "the local server"
        print(f"latentdial evaluate-edits: {type(e).__name__} from {where}: {e}", file=sys.stderr)
        return 2
    report = {"model": {"name": name, "version": version, "dir": str(model_dir)},
              "dataset": spec if isinstance(spec, dict) else {"name": getattr(dataset, "name", str(spec))}} | report
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(_json_safe(report), indent=2, allow_nan=False) + "\n")
    _print_table(report, f"edit fidelity of {name}/{version} ({report['num']} sources)")
    print(f"wrote {args.out}")
    return 0
