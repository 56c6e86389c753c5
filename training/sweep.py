"""A bounded sweep: train several configs for the same number of steps, score them, rank them.

A sweep file (``configs/sweep/*.toml``) names the runs and the budget::

    steps = 1000                 # every run trains exactly this many steps
    seeds = [0]                  # each run once per seed
    num_threads = 1              # torch threads per run
    metrics = "factor_vae,mig,dci"
    rank_by = ["factor_vae.eval_accuracy", "mig", "dci.disentanglement"]

    [[run]]
    name = "beta_vae"
    config = "configs/beta_vae.toml"   # relative to the sweep file's repository root
    set = ["objective.beta=4"]         # optional --set overrides

Runs go to ``OUT/<name>-s<seed>/`` (ordinary run directories), results to ``OUT/sweep.json``,
``OUT/sweep.md`` (the ranked table) and ``OUT/sweep.png`` (one bar group per run). A run
that already has its metrics is not trained again (and is evaluated again only when its
metrics lack a ``rank_by`` key), and one with checkpoints is resumed, so an interrupted
sweep continues where it stopped.

The ranking score is the mean of ``rank_by`` over a run's seeds and keys, the
"choose the best by the metrics" rule of Locatello et al. (2019, sec. 5.3) with the
metrics given equal weight.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from latentdial.training.config import ConfigError, load_config, read_toml

log = logging.getLogger("latentdial.sweep")

RESULTS_JSON = "sweep.json"
RESULTS_MD = "sweep.md"
RESULTS_PNG = "sweep.png"
#: Written into each run directory, so that a later sweep reads back the run's timings too.
RUN_RESULT = "sweep_result.json"


@dataclass(frozen=True)
class SweepRun:
    """One entry of a sweep: a config file and its overrides."""

    name: str
    config: Path
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep trains and how it scores the runs."""

    runs: tuple[SweepRun, ...]
    steps: int
    seeds: tuple[int, ...] = (0,)
    num_threads: int = 1
    metrics: str = "factor_vae,mig,dci"
    rank_by: tuple[str, ...] = ("factor_vae.eval_accuracy", "mig", "dci.disentanglement")

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"sweep steps must be >= 1, got {self.steps}")
        if not self.runs:
            raise ConfigError("a sweep needs at least one [[run]]")
        if not self.seeds:
            raise ConfigError("a sweep needs at least one seed")
        if not self.rank_by:
            raise ConfigError("rank_by must name at least one metric key")
        names = [r.name for r in self.runs]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ConfigError(f"run names must be unique; repeated: {duplicated}")


@dataclass
class RunResult:
    """The outcome of one (run, seed): its scores and how long it took."""

    name: str
    seed: int
    run_dir: str
    objective: str
    overrides: list[str]
    steps: int
    train_seconds: float | None
    eval_seconds: float | None
    scores: dict[str, float] = field(default_factory=dict)


