"""A sweep's model selection without labels: ModelCentrality over each run's trials.

Lin et al. 2020 ("InfoGAN-CR and ModelCentrality", ICML, section 5) select, among models
trained with one method over seeds and hyper-parameters, the one most similar on average to
the others, with no label read (:mod:`latentdial.training.model_centrality`). A sweep file
asks for it with::

    [select]
    method = "centrality"   # the only method
    groups = 500            # optional sizes (the authors' by default; smaller are faster)
    group_size = 100
    std_images = 10000
    seed = 0

Every ``[[run]]`` entry is one method: its finished trials (every grid point and seed) are the
candidates, and the selected trial is reported beside the ranking in ``sweep.md`` and
``sweep.json``. The labelled metrics of the selected trial are what "with selection" means in
the paper's table. The similarity is costly (every model encodes every other model's
``groups x group_size + std_images`` images), so it is kept in ``OUT/centrality.json`` and
computed again only for a run whose trials, weights or sizes changed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from latentdial.training.config import ConfigError

log = logging.getLogger("latentdial.sweep")

#: The selection of every run, kept beside the sweep's results.
CENTRALITY_JSON = "centrality.json"
METHODS = ("centrality",)


@dataclass(frozen=True)
class SelectSpec:
    """``[select]`` of a sweep file: ModelCentrality's sample sizes (model_centrality's defaults)."""

    method: str = "centrality"
    groups: int = 500
    group_size: int = 100
    std_images: int = 10_000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"[select] method must be one of {list(METHODS)}, got {self.method!r}")
        if min(self.groups, self.group_size, self.std_images) < 2:
            raise ConfigError(f"[select] groups, group_size and std_images must be >= 2, got "
                              f"{self.groups}, {self.group_size}, {self.std_images}")

    @property
    def sizes(self) -> dict[str, int]:
        """The keyword arguments of ``centrality_of_runs``."""
        return {"num_groups": self.groups, "group_size": self.group_size, "num_std": self.std_images,
                "seed": self.seed}


def parse_select(table: Any, path: Path | str) -> SelectSpec:
    """``[select]`` of sweep file ``path`` as a :class:`SelectSpec`, or a ConfigError saying what to fix."""
    if not isinstance(table, dict):
        raise ConfigError(f"select in {path} must be a table ([select] with method = \"centrality\"), got {table!r}")
    known = {f for f in SelectSpec.__dataclass_fields__}
    bad = sorted(set(table) - known)
    if bad:
        raise ConfigError(f"unknown key(s) {bad} in [select] of {path}; valid keys: {', '.join(sorted(known))}")
    try:
        return SelectSpec(**{k: (str(v) if k == "method" else int(v)) for k, v in table.items()})
    except (TypeError, ValueError) as err:
        raise ConfigError(f"[select] of {path}: {err}") from err


def _weights_steps(run_dirs: Sequence[Path]) -> dict[str, int | None]:
    from latentdial.training.sweep import weights_step

    return {p.name: weights_step(p) for p in run_dirs}


def select_models(select: SelectSpec, out: Path, results: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """ModelCentrality among the finished trials of each run in ``results`` (RunResult-like: ``run``,
    ``run_dir``); returns (and keeps in ``OUT/centrality.json``) per run name
    ``{"ranking": [[trial dir, centrality], ...], "selected": trial dir, "weights": {dir: step}}``.

    A run with fewer than two trials whose weights are here (a ledger holds scores, not weights)
    is left out, with a log line. A run already in ``centrality.json`` with the same trials,
    weights and sizes is read back, not computed again.
    """
    from latentdial.training.model_centrality import centrality_of_runs
    from latentdial.training.run_dir import WEIGHTS

    out = Path(out)
    path = out / CENTRALITY_JSON
    kept = json.loads(path.read_text()) if path.is_file() else {}
    asked = asdict(select)
    runs: dict[str, dict[str, Any]] = kept.get("runs", {}) if kept.get("select") == asked else {}
    by_run: dict[str, list[Path]] = {}
    for r in results:
        run_dir = Path(r.run_dir)
        run_dir = run_dir if run_dir.is_absolute() else out / run_dir
        if (run_dir / WEIGHTS).is_file():
            by_run.setdefault(r.run, []).append(run_dir)
    selection: dict[str, dict[str, Any]] = {}
    for run, dirs in by_run.items():
        if len(dirs) < 2:
            log.info("sweep: ModelCentrality needs two trained trials of %s here; it has %d", run, len(dirs))
            continue
        dirs = sorted(dirs)
        weights = _weights_steps(dirs)
        earlier = runs.get(run)
        if earlier is not None and earlier.get("weights") == weights:
            selection[run] = earlier
            continue
        log.info("sweep: ModelCentrality over the %d trials of %s", len(dirs), run)
        found = centrality_of_runs(dirs, **select.sizes)
        ranking = [[Path(name).name, score] for name, score in found["ranking"]]
        selection[run] = {"ranking": ranking, "selected": ranking[0][0], "weights": weights,
                          "similarity": found["similarity"]}  # rows and columns in the order of weights
    path.write_text(json.dumps({"select": asked, "runs": {**runs, **selection}}, indent=2) + "\n")
    return selection


def selection_table(selection: dict[str, dict[str, Any]], results: Sequence[Any], columns: Sequence[str]) -> str:
    """Markdown: per run, the trial ModelCentrality selects, its centrality and its own ``columns`` scores."""
    if not selection:
        return ""
    scores = {Path(r.run_dir).name: r.scores for r in results}
    head = ["run", "trials", "selected (no labels)", "centrality", *columns]
    lines = ["", "ModelCentrality (Lin et al. 2020, section 5) selects, with no label read, the trial of each run "
             "most similar on average to its others; its own scores, not a mean over seeds:", "",
             "| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (1 + len(columns))) + "|"]
    for run, chosen in selection.items():
        name, score = chosen["ranking"][0]
        own = scores.get(name, {})
        cells = [run, str(len(chosen["ranking"])), name, f"{score:.3f}",
                 *(f"{own[k]:.3f}" if k in own else "—" for k in columns)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
