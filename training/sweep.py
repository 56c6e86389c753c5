"""Sweeps and studies: train a grid of configs for the same budget, score them, rank them, plot them.

A sweep file (``configs/sweep/*.toml``) names the runs, the grid and the budget::

    steps = 12000                # every trial trains exactly this many steps
    chunks = [4000, 8000]        # optional: train in resumable chunks ending here (then at steps)
    seeds = [0, 1, 2]            # each variant once per seed
    cpus_per_trial = 2           # optional; default: every core of this machine (one trial at a time)
    metrics = "factor_vae,mig,dci"
    metrics_preset = "reference" # optional: the metrics' sample sizes, "fast" (default) or "reference"
    rank_by = ["factor_vae.eval_accuracy", "mig", "dci.disentanglement"]

    [edits]                      # optional: edit success and read-back of every trial (off without it)
    num = 1000                   # sources; every factor the card can edit is edited once per source
    seed = 0                     # optional: of the sources and targets (default 0: the same for every trial)
    reader = "weights.safetensors"  # optional attribute reader (default: the dataset's, as evaluate-edits)
    every_chunk = true           # optional: judge the edits at every chunk end too (sweep_chunks.png)

    [grid]                       # optional: any dotted config key -> the values to try
    objective.num_labelled = [100, 1000, 10000, 0]

    [plot]                       # optional: a metric against a grid key, one line per other key
    metric = "dci.disentanglement"
    x = "objective.num_labelled"
    log_x = true
    zero_label = "all"           # where x = 0 sits on a log axis (one decade right of the largest x)

    [select]                     # optional: pick each run's trial by ModelCentrality, no labels
    method = "centrality"        # (training/sweep_select.py)

    [[run]]
    name = "dsprites"
    config = "configs/shipped/dsprites.toml"   # relative to the current directory (or --root)
    set = ["optimizer.cooldown_steps=4000"]     # optional --set overrides of that config

A trial is one (run, grid point, seed): the cartesian product of the runs, every grid key
and the seeds (``seed = [...]`` in ``[grid]`` is the same as ``seeds``). Each trial trains
with the project's trainer into its own run directory ``OUT/<name>-s<seed>/`` (``<name>`` is
the run's name followed by ``key=value`` for every grid key), then is scored with
``evaluate_run`` (at the ``metrics_preset`` sizes) and, with ``[edits]``, exported and
judged through a real server (:func:`evaluate_trial_edits`). ``latentdial sweep`` runs the trials as Ray Tune trials
(:mod:`latentdial.training.tune`); :func:`train_and_score` is the body of one and runs
without Ray too.

Chunks: a trial trains to the first chunk end, then resumes to the next, and so on; every
chunk end leaves a checkpoint and a run directory. An lr cooldown of the run's config
(``optimizer.cooldown_steps``) belongs to the last chunk: every earlier chunk must end
before the cooldown starts, and trains at the constant lr, so "train to 8000, then cool
down over the last 4000" is ``steps = 12000``, ``chunks = [4000, 8000]`` and
``optimizer.cooldown_steps=4000``.

Edits (``[edits]``): after the metrics the trial's run is exported to ``<run>/model/1`` (fp32
ONNX only: ``latentdial export RUN <run>/model/1 --no-torch-program``) and judged by
``latentdial evaluate-edits <run>/model/1 --num N`` (a server started in the process, the
dataset's attribute reader), which writes ``<run>/edits.json`` and ``<run>/edits.png``. The
trial's scores gain ``edit.<factor>`` (edit success) and ``readback.<factor>`` /
``readback.all`` (reconstructions that read as their source); they can be ranked by, plotted
and are columns of the table. Both steps run in the trial's process as the commands a user
would run (``latentdial.cli.main``): the export stage builds on training, so training hands it
files through its command rather than importing it (docs/architecture.md).

Resume: a trial whose run directory holds weights of the full budget, every ``rank_by``
metric at the sweep's ``metrics_preset`` and, with ``[edits]``, an ``edits.json`` of the
asked ``num``, ``seed`` and ``reader`` is read back, not trained; what is missing of those
(metrics, export, edits) is computed again from the weights, nothing else. One with
checkpoints resumes from the newest in the chunk it belongs to.
So a sweep that was stopped, or killed, continues where it stopped when it is run again
with the same ``--out``.

Results go to ``OUT/sweep.json`` (every trial's scores, timings and training segments),
``OUT/sweep.md`` (the ranked table), ``OUT/sweep.png`` (one bar group per variant) and,
with a grid, ``OUT/sweep_plot.png`` (the ``[plot]`` metric against the ``[plot]`` key,
mean over seeds with a +- 1 s.d. band). The ranking score is the mean of ``rank_by`` over
a variant's seeds and keys, the "choose the best by the metrics" rule of Locatello et al.
(2019, sec. 5.3) with the metrics given equal weight.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import json
import logging
import math
import re
import shutil
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from latentdial.training.config import ConfigError, load_config, parse_override, read_toml
from latentdial.training.sweep_select import (
    SelectSpec,
    parse_select,
    select_models,
    selection_table,
)

log = logging.getLogger("latentdial.sweep")

RESULTS_JSON = "sweep.json"
RESULTS_MD = "sweep.md"
RESULTS_PNG = "sweep.png"
RESULTS_PLOT = "sweep_plot.png"
#: With ``[edits] every_chunk``: edit success against the step, one panel per trial.
RESULTS_CHUNKS = "sweep_chunks.png"
#: Written into each run directory after every chunk and after scoring: the trial's record.
RUN_RESULT = "sweep_result.json"
#: Keys a grid may not vary: the sweep sets them for every trial.
RESERVED = {"steps": "the sweep's budget (steps / --steps)", "num_threads": "set from --cpus-per-trial",
            "evaluate": "the sweep scores every trial itself", "run": "the [[run]] entries"}
#: With ``[edits]``: the report of ``latentdial evaluate-edits`` in each run directory (and its
#: sheet beside it, ``edits.png``), and the model directory the run is exported to.
EDITS_JSON = "edits.json"
EDITS_SHEET = "edits.png"
EDIT_MODEL = ("model", "1")
#: With ``[edits] every_chunk``: ``<run>/chunk-edits/<step>/edits.json`` (and ``edits.png``) per chunk end.
CHUNK_EDITS = "chunk-edits"
#: Score keys that the edit evaluation adds (``edit.<factor>``, ``readback.<factor>``, ``readback.all``).
EDIT_PREFIXES = ("edit.", "readback.")


def is_edit_key(key: str) -> bool:
    """True for a score of the edit evaluation rather than of the metrics."""
    return key.startswith(EDIT_PREFIXES)


@dataclass(frozen=True)
class EditSpec:
    """``[edits]``: every trial's edit success and read-back, as ``latentdial evaluate-edits`` measures them.

    num: source images; every factor the model's card can edit is edited once per source.
    seed: of the sources and targets; one seed for every trial, so trials are judged on the
        same sources and their spread over seeds is the models'.
    reader: attribute reader weights; None: the dataset's (shipped, else cached, else trained).
    every_chunk: judge the edits at every chunk end as well as at the end, so a long trial shows
        how its edits improve with steps (the chunk's weights, exported and judged the same way).
    """

    num: int = 1000
    seed: int = 0
    reader: Path | None = None
    every_chunk: bool = False

    def __post_init__(self) -> None:
        if self.num < 1:
            raise ConfigError(f"[edits] num must be >= 1 (edits per factor), got {self.num}")

    def asked(self) -> dict[str, Any]:
        """What an ``edits.json`` must have been measured with to be read back."""
        asked = {"num": self.num, "seed": self.seed, "reader": None if self.reader is None else str(self.reader)}
        return {**asked, "every_chunk": True} if self.every_chunk else asked  # older records stay valid


@dataclass(frozen=True)
class SweepRun:
    """One entry of a sweep: a config file and its overrides."""

    name: str
    config: Path
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlotSpec:
    """What ``sweep_plot.png`` shows: ``metric`` (default the first ``rank_by`` key) against the
    grid key ``x`` (default the first grid key), one line per value of every other key."""

    metric: str | None = None
    x: str | None = None
    log_x: bool = False
    zero_label: str | None = None


@dataclass(frozen=True)
class Trial:
    """One (run, grid point, seed) of a sweep."""

    run: SweepRun
    seed: int
    params: tuple[tuple[str, Any], ...] = ()
    #: the variant: the run's name and the grid point, without the seed (seeds are averaged)
    name: str = ""

    @property
    def dir_name(self) -> str:
        return f"{self.name or self.run.name}-s{self.seed}"

    @property
    def overrides(self) -> tuple[str, ...]:
        return (*self.run.overrides, *(f"{k}={toml_literal(v)}" for k, v in self.params))


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep trains and how it scores the trials."""

    runs: tuple[SweepRun, ...]
    steps: int
    seeds: tuple[int, ...] = (0,)
    #: CPUs (Ray resources, and torch threads) of one trial; None: every core of this machine
    cpus_per_trial: float | None = None
    metrics: str = "factor_vae,mig,dci"
    rank_by: tuple[str, ...] = ("factor_vae.eval_accuracy", "mig", "dci.disentanglement")
    #: (dotted config key, values), in file order; the cartesian product is the grid
    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    #: chunk ends below ``steps`` (``steps`` is always the last)
    chunks: tuple[int, ...] = ()
    plot: PlotSpec = PlotSpec()
    #: sample sizes of the metrics: "fast" or "reference" (``compute_all``'s presets; docs/metrics.md)
    metrics_preset: str = "fast"
    #: ``[edits]``; None: metrics only
    edits: EditSpec | None = None
    #: a directory kept with the code where every finished trial's result is recorded
    #: (training/ledger.py), so a study split over machines resumes where the last one stopped
    ledger: Path | None = None
    #: the directory the file's relative paths (configs, the reader, ``init_from``) start from
    root: Path | None = None
    #: ``[select]``: ModelCentrality over each run's trials; None: no selection
    select: SelectSpec | None = None

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"sweep steps must be >= 1, got {self.steps}")
        if not self.runs:
            raise ConfigError("a sweep needs at least one [[run]]")
        if not self.seeds:
            raise ConfigError("a sweep needs at least one seed")
        if not self.rank_by:
            raise ConfigError("rank_by must name at least one metric key")
        if self.cpus_per_trial is not None and self.cpus_per_trial <= 0:
            raise ConfigError(f"cpus_per_trial must be > 0, got {self.cpus_per_trial}")
        names = [r.name for r in self.runs]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ConfigError(f"run names must be unique; repeated: {duplicated}")
        if any(c < 1 for c in self.chunks) or list(self.chunks) != sorted(set(self.chunks)):
            raise ConfigError(f"chunks must be increasing positive step counts, got {list(self.chunks)}")
        for key, values in self.grid:
            if key in RESERVED or key == "seed":
                why = RESERVED.get(key, "the seeds axis (seeds = [...])")
                raise ConfigError(f"grid key {key!r} cannot be varied by a grid: it is {why}")
            if not values:
                raise ConfigError(f"grid key {key!r} has no values")
        from latentdial.training.metrics import PRESETS

        if self.metrics_preset not in PRESETS:
            raise ConfigError(f"metrics_preset must be one of {list(PRESETS)}, got {self.metrics_preset!r}")
        needs_edits = [k for k in (*self.rank_by, self.plot.metric or "") if is_edit_key(k)]
        if needs_edits and self.edits is None:
            raise ConfigError(f"{needs_edits} are scores of the edit evaluation, which this sweep does not run: "
                              "add an [edits] table (or --edits N), or rank and plot by metrics (--plot-metric)")
        keys = self.grid_keys
        if self.plot.x is not None and self.plot.x not in keys:
            raise ConfigError(f"plot x {self.plot.x!r} is not a grid key; the grid has {', '.join(keys) or 'none'}")

    @property
    def grid_keys(self) -> list[str]:
        return [k for k, _ in self.grid]

    def chunk_ends(self) -> list[int]:
        """The step every chunk trains to, in order; the last is ``steps``."""
        return [c for c in self.chunks if c < self.steps] + [self.steps]

    def trials(self, runs: Sequence[SweepRun] | None = None) -> list[Trial]:
        """Every trial of the sweep (or of ``runs``): run x grid point x seed, in file order."""
        keys = self.grid_keys
        labels = short_keys(keys)
        out = []
        for run in self.runs if runs is None else runs:
            for point in itertools.product(*(values for _, values in self.grid)):
                params = tuple(zip(keys, point, strict=True))
                name = "-".join([run.name, *(f"{labels[k]}={_name_part(v)}" for k, v in params)])
                out.extend(Trial(run, seed, params, name) for seed in self.seeds)
        return out

    def trial(self, run: str, seed: int, params: dict[str, Any]) -> Trial:
        """The trial of run name ``run``, ``seed`` and grid point ``params`` (as Tune passes them)."""
        for t in self.trials():
            if t.run.name == run and t.seed == seed and dict(t.params) == params:
                return t
        raise KeyError(f"no trial {run!r} seed {seed} {params} in this sweep")

    def plot_x(self) -> str | None:
        return self.plot.x or next(iter(self.grid_keys), None)

    def plot_metric(self) -> str:
        return self.plot.metric or self.rank_by[0]