def load_sweep(path: Path | str, root: Path | None = None) -> SweepSpec:
    """Parse a sweep TOML file; config paths are relative to ``root`` (default: the current directory)."""
    raw = read_toml(path, "sweep file", "configs/sweep/")
    known = {"steps", "seeds", "num_threads", "metrics", "rank_by", "run"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {path}; valid keys: {', '.join(sorted(known))}")
    root = Path(root) if root is not None else Path.cwd()
    runs = []
    for i, entry in enumerate(raw.get("run", [])):
        extra = sorted(set(entry) - {"name", "config", "set"})
        if extra or "name" not in entry or "config" not in entry:
            raise ConfigError(f"[[run]] #{i + 1} in {path} needs name and config (and optionally set); "
                              f"got keys {sorted(entry)}")
        config = root / entry["config"]
        if not config.is_file():
            raise ConfigError(f"[[run]] {entry['name']!r}: config {config} does not exist")
        runs.append(SweepRun(str(entry["name"]), config, tuple(entry.get("set", ()))))
    if "steps" not in raw:
        raise ConfigError(f"{path} must set steps (the budget of every run)")
    return SweepSpec(
        runs=tuple(runs), steps=int(raw["steps"]), seeds=tuple(int(s) for s in raw.get("seeds", [0])),
        num_threads=int(raw.get("num_threads", 1)), metrics=str(raw.get("metrics", SweepSpec.metrics)),
        rank_by=tuple(raw.get("rank_by", SweepSpec.rank_by)),
    )


def run_dir_name(run: SweepRun, seed: int) -> str:
    return f"{run.name}-s{seed}"


def train_and_score(
    run: SweepRun, seed: int, spec: SweepSpec, out: Path, *, progress: bool = True,
    eval_overrides: dict[str, Any] | None = None,
) -> RunResult:
    """Train one (run, seed) for ``spec.steps`` steps into ``out/<name>-s<seed>`` and score it.

    A run directory that already holds metrics for ``spec.steps`` steps is read back, not retrained
    (weights without every ``rank_by`` metric are evaluated again); one that holds checkpoints is
    resumed. ``eval_overrides`` go to ``evaluate_run`` (e.g. smaller point counts in tests).
    """
    from latentdial.training.evaluate import evaluate_run
    from latentdial.training.trainer import checkpoint_paths, train

    earlier = finished_result(run, seed, spec, out)
    if earlier is not None:
        return earlier
    cfg = _run_config(run, seed, spec)
    run_dir = out / run_dir_name(run, seed)
    train_seconds = _recorded(run_dir).get("train_seconds")
    if not _trained(run_dir, spec):
        start = time.perf_counter()
        train(cfg, run_dir, resume=bool(checkpoint_paths(run_dir)), progress=progress)
        train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    scores, _ = evaluate_run(run_dir, metrics=spec.metrics, seed=seed, card=False, progress=progress,
                             **(eval_overrides or {}))
    result = RunResult(
        name=run.name, seed=seed, run_dir=str(run_dir), objective=cfg.objective_name,
        overrides=list(run.overrides), steps=spec.steps, train_seconds=train_seconds,
        eval_seconds=time.perf_counter() - start, scores={k: float(v) for k, v in scores.items()},
    )
    (run_dir / RUN_RESULT).write_text(json.dumps(asdict(result), indent=2) + "\n")
    return result


def _recorded(run_dir: Path) -> dict[str, Any]:
    """What an earlier sweep recorded in ``run_dir`` (timings), or {}."""
    path = run_dir / RUN_RESULT
    return json.loads(path.read_text()) if path.is_file() else {}


def _run_config(run: SweepRun, seed: int, spec: SweepSpec) -> Any:
    return load_config(run.config, [*run.overrides, f"steps={spec.steps}", f"seed={seed}",
                                    "evaluate=false", f"num_threads={spec.num_threads}",
                                    f"checkpoint_every={max(1, min(spec.steps, 1000))}"])


def _trained(run_dir: Path, spec: SweepSpec) -> bool:
    """Whether ``run_dir`` holds finished weights trained for ``spec.steps`` steps."""
    from latentdial.training.run_dir import CONFIG, WEIGHTS

    return (run_dir / WEIGHTS).is_file() and (run_dir / CONFIG).is_file() and \
        json.loads((run_dir / CONFIG).read_text()).get("steps") == spec.steps


def finished_result(run: SweepRun, seed: int, spec: SweepSpec, out: Path) -> RunResult | None:
    """The result of a (run, seed) that an earlier sweep already trained and scored, else None.

    Scores count only when they hold every ``rank_by`` key: a run scored before the sweep ranked
    by another metric (or by an older evaluation) is evaluated again, not ranked last.
    """
    from latentdial.training.run_dir import METRICS

    run_dir = out / run_dir_name(run, seed)
    if not (_trained(run_dir, spec) and (run_dir / METRICS).is_file()):
        return None
    scores = json.loads((run_dir / METRICS).read_text())
    missing = [k for k in spec.rank_by if k not in scores]
    if missing:
        log.info("sweep: %s has no %s in its metrics; evaluating it again", run_dir, ", ".join(missing))
        return None
    earlier = _recorded(run_dir)
    return RunResult(name=run.name, seed=seed, run_dir=str(run_dir), objective=_run_config(run, seed, spec)
                     .objective_name, overrides=list(run.overrides), steps=spec.steps,
                     train_seconds=earlier.get("train_seconds"), eval_seconds=earlier.get("eval_seconds"),
                     scores={k: float(v) for k, v in scores.items()})


def rank(results: Sequence[RunResult], rank_by: Sequence[str]) -> list[dict[str, Any]]:
    """One row per run name, its metrics averaged over seeds, best ``score`` first.

    ``score`` is the mean of the ``rank_by`` keys; a run missing one of them ranks last.
    """
    rows: dict[str, dict[str, Any]] = {}
    for r in results:
        row = rows.setdefault(r.name, {"name": r.name, "objective": r.objective, "overrides": r.overrides,
                                       "seeds": [], "per_seed": []})
        row["seeds"].append(r.seed)
        row["per_seed"].append(r.scores)
    for row in rows.values():
        keys = sorted(set().union(*row["per_seed"]))
        row["mean"] = {k: sum(s[k] for s in row["per_seed"] if k in s) /
                       max(1, sum(k in s for s in row["per_seed"])) for k in keys}
        missing = [k for k in rank_by if k not in row["mean"]]
        row["score"] = None if missing else sum(row["mean"][k] for k in rank_by) / len(rank_by)
    return sorted(rows.values(), key=lambda r: (r["score"] is None, -(r["score"] or 0.0)))


def markdown_table(ranked: Sequence[dict[str, Any]], rank_by: Sequence[str], steps: int) -> str:
    """The ranked rows as a Markdown table (means over seeds), the best in bold."""
    head = ["rank", "run", "objective", "seeds", *rank_by, "score"]
    lines = [f"Every run trained {steps:,} steps; metrics are means over seeds; "
             f"score = mean of {', '.join(rank_by)}.", "",
             "| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 4 + ["---:"] * (len(rank_by) + 1)) + "|"]
    for i, row in enumerate(ranked, 1):
        cells = [str(i), row["name"], row["objective"], ",".join(map(str, row["seeds"]))]
        cells += [f"{row['mean'][k]:.3f}" if k in row["mean"] else "—" for k in rank_by]
        cells.append("—" if row["score"] is None else f"{row['score']:.3f}")
        if i == 1 and row["score"] is not None:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def bar_chart(ranked: Sequence[dict[str, Any]], rank_by: Sequence[str], path: Path) -> None:
    """A grouped bar chart: one group per run (ranked order), one bar per ``rank_by`` metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(ranked))
    width = 0.8 / len(rank_by)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(ranked) + 2), 3.6))
    for j, key in enumerate(rank_by):
        ax.bar(x + (j - (len(rank_by) - 1) / 2) * width,
               [row["mean"].get(key, 0.0) for row in ranked], width, label=key)
    ax.set_xticks(x, [row["name"] for row in ranked], rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("score")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(out: Path, spec: SweepSpec, results: Sequence[RunResult]) -> list[dict[str, Any]]:
    """Write sweep.json, sweep.md and sweep.png into ``out``; return the ranked rows."""
    ranked = rank(results, spec.rank_by)
    payload = {
        "steps": spec.steps, "seeds": list(spec.seeds), "metrics": spec.metrics, "rank_by": list(spec.rank_by),
        "best": ranked[0]["name"] if ranked and ranked[0]["score"] is not None else None,
        "ranked": ranked, "runs": [asdict(r) for r in results],
    }
    (out / RESULTS_JSON).write_text(json.dumps(payload, indent=2) + "\n")
    (out / RESULTS_MD).write_text(markdown_table(ranked, spec.rank_by, spec.steps))
    bar_chart(ranked, spec.rank_by, out / RESULTS_PNG)
    return ranked


def run_sweep(
    spec: SweepSpec, out: Path, *, only: Sequence[str] | None = None, progress: bool = True,
    eval_overrides: dict[str, Any] | None = None,
    on_result: Callable[[RunResult], None] | None = None,
) -> list[dict[str, Any]]:
    """Train and score every (run, seed) of ``spec`` (or those named in ``only``) into ``out``.

    Runs left out by ``only`` still enter the table when an earlier sweep finished them. Results are rewritten after every run, so a sweep stopped half-way still leaves a table
    of what finished. Returns the ranked rows (see ``rank``).
    """
    runs = [r for r in spec.runs if only is None or r.name in only]
    if only is not None and len(runs) != len(set(only)):
        unknown = sorted(set(only) - {r.name for r in spec.runs})
        raise ConfigError(f"--only names unknown runs {unknown}; the sweep has "
                          f"{', '.join(r.name for r in spec.runs)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results: list[RunResult] = []
    ranked: list[dict[str, Any]] = []
    for run in spec.runs:
        for seed in spec.seeds:
            if run not in runs:
                earlier = finished_result(run, seed, spec, out)
                if earlier is not None:
                    results.append(earlier)
                continue
            log.info("sweep: %s seed %d (%d steps)", run.name, seed, spec.steps)
            result = train_and_score(run, seed, spec, out, progress=progress, eval_overrides=eval_overrides)
            results.append(result)
            ranked = write_results(out, spec, results)
            if on_result is not None:
                on_result(result)
    return ranked
