"""A study's ledger: every finished trial's result as a small JSON file, kept with the code.

A study too long for one machine's session (the label study: about 17 hours on the 2-core
CPU machine) runs in pieces, on whatever machine is at hand. The run directories, with their
weights and checkpoints, stay on the machine that trained them; the ledger (``ledger =
"docs/studies/<name>"`` in the sweep file) is committed, so the next machine starts from the
trials already finished and the table and plot always cover every one of them.

An entry is ``<ledger>/<trial>.json``::

    {"key": {what makes the trial the same trial: its resolved config, steps, metric preset,
             asked edits},
     "result": {the trial's RunResult: scores, timings, where it ran}}

An entry counts only while its key equals the trial's key now: change the recipe (a config,
the budget, the preset, the edits asked) and the trial is trained again, not read back.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("latentdial.sweep")


def entry_path(ledger: Path, trial_name: str) -> Path:
    return Path(ledger) / f"{trial_name}.json"


def read_entry(ledger: Path, trial_name: str, key: dict[str, Any]) -> dict[str, Any] | None:
    """The recorded result of ``trial_name`` if the ledger holds one made under ``key``, else None."""
    path = entry_path(ledger, trial_name)
    if not path.is_file():
        return None
    entry = json.loads(path.read_text())
    if _canonical(entry.get("key")) != _canonical(key):
        log.info("sweep: the ledger's %s was made by another recipe; training the trial again", path)
        return None
    return dict(entry["result"])


def write_entry(ledger: Path, trial_name: str, key: dict[str, Any], result: dict[str, Any]) -> bool:
    """Record ``result`` under ``key``; returns whether the file changed."""
    path = entry_path(ledger, trial_name)
    text = json.dumps({"key": key, "result": result}, indent=2, sort_keys=True) + "\n"
    if path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True


def _canonical(value: Any) -> str:
    """One spelling of a JSON value (key order and tuples vs lists don't matter)."""
    return json.dumps(value, sort_keys=True)