@dataclass
class RunResult:
    """The outcome of one trial: its scores and how long it took."""

    name: str
    seed: int
    run_dir: str
    objective: str
    overrides: list[str]
    steps: int
    train_seconds: float | None
    eval_seconds: float | None
    scores: dict[str, float] = field(default_factory=dict)
    #: the [[run]] entry (``name`` adds the grid point); defaults to ``name``
    run: str = ""
    #: the grid point: dotted key -> value
    params: dict[str, Any] = field(default_factory=dict)
    #: every training call of the trial: {"from": step, "to": step, "seconds": s}
    segments: list[dict[str, Any]] = field(default_factory=list)
    #: export and edit evaluation, with ``[edits]``
    edit_seconds: float | None = None
    #: with ``[edits] every_chunk``: chunk end step (as text) -> that chunk's edit figures
    chunk_edits: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.run = self.run or self.name


def short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Each dotted key's last part, or the whole key where two keys share a last part."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last, strict=True)}


def toml_literal(value: Any) -> str:
    """``value`` as a TOML literal for a ``--set`` override."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    raise ConfigError(f"grid value {value!r} is not a TOML number, string, boolean or list")


def _name_part(value: Any) -> str:
    text = toml_literal(value).strip('"') if not isinstance(value, str) else value
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text)


def _flatten_grid(table: dict[str, Any], prefix: str = "") -> list[tuple[str, tuple[Any, ...]]]:
    """``[grid]`` with TOML dotted keys (nested tables) -> [(dotted key, values)] in file order."""
    out: list[tuple[str, tuple[Any, ...]]] = []
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.extend(_flatten_grid(value, dotted + "."))
        elif isinstance(value, list):
            out.append((dotted, tuple(value)))
        else:
            raise ConfigError(f"[grid] {dotted} must be a list of values, got {value!r}")
    return out


def load_sweep(path: Path | str, root: Path | None = None) -> SweepSpec:
    """Parse a sweep TOML file; config paths are relative to ``root`` (default: the current directory)."""
    raw = read_toml(path, "sweep file", "configs/sweep/")
    known = {"steps", "seeds", "chunks", "cpus_per_trial", "num_threads", "metrics", "metrics_preset", "rank_by",
             "grid", "plot", "run", "edits", "ledger", "select"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {path}; valid keys: {', '.join(sorted(known))}")
    root = (Path(root) if root is not None else Path.cwd()).resolve()
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
    grid = _flatten_grid(raw.get("grid", {}))
    seeds = raw.get("seeds", [0])
    if any(k == "seed" for k, _ in grid):
        if "seeds" in raw:
            raise ConfigError(f"{path} sets both seeds and [grid] seed; keep one")
        seeds = next(v for k, v in grid if k == "seed")
        grid = [(k, v) for k, v in grid if k != "seed"]
    if "cpus_per_trial" in raw and "num_threads" in raw:
        raise ConfigError(f"{path} sets both cpus_per_trial and num_threads (its older name); keep one")
    cpus = raw.get("cpus_per_trial", raw.get("num_threads"))
    plot = raw.get("plot", {})
    bad = sorted(set(plot) - {"metric", "x", "log_x", "zero_label"})
    if bad:
        raise ConfigError(f"unknown key(s) {bad} in [plot] of {path}; valid keys: log_x, metric, x, zero_label")
    return SweepSpec(
        runs=tuple(runs), steps=int(raw["steps"]), seeds=tuple(int(s) for s in seeds),
        cpus_per_trial=None if cpus is None else float(cpus),
        metrics=str(raw.get("metrics", SweepSpec.metrics)), rank_by=tuple(raw.get("rank_by", SweepSpec.rank_by)),
        grid=tuple(grid), chunks=tuple(int(c) for c in raw.get("chunks", ())),
        plot=PlotSpec(metric=plot.get("metric"), x=plot.get("x"), log_x=bool(plot.get("log_x", False)),
                      zero_label=plot.get("zero_label")),
        metrics_preset=str(raw.get("metrics_preset", SweepSpec.metrics_preset)),
        edits=_edit_spec(raw["edits"], path, root) if "edits" in raw else None,
        ledger=root / str(raw["ledger"]) if "ledger" in raw else None,
        root=root,
        select=parse_select(raw["select"], path) if "select" in raw else None,
    )


def with_grid(spec: SweepSpec, overrides: Sequence[str]) -> SweepSpec:
    """``spec`` with the values of some of its grid keys replaced (``latentdial sweep --grid``).

    Each override is ``KEY=[V1, V2]`` (or ``KEY=V`` for one value), values as TOML literals, e.g.
    ``objective.num_labelled=[10000, 0]``: runs part of a study, such as the grid points a machine
    has time for, without a copy of its file. Trials keep their names, so a ledger shared with the
    whole study records and reads them back as the study's own. Only the file's grid keys can be
    given (a setting of every trial belongs in a run's ``set``; the seeds in ``--seeds``).
    """
    grid = dict(spec.grid)
    for text in overrides:
        path, value = parse_override(text)
        key = ".".join(path)
        if key == "seed":
            raise ConfigError(f"--grid {text!r}: the seeds are given with --seeds, e.g. --seeds 1,2")
        if key not in grid:
            raise ConfigError(f"--grid {text!r}: {key!r} is not a grid key of this sweep; its grid has "
                              f"{', '.join(grid) or 'none'}")
        grid[key] = tuple(value) if isinstance(value, list) else (value,)
    return dataclasses.replace(spec, grid=tuple(grid.items()))


def _edit_spec(table: Any, path: Path | str, root: Path) -> EditSpec:
    """``[edits]`` of a sweep file; a reader path is relative to ``root``, like the configs."""
    if not isinstance(table, dict):
        raise ConfigError(f"edits in {path} must be a table ([edits] with num = ...), got {table!r}")
    bad = sorted(set(table) - {"num", "seed", "reader", "every_chunk"})
    if bad:
        raise ConfigError(f"unknown key(s) {bad} in [edits] of {path}; valid keys: every_chunk, num, reader, seed")
    reader = None
    if table.get("reader") is not None:
        reader = root / str(table["reader"])
        if not reader.is_file():
            raise ConfigError(f"[edits] reader {reader} does not exist")
    return EditSpec(num=int(table.get("num", EditSpec.num)), seed=int(table.get("seed", EditSpec.seed)),
                    reader=reader, every_chunk=bool(table.get("every_chunk", False)))


def run_dir_name(run: SweepRun, seed: int) -> str:
    """The run directory of ``run`` and ``seed`` in a sweep without a grid."""
    return Trial(run, seed).dir_name


# -- one trial -------------------------------------------------------------------------------


def final_config(trial: Trial, spec: SweepSpec) -> Any:
    """The trial's resolved config at the full budget (what its last chunk trains)."""
    return load_config(trial.run.config, [*trial.overrides, f"steps={spec.steps}", f"seed={trial.seed}"])


def check_chunks(trial: Trial, spec: SweepSpec) -> None:
    """Raise ConfigError when a chunk other than the last ends inside the trial's cooldown."""
    cooldown = final_config(trial, spec).optimizer.cooldown_steps
    start = spec.steps - cooldown
    late = [e for e in spec.chunk_ends()[:-1] if cooldown and e > start]
    if late:
        raise ConfigError(
            f"{trial.dir_name}: chunk end(s) {late} fall inside the cooldown (the last {cooldown:,} of "
            f"{spec.steps:,} steps); every chunk before the last must end by step {max(0, start):,}")


def chunk_config(trial: Trial, spec: SweepSpec, end: int, threads: int = 1) -> Any:
    """The config of the trial's chunk that ends at step ``end``.

    A chunk before the last trains at the constant lr (no cooldown); the last one carries the
    run's cooldown, which then starts at or after the previous chunk's checkpoint, as the
    trainer requires of a cooldown added on resume.
    """
    sets = [*trial.overrides, f"steps={end}", f"seed={trial.seed}", "evaluate=false",
            f"num_threads={max(1, int(threads))}", f"checkpoint_every={max(1, min(spec.steps, 1000))}"]
    if end < spec.steps:
        sets.append("optimizer.cooldown_steps=0")
    cfg = load_config(trial.run.config, sets)
    if cfg.init_from and spec.root is not None and not Path(cfg.init_from).is_absolute():
        # a Tune worker runs in its trial's directory; the ledger keeps the path as written
        cfg.init_from = str(spec.root / cfg.init_from)
    return cfg


def weights_step(run_dir: Path) -> int | None:
    """The step recorded in the run's final weights (read from the safetensors header), or None."""
    from latentdial.training.run_dir import WEIGHTS

    path = Path(run_dir) / WEIGHTS
    if not path.is_file():
        return None
    with path.open("rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
    step = header.get("__metadata__", {}).get("step")
    return int(step) if step is not None else None


def newest_checkpoint_step(run_dir: Path) -> int:
    """The step of the newest checkpoint in ``run_dir`` (0 when there is none)."""
    ckpts = sorted((Path(run_dir) / "checkpoints").glob("step_*.pt"))
    return int(ckpts[-1].stem.split("_")[1]) if ckpts else 0


def _recorded(run_dir: Path) -> dict[str, Any]:
    """What an earlier session recorded in ``run_dir`` (timings, segments), or {}."""
    path = Path(run_dir) / RUN_RESULT
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_record(run_dir: Path, record: dict[str, Any]) -> None:
    tmp = Path(run_dir) / (RUN_RESULT + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(Path(run_dir) / RUN_RESULT)


def resolved_config(saved: dict[str, Any]) -> dict[str, Any]:
    """A run's recorded config.json read by today's loader: an option added since the run was
    trained reads as its default, which is what the run trained with. Unreadable: as recorded."""
    from latentdial.training.config import TrainConfig

    known = {f.name for f in dataclasses.fields(TrainConfig)} - {"objective_name"}
    try:
        return TrainConfig.from_dict({k: v for k, v in saved.items() if k in known}).to_dict()
    except (ConfigError, TypeError):
        return saved


def _same_run(run_dir: Path, cfg: Any) -> None:
    """Refuse to read back a run directory that a different config trained."""
    from latentdial.training.run_dir import CONFIG

    path = Path(run_dir) / CONFIG
    if not path.is_file():
        return
    saved, now = resolved_config(json.loads(path.read_text())), cfg.to_dict()
    for key in ("model", "objective", "dataset", "seed", "batch_size", "optimizer"):
        if saved.get(key) != now.get(key):
            raise ConfigError(f"{run_dir} was trained with {key} {saved.get(key)!r}, this sweep asks for "
                              f"{now.get(key)!r}; use another --out or remove that run directory")


def ledger_key(trial: Trial, spec: SweepSpec) -> dict[str, Any]:
    """What makes a ledger entry the result of ``trial`` as ``spec`` asks for it now: the resolved
    config (not the threads or the device it ran on), the metrics and their preset, the edits."""
    cfg = final_config(trial, spec).to_dict()
    asked = None
    if spec.edits is not None:
        asked = spec.edits.asked()
        asked["reader"] = None if asked["reader"] is None else Path(asked["reader"]).name
    same = ("dataset", "model", "objective", "optimizer", "augment", "init_from", "seed", "batch_size", "steps")
    config = {k: cfg.get(k) for k in same}
    if cfg.get("init_skip"):  # named only when set, so entries recorded before it existed still match
        config["init_skip"] = cfg["init_skip"]
    return {"config": config, "metrics": spec.metrics,
            "metrics_preset": spec.metrics_preset, "edits": asked}


def finished_result(trial: Trial, spec: SweepSpec, out: Path) -> RunResult | None:
    """The result of a finished trial: scored in its run directory under ``out`` (then also
    recorded in the sweep's ledger), else recorded in the ledger by another machine, else None."""
    result = _finished_here(trial, spec, out)
    if spec.ledger is None:
        return result
    from latentdial.training.ledger import read_entry, write_entry

    key = ledger_key(trial, spec)
    if result is not None:
        if write_entry(spec.ledger, trial.dir_name, key, asdict(result)):
            log.info("sweep: recorded %s in the ledger %s", trial.dir_name, spec.ledger)
        return result
    recorded = read_entry(spec.ledger, trial.dir_name, key)
    return None if recorded is None else RunResult(**recorded)


def _finished_here(trial: Trial, spec: SweepSpec, out: Path) -> RunResult | None:
    """The result of a trial that an earlier session already trained and scored in ``out``, else None.

    Scores count only when they hold every ``rank_by`` key at the sweep's ``metrics_preset``: a
    run scored before the sweep ranked by another metric (or by an older evaluation, or at other
    sizes) is evaluated again, not ranked last. With ``[edits]`` the trial also needs the
    ``edits.json`` of the asked edits (:func:`recorded_edits`).
    """
    from latentdial.training.run_dir import CONFIG, METRICS

    run_dir = Path(out) / trial.dir_name
    if weights_step(run_dir) != spec.steps or not (run_dir / METRICS).is_file():
        return None
    cfg = final_config(trial, spec)
    _same_run(run_dir, cfg)
    earlier = _recorded(run_dir)
    scores = recorded_scores(run_dir, spec, earlier)
    if scores is None:
        return None
    figures: dict[str, float] = {}
    if spec.edits is not None:
        found = recorded_edits(run_dir, spec.edits, earlier)
        if found is None:
            log.info("sweep: %s has no edit evaluation of %d edits per factor; evaluating its edits",
                     run_dir, spec.edits.num)
            return None
        figures = found
    objective = json.loads((run_dir / CONFIG).read_text())["objective"]["name"]
    return _result(trial, spec, run_dir, objective, earlier, {**scores, **figures})


def recorded_scores(run_dir: Path, spec: SweepSpec, record: dict[str, Any]) -> dict[str, Any] | None:
    """``run_dir``'s metrics.json if it has every metric ``rank_by`` names at ``spec``'s preset, else None.

    A run scored without a record of its preset (an older sweep, ``latentdial train``) was scored
    with the "fast" preset.
    """
    from latentdial.training.run_dir import METRICS

    path = Path(run_dir) / METRICS
    if not path.is_file():
        return None
    preset = record.get("metrics_preset", "fast")
    if preset != spec.metrics_preset:
        log.info("sweep: %s was scored with the %s preset; scoring it with %s", run_dir, preset, spec.metrics_preset)
        return None
    scores = json.loads(path.read_text())
    missing = [k for k in spec.rank_by if k not in scores and not is_edit_key(k)]
    if missing:
        log.info("sweep: %s has no %s in its metrics; evaluating it again", run_dir, ", ".join(missing))
        return None
    return scores


def recorded_edits(run_dir: Path, edits: EditSpec, record: dict[str, Any]) -> dict[str, float] | None:
    """The edit figures of ``run_dir``'s ``edits.json`` when it measured the edits ``edits`` asks for
    (the trial's record says with which num, seed and reader), else None."""
    path = Path(run_dir) / EDITS_JSON
    if not path.is_file() or record.get("edits", {}).get("asked") != edits.asked():
        return None
    return edit_figures(json.loads(path.read_text()))


def edit_figures(report: dict[str, Any]) -> dict[str, float]:
    """The scores a sweep takes from an ``evaluate-edits`` report, in the dataset's factor order:
    ``edit.<factor>`` (success, for every editable factor), ``readback.<factor>`` and ``readback.all``."""
    out = {f"edit.{name}": float(r["success"]) for name, r in report["factors"].items()
           if r.get("editable") and r.get("success") is not None}
    out.update({f"readback.{name}": float(v) for name, v in report["readback"].items() if v is not None})
    return out


def _result(trial: Trial, spec: SweepSpec, run_dir: Path, objective: str, record: dict[str, Any],
            scores: dict[str, Any]) -> RunResult:
    return RunResult(
        name=trial.name or trial.run.name, seed=trial.seed, run_dir=str(run_dir), objective=objective,
        overrides=list(trial.overrides), steps=spec.steps, train_seconds=record.get("train_seconds"),
        eval_seconds=record.get("eval_seconds"), scores={k: float(v) for k, v in scores.items()},
        run=trial.run.name, params=dict(trial.params), segments=list(record.get("segments", [])),
        edit_seconds=record.get("edits", {}).get("seconds") if spec.edits is not None else None,
        chunk_edits=dict(record.get("chunk_edits", {})) if spec.edits is not None and spec.edits.every_chunk else {},
    )


class EditEvaluationError(RuntimeError):
    """Exporting a trial's run or judging its edits failed; the message has the command's error."""


def _command(argv: list[str]) -> str:
    """Run ``latentdial ARGV`` in this process as a user would; return what it printed, raise
    :class:`EditEvaluationError` with what it printed to stderr when it fails."""
    from latentdial.cli import main as latentdial

    printed, errors = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(errors):
        try:
            code = latentdial(argv)
        except SystemExit as e:  # argparse refusing the arguments
            code = e.code if isinstance(e.code, int) else 2
    if code != 0:
        said = errors.getvalue().strip().splitlines()[-5:] or printed.getvalue().strip().splitlines()[-5:]
        raise EditEvaluationError(f"latentdial {argv[0]} exited {code}: " + " / ".join(said))
    return printed.getvalue()


def _exported(model_dir: Path, steps: int) -> bool:
    """True when ``model_dir`` holds a verified export of weights trained ``steps`` steps."""
    from latentdial.manifest import Manifest, ManifestError

    try:
        manifest = Manifest.load(model_dir)
        manifest.verify_files(model_dir)
    except (ManifestError, OSError, ValueError):
        return False
    return str((manifest.provenance.get("weights_metadata") or {}).get("step")) == str(steps)


def _export_for_edits(run_dir: Path, model_dir: Path) -> str:
    """``latentdial export RUN MODEL_DIR`` as the edit evaluation needs it: fp32 ONNX only, and no
    graph timing (``--choice-rounds 0``: what is fastest on this host does not change what an edit
    draws; a server of the kept export measures at load); its output."""
    return _command(["export", str(run_dir), str(model_dir), "--no-torch-program", "--choice-rounds", "0"])


def _judge_edits(model_dir: Path, edits: EditSpec, report: Path, sheet: Path, *, quiet: bool) -> str:
    """``latentdial evaluate-edits`` of ``model_dir`` as ``edits`` asks, into ``report`` and ``sheet``; its output."""
    argv = ["evaluate-edits", str(model_dir), "--num", str(edits.num), "--seed", str(edits.seed),
            "--out", str(report), "--sheet", str(sheet)]
    if edits.reader is not None:
        argv += ["--reader", str(edits.reader)]
    return _command(argv + (["--quiet"] if quiet else []))


def evaluate_chunk_edits(run_dir: Path, edits: EditSpec, step: int) -> dict[str, float]:
    """The edit figures of ``run_dir``'s weights at chunk end ``step``, judged as at the end of the
    trial: exported into ``<run>/chunk-edits/<step>/model/1`` (removed afterwards) and judged by
    ``evaluate-edits``, whose report and sheet stay in ``<run>/chunk-edits/<step>/``."""
    where = Path(run_dir) / CHUNK_EDITS / str(step)
    shutil.rmtree(where, ignore_errors=True)
    model_dir = where.joinpath(*EDIT_MODEL)
    _export_for_edits(run_dir, model_dir)
    _judge_edits(model_dir, edits, where / EDITS_JSON, where / EDITS_SHEET, quiet=True)
    shutil.rmtree(where / EDIT_MODEL[0], ignore_errors=True)
    return edit_figures(json.loads((where / EDITS_JSON).read_text()))


def evaluate_trial_edits(run_dir: Path, edits: EditSpec, *, steps: int, progress: bool = False) -> dict[str, Any]:
    """Export ``run_dir`` to ``<run>/model/1`` and judge its edits as ``latentdial evaluate-edits`` does.

    The export is fp32 ONNX only (no variants, no torch program), and is kept for a later
    session when its weights are the run's ``steps``. ``evaluate-edits`` starts a server in this
    process over ``run_dir`` as the model repository, draws ``edits.num`` sources from the run's
    dataset and judges every edit with the dataset's attribute reader (or ``edits.reader``); it
    writes ``<run>/edits.json`` and the sheet ``<run>/edits.png``. Returns what the trial's record
    keeps: the request (``asked``) and the seconds of the export and of the whole step.
    """
    run_dir = Path(run_dir)
    model_dir = run_dir.joinpath(*EDIT_MODEL)
    began = time.perf_counter()
    if not _exported(model_dir, steps):
        shutil.rmtree(model_dir.parent, ignore_errors=True)  # an older export, or one killed half-way
        printed = _export_for_edits(run_dir, model_dir)
        log.info("sweep: exported %s\n%s", run_dir, printed.rstrip())
    exported = time.perf_counter() - began
    (run_dir / EDITS_JSON).unlink(missing_ok=True)
    printed = _judge_edits(model_dir, edits, run_dir / EDITS_JSON, run_dir / EDITS_SHEET, quiet=not progress)
    log.info("sweep: edits of %s\n%s", run_dir, printed.rstrip())
    return {"asked": edits.asked(), "export_seconds": exported, "seconds": time.perf_counter() - began}


def _judge_chunk(run_dir: Path, spec: SweepSpec, end: int, record: dict[str, Any]) -> None:
    """With ``[edits] every_chunk``: judge the edits of chunk end ``end`` (not the last) once, while
    ``run_dir``'s weights are that chunk's, and keep the figures in the trial's record."""
    if spec.edits is None or not spec.edits.every_chunk or end >= spec.steps:
        return
    judged = record.setdefault("chunk_edits", {})
    if str(end) in judged or weights_step(run_dir) != end:
        return  # judged already, or the weights have moved on (nothing to judge them by)
    judged[str(end)] = evaluate_chunk_edits(run_dir, spec.edits, end)
    _write_record(run_dir, record)


def _forget_evaluations(run_dir: Path) -> None:
    """Drop what was measured on weights that are about to change: metrics, export, edits."""
    from latentdial.training.run_dir import METRICS

    run_dir = Path(run_dir)
    for name in (METRICS, EDITS_JSON, EDITS_SHEET):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / EDIT_MODEL[0], ignore_errors=True)


def train_and_score(
    trial: Trial, spec: SweepSpec, out: Path, *, threads: int = 1, progress: bool = False,
    eval_overrides: dict[str, Any] | None = None, report: Callable[[dict[str, Any]], None] | None = None,
    train_only: bool = False, deadline: float | None = None,
) -> RunResult | None:
    """Train one trial chunk by chunk into ``out/<dir_name>``, score it and (``[edits]``) judge its
    edits; the body of a Tune trial.

    A finished trial is read back (see :func:`finished_result`); an unfinished one resumes from
    its newest checkpoint, and a trained one computes only what it lacks (metrics, edits).
    ``report`` gets ``{"step", "finished": False}`` after every chunk and the scores with
    ``"finished": True`` at the end (Tune's ``tune.report``). Returns None when training
    stopped before the budget (the config's ``time_limit_s``). ``eval_overrides`` go to
    ``evaluate_run`` (e.g. smaller point counts in tests).

    ``train_only``: train the chunks and stop before anything is measured (no chunk edits, metrics or
    export), returning None; the sweep run again without it, on any machine, scores the weights.
    ``deadline`` (a ``time.monotonic()`` value): each chunk's ``time_limit_s`` is what is left of it,
    so training stops at a checkpoint by then and a later run resumes it.
    """
    import torch

    from latentdial.training.evaluate import evaluate_run
    from latentdial.training.run_dir import FACTOR_CARD
    from latentdial.training.trainer import train

    out = Path(out)
    earlier = finished_result(trial, spec, out)
    if earlier is not None:
        if report is not None:
            report({**earlier.scores, "step": spec.steps, "finished": True, "read_back": True})
        return earlier
    run_dir = out / trial.dir_name
    record = _recorded(run_dir)
    record.update(name=trial.name, run=trial.run.name, seed=trial.seed, params=dict(trial.params),
                  steps=spec.steps, finished=False)
    record.setdefault("segments", [])
    if weights_step(run_dir) != spec.steps:
        _forget_evaluations(run_dir)  # measured on fewer steps than these weights will have
        record.update(scores={}, eval_seconds=None)
        record.pop("edits", None)
        for end in spec.chunk_ends():
            start = newest_checkpoint_step(run_dir)
            if start >= end and (end < spec.steps or weights_step(run_dir) == end):
                if not train_only:
                    _judge_chunk(run_dir, spec, end, record)  # stopped before its edits were judged
                continue  # this chunk was trained by an earlier session
            cfg = chunk_config(trial, spec, end, threads)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("sweep: %s: no time left for the chunk to step %d", run_dir, end)
                    return None
                cfg.time_limit_s = left
            began = time.perf_counter()
            train(cfg, run_dir, resume=start > 0, progress=progress)
            reached = newest_checkpoint_step(run_dir)
            record["segments"].append({"from": start, "to": reached, "seconds": time.perf_counter() - began})
            record["train_seconds"] = sum(s["seconds"] for s in record["segments"])
            record["objective"] = cfg.objective_name
            _write_record(run_dir, record)
            if report is not None:
                report({"step": reached, "finished": False})
            if reached < end:
                log.warning("sweep: %s stopped at step %d of %d; run the sweep again to resume it",
                            run_dir, reached, end)
                return None
            if not train_only:
                _judge_chunk(run_dir, spec, end, record)
    if train_only:
        return None
    cfg = final_config(trial, spec)
    torch.set_num_threads(max(1, int(threads)))
    scores = recorded_scores(run_dir, spec, record)
    # an export carries the factor card, which a trial scored without edits may not have written
    if scores is None or (spec.edits is not None and not (run_dir / FACTOR_CARD).is_file()):
        began = time.perf_counter()
        scores, _ = evaluate_run(run_dir, metrics=spec.metrics, seed=trial.seed, preset=spec.metrics_preset,
                                 card=spec.edits is not None, progress=progress, **(eval_overrides or {}))
        record.update(eval_seconds=time.perf_counter() - began, scores={k: float(v) for k, v in scores.items()},
                      metrics_preset=spec.metrics_preset, objective=cfg.objective_name)
        _write_record(run_dir, record)
    figures: dict[str, float] = {}
    if spec.edits is not None:
        found = recorded_edits(run_dir, spec.edits, record)
        if found is None:
            record.pop("edits", None)
            record["edits"] = evaluate_trial_edits(run_dir, spec.edits, steps=spec.steps, progress=progress)
            torch.set_num_threads(max(1, int(threads)))  # evaluate-edits runs on one thread
            found = recorded_edits(run_dir, spec.edits, record)
            if found is None:
                raise EditEvaluationError(f"latentdial evaluate-edits wrote no {run_dir / EDITS_JSON}")
        figures = found
    record.update(finished=True, objective=cfg.objective_name)
    _write_record(run_dir, record)
    result = _result(trial, spec, run_dir, cfg.objective_name, record, {**scores, **figures})
    if report is not None:
        report({**result.scores, "step": spec.steps, "finished": True, "read_back": False})
    return result


# -- results: ranking, table, figures -----------------------------------------------------------


def rank(results: Sequence[RunResult], rank_by: Sequence[str]) -> list[dict[str, Any]]:
    """One row per variant (run name and grid point), its metrics averaged over seeds, best ``score`` first.

    ``score`` is the mean of the ``rank_by`` keys; a variant missing one of them ranks last.
    ``std`` holds each metric's sample standard deviation over seeds (0 for one seed).
    """
    rows: dict[str, dict[str, Any]] = {}
    for r in results:
        row = rows.setdefault(r.name, {"name": r.name, "run": r.run, "params": r.params, "objective": r.objective,
                                       "overrides": r.overrides, "seeds": [], "per_seed": []})
        row["seeds"].append(r.seed)
        row["per_seed"].append(r.scores)
    for row in rows.values():
        keys = sorted(set().union(*row["per_seed"]))
        row["mean"], row["std"] = {}, {}
        for k in keys:
            values = [s[k] for s in row["per_seed"] if k in s]
            row["mean"][k], row["std"][k] = _mean_std(values)
        missing = [k for k in rank_by if k not in row["mean"]]
        row["score"] = None if missing else sum(row["mean"][k] for k in rank_by) / len(rank_by)
    return sorted(rows.values(), key=lambda r: (r["score"] is None, -(r["score"] or 0.0)))


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def edit_columns(results: Sequence[RunResult], rank_by: Sequence[str] = ()) -> list[str]:
    """The edit evaluation's score keys of ``results`` not already in ``rank_by``: every ``edit.*``,
    then every ``readback.*``, each in the order the trials' datasets name their factors."""
    seen = list(dict.fromkeys(k for r in results for k in r.scores if is_edit_key(k) and k not in rank_by))
    return [k for k in seen if k.startswith("edit.")] + [k for k in seen if not k.startswith("edit.")]


def markdown_table(ranked: Sequence[dict[str, Any]], rank_by: Sequence[str], steps: int,
                   grid_keys: Sequence[str] = (), extra: Sequence[str] = (), edits: EditSpec | None = None) -> str:
    """The ranked rows as a Markdown table (means over seeds, +- s.d. for several), the best in bold.

    ``extra``: score keys shown after the score, e.g. the edit evaluation's (``edits`` says how many
    edits a factor had, for the note above the table).
    """
    labels = short_keys(grid_keys)
    head = ["rank", "run", *(labels[k] for k in grid_keys), "objective", "seeds", *rank_by, "score", *extra]
    note = ""
    if edits is not None:
        note = (f" edit.F: share of {edits.num:,} edits of factor F that the attribute reader judges a "
                "success (target hit, every other factor kept); readback.F: share of reconstructions whose F "
                "reads as the source's (all: every factor).")
    lines = [f"Every run trained {steps:,} steps; metrics are means over seeds (+- sample s.d. over "
             f"several); score = mean of {', '.join(rank_by)}.{note}", "",
             "| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] * (4 + len(grid_keys)) + ["---:"] * (len(rank_by) + 1 + len(extra))) + "|"]
    for i, row in enumerate(ranked, 1):
        run = row.get("run", row["name"]) if grid_keys else row["name"]
        cells = [str(i), run, *(_cell(row.get("params", {}).get(k, "—")) for k in grid_keys),
                 row["objective"], ",".join(map(str, row["seeds"]))]
        cells += [_mean_cell(row, k) for k in rank_by]
        cells.append("—" if row["score"] is None else f"{row['score']:.3f}")
        cells += [_mean_cell(row, k) for k in extra]
        if i == 1 and row["score"] is not None:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _mean_cell(row: dict[str, Any], key: str) -> str:
    """``key``'s mean over the row's seeds, with the s.d. where several seeds have it; "—" where none has."""
    if key not in row["mean"]:
        return "—"
    if sum(key in s for s in row["per_seed"]) > 1:
        return f"{row['mean'][key]:.3f} ± {row['std'][key]:.3f}"
    return f"{row['mean'][key]:.3f}"


def _cell(value: Any) -> str:
    return toml_literal(value).strip('"') if not isinstance(value, str) else value


def bar_chart(ranked: Sequence[dict[str, Any]], rank_by: Sequence[str], path: Path) -> None:
    """A grouped bar chart: one group per variant (ranked order), one bar per ``rank_by`` metric."""
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


def line_series(results: Sequence[RunResult], x_key: str, metric: str,
                x_values: Sequence[Any]) -> dict[str, list[tuple[Any, float, float, int]]]:
    """Per line (the run and every grid key but ``x_key``): [(x, mean, s.d., seeds)] over the seeds,
    in the order of ``x_values``; points without the metric are left out."""
    groups: dict[str, dict[Any, list[float]]] = {}
    for r in results:
        if x_key not in r.params or metric not in r.scores:
            continue
        others = [f"{k}={_cell(v)}" for k, v in r.params.items() if k != x_key]
        label = ", ".join([r.run, *others])
        groups.setdefault(label, {}).setdefault(json.dumps(r.params[x_key]), []).append(r.scores[metric])
    series = {}
    for label, points in groups.items():
        series[label] = [(x, *_mean_std(points[json.dumps(x)]), len(points[json.dumps(x)]))
                         for x in x_values if json.dumps(x) in points]
    return series


def line_label(label: str, seeds: Sequence[int]) -> str:
    """A line's legend: its name and how many seeds its points average, as a range where they differ
    (a study part-way through: ``"dsprites (1-2 seeds)"``)."""
    low, high = min(seeds), max(seeds)
    return f"{label} ({low if low == high else f'{low}-{high}'} seed{'s' if high > 1 else ''})"


def line_plot(results: Sequence[RunResult], spec: SweepSpec, path: Path) -> bool:
    """``spec``'s plot metric against its plot key, one line per other key, mean over seeds and a
    +- 1 s.d. band. Returns False (and writes nothing) when the sweep has no grid key."""
    x_key = spec.plot_x()
    if x_key is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    metric = spec.plot_metric()
    x_values = list(dict(spec.grid)[x_key])
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in x_values)
    log_x = spec.plot.log_x and numeric
    if numeric:
        positive = [v for v in x_values if v > 0]
        zero_at = 10 * max(positive) if log_x and positive else None
        position = {json.dumps(v): (zero_at if v == 0 and zero_at else float(v)) for v in x_values}
        if log_x and zero_at is None:
            log_x = False
    else:
        position = {json.dumps(v): float(i) for i, v in enumerate(x_values)}
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, points in line_series(results, x_key, metric, x_values).items():
        xs = np.array([position[json.dumps(p[0])] for p in points])
        order = np.argsort(xs)
        xs, mean, sd = xs[order], np.array([p[1] for p in points])[order], np.array([p[2] for p in points])[order]
        (line,) = ax.plot(xs, mean, marker="o", label=line_label(label, [p[3] for p in points]))
        if max(p[3] for p in points) > 1:
            ax.fill_between(xs, mean - sd, mean + sd, color=line.get_color(), alpha=0.2)
    ticks = sorted(set(position.values()))
    names = {position[json.dumps(v)]: (spec.plot.zero_label or "0") if (numeric and v == 0 and log_x)
             else _cell(v) for v in x_values}
    if log_x:
        ax.set_xscale("log")
        ax.minorticks_off()
    ax.set_xticks(ticks, [names[t] for t in ticks])
    ax.set_xlabel(x_key)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: mean over seeds, band ± 1 s.d.", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def chunk_series(result: RunResult) -> list[tuple[int, dict[str, float]]]:
    """(step, edit figures) at every judged chunk end of ``result`` and at its end, by step."""
    points = [(int(step), figures) for step, figures in result.chunk_edits.items()]
    final = {k: v for k, v in result.scores.items() if is_edit_key(k)}
    return sorted(points + ([(result.steps, final)] if final else []))


def chunk_table(results: Sequence[RunResult]) -> str:
    """Markdown: the edit figures of every trial judged at its chunk ends, a row per step; "" if none."""
    judged = [r for r in results if r.chunk_edits]
    if not judged:
        return ""
    keys = edit_columns(judged)
    lines = ["", "Edits at every chunk end (`[edits] every_chunk`), each chunk's weights judged as the end's:", "",
             "| trial | step | " + " | ".join(keys) + " |", "|---|---:|" + "---:|" * len(keys)]
    for r in judged:
        for step, figures in chunk_series(r):
            lines.append(f"| {Path(r.run_dir).name} | {step:,} | "
                         + " | ".join(f"{figures[k]:.3f}" if k in figures else "—" for k in keys) + " |")
    return "\n".join(lines) + "\n"


def chunk_plot(results: Sequence[RunResult], path: Path) -> bool:
    """``sweep_chunks.png``: edit success of every factor against the step, a panel per trial judged at
    its chunk ends; False (nothing written) when none was."""
    judged = [r for r in results if r.chunk_edits]
    if not judged:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(judged), figsize=(5.2 * len(judged), 3.8), squeeze=False)
    for ax, r in zip(axes[0], judged, strict=True):
        series = chunk_series(r)
        for key in [k for k in edit_columns([r]) if k.startswith("edit.") or k == "readback.all"]:
            points = [(step, figures[key]) for step, figures in series if key in figures]
            ax.plot([p[0] for p in points], [p[1] for p in points], "-" if key.startswith("edit.") else "--",
                    marker="o", label=key)
        ax.set_title(Path(r.run_dir).name, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("share of edits / reconstructions")
    axes[0][-1].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_results(out: Path, spec: SweepSpec, results: Sequence[RunResult],
                  selection: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Write sweep.json, sweep.md, sweep.png and (with a grid) sweep_plot.png into ``out``; return
    the ranked rows. ``selection``: each run's ModelCentrality choice (:func:`select_models`),
    added to both files."""
    out = Path(out)
    ranked = rank(results, spec.rank_by)
    extra = edit_columns(results, spec.rank_by)
    payload = {
        "steps": spec.steps, "chunks": spec.chunk_ends(), "seeds": list(spec.seeds), "metrics": spec.metrics,
        "metrics_preset": spec.metrics_preset, "edits": None if spec.edits is None else spec.edits.asked(),
        "rank_by": list(spec.rank_by), "grid": {k: list(v) for k, v in spec.grid},
        "plot": {"metric": spec.plot_metric(), "x": spec.plot_x(), "file": RESULTS_PLOT} if spec.grid else None,
        "best": ranked[0]["name"] if ranked and ranked[0]["score"] is not None else None,
        "ranked": ranked, "runs": [asdict(r) for r in results],
        "selected": {run: {"trial": chosen["selected"], "ranking": chosen["ranking"]}
                     for run, chosen in (selection or {}).items()} or None,
    }
    (out / RESULTS_JSON).write_text(json.dumps(payload, indent=2) + "\n")
    (out / RESULTS_MD).write_text(markdown_table(ranked, spec.rank_by, spec.steps, spec.grid_keys, extra, spec.edits)
                                  + selection_table(selection or {}, results, [*spec.rank_by, *extra])
                                  + chunk_table(results))
    if ranked:
        bar_chart(ranked, spec.rank_by, out / RESULTS_PNG)
        line_plot(results, spec, out / RESULTS_PLOT)
        chunk_plot(results, out / RESULTS_CHUNKS)
    return ranked


def _write_and_select(out: Path, spec: SweepSpec, results: Sequence[RunResult]) -> list[dict[str, Any]]:
    """Write the results, then, with ``[select]``, select and write them again with the selection:
    the plain results are safe first, since selecting is long and may fail."""
    ranked = write_results(out, spec, results)
    if spec.select is not None:
        ranked = write_results(out, spec, results, select_models(spec.select, out, results))
    return ranked


def collect_results(spec: SweepSpec, out: Path) -> list[RunResult]:
    """Every trial of ``spec`` that is finished in ``out``, in sweep order."""
    return [r for t in spec.trials() if (r := finished_result(t, spec, out)) is not None]


def select_runs(spec: SweepSpec, only: Sequence[str] | None) -> list[SweepRun]:
    runs = [r for r in spec.runs if only is None or r.name in only]
    if only is not None and len(runs) != len(set(only)):
        unknown = sorted(set(only) - {r.name for r in spec.runs})
        raise ConfigError(f"--only names unknown runs {unknown}; the sweep has "
                          f"{', '.join(r.name for r in spec.runs)}")
    return runs


class SweepIncomplete(RuntimeError):
    """Some trials failed or did not finish (stopped, interrupted); the others' results are written.

    ``errors``: (run directory, message) of each failed trial; ``unfinished``: the run
    directories of the others that did not finish.
    """

    def __init__(self, errors: Sequence[tuple[str, str]], unfinished: Sequence[str] = ()) -> None:
        self.errors, self.unfinished = list(errors), list(unfinished)
        lines = []
        if self.errors:
            lines += [f"{len(self.errors)} trial(s) failed:", *(f"  {name}: {msg}" for name, msg in self.errors)]
        if self.unfinished:
            lines.append(f"{len(self.unfinished)} trial(s) did not finish: {', '.join(self.unfinished)}")
        super().__init__("\n".join([*lines, "run the same command again to resume them"]))


def train_sweep(spec: SweepSpec, out: Path, *, only: Sequence[str] | None = None, threads: int = 1,
                progress: bool = True, time_limit_s: float | None = None) -> list[str]:
    """Train the trials of ``spec`` (or of the runs named in ``only``) into ``out``, one after
    another in this process without Ray, and measure nothing: the half of a sweep that wants the
    accelerator, for a GPU host. The sweep run again without it, on any machine with ``out``'s
    run directories, reads the weights back and scores them (metrics and edits at the file's sizes).

    Chunk ends are not judged (their weights move on before a scorer sees them).
    ``time_limit_s`` bounds the whole call: training stops at a checkpoint when it is spent,
    and the same command resumes it. Returns the run directories that did not reach their budget.
    """
    out = Path(out).resolve()
    trials = spec.trials(select_runs(spec, only))
    for trial in trials:
        check_chunks(trial, spec)
    out.mkdir(parents=True, exist_ok=True)
    deadline = None if not time_limit_s else time.monotonic() + time_limit_s
    short = []
    for trial in trials:
        if weights_step(out / trial.dir_name) == spec.steps:
            log.info("sweep: %s is trained to %d steps already", trial.dir_name, spec.steps)
            continue
        train_and_score(trial, spec, out, threads=threads, progress=progress, train_only=True, deadline=deadline)
        if weights_step(out / trial.dir_name) != spec.steps:
            short.append(trial.dir_name)
    return short


def run_sweep(
    spec: SweepSpec, out: Path, *, only: Sequence[str] | None = None, progress: bool = True,
    eval_overrides: dict[str, Any] | None = None, address: str | None = None,
    cpus_per_trial: float | None = None, max_failures: int = 0, collect_only: bool = False,
) -> list[dict[str, Any]]:
    """Run every trial of ``spec`` (or of the runs named in ``only``) as Ray Tune trials into ``out``.

    A local Ray is started (and stopped) unless Ray is already initialised in this process or
    ``address`` names a cluster to join (``"auto"``, ``"ray://host:port"``). Trials of runs left
    out by ``only`` still enter the table when an earlier session finished them. The results
    are rewritten after every trial, so a sweep stopped half-way still leaves a table of what
    finished. Returns the ranked rows (see ``rank``); raises :class:`SweepIncomplete` after
    writing them when trials failed or did not finish (Ctrl-C stops a sweep gracefully).
    ``collect_only`` trains nothing: it writes the results (and the ledger) of what is finished.
    """
    out = Path(out).resolve()
    trials = spec.trials(select_runs(spec, only))
    for trial in trials:
        check_chunks(trial, spec)
    out.mkdir(parents=True, exist_ok=True)
    pending = [t for t in trials if finished_result(t, spec, out) is None]
    errors: list[tuple[str, str]] = []
    if pending and collect_only:
        log.info("sweep: %d of %d trial(s) not finished; collecting the others only", len(pending), len(trials))
        return _write_and_select(out, spec, collect_results(spec, out))
    if pending:
        from latentdial.training.tune import run_trials

        errors = run_trials(spec, out, [r.name for r in select_runs(spec, only)], address=address,
                            cpus_per_trial=cpus_per_trial or spec.cpus_per_trial, progress=progress,
                            eval_overrides=eval_overrides, max_failures=max_failures,
                            on_trial_done=lambda: write_results(out, spec, collect_results(spec, out)))
    else:
        log.info("sweep: every trial in %s is finished; rewriting the results", out)
    ranked = _write_and_select(out, spec, collect_results(spec, out))
    failed = {name for name, _ in errors}
    unfinished = [t.dir_name for t in trials
                  if t.dir_name not in failed and finished_result(t, spec, out) is None]
    if errors or unfinished:
        raise SweepIncomplete(errors, unfinished)
    return ranked
