"""Sweep trials as Ray Tune trials, on a local Ray or on a cluster.

:func:`run_trials` turns a sweep's runs, grid keys and seeds into one Tune ``grid_search``
each (their cartesian product is the trial set), asks for ``cpus_per_trial`` CPUs per trial,
and runs :func:`latentdial.training.sweep.train_and_score` in each: the project's trainer,
chunk by chunk, then the metrics and, with the sweep's ``[edits]``, the export and the edit
evaluation through a server started in the trial's process, reported to Tune after every
chunk and at the end.

The run directories under the sweep's ``--out`` are the state of a sweep, not Tune's
experiment: a finished trial reads its scores back in a moment, an unfinished one resumes
from its newest checkpoint, so running the same sweep again continues a stopped or killed
one. Tune's own records go to ``OUT/tune/<date-time>/`` (one folder per session, a trial's
error traceback included), nothing to ``~/ray_results``.

:func:`ray_session` starts a local Ray with every core of this machine (no dashboard, its
logs in a temporary folder removed afterwards) and stops it when the sweep ends, whatever
happens; with an ``address`` (``"auto"``, ``"ray://host:port"``) it joins that cluster
instead and leaves it running. On a cluster every node needs latentdial installed and
``--out`` must be a folder every node sees (a shared file system).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ray import tune

from latentdial.training.sweep import SweepSpec, train_and_score

log = logging.getLogger("latentdial.sweep")

#: Tune's records of each session go here, under the sweep's --out.
TUNE_DIR = "tune"


@contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None, quiet: bool = True) -> Iterator[None]:
    """Ray for the length of a sweep.

    Already initialised in this process (a notebook, a test): used as it is, left running.
    ``address``: joins that cluster (``ray.init(address=...)``), disconnects at the end.
    Otherwise a local Ray with ``num_cpus`` CPUs (default: this machine's cores), no dashboard,
    logs in a temporary folder, started here and shut down (and its folder removed) at the end.
    """
    import ray

    if ray.is_initialized():
        if address:
            log.warning("Ray is already initialised in this process; using it, not %s", address)
        yield
        return
    level = logging.WARNING if quiet else logging.INFO
    temp_dir = None
    if address:
        ray.init(address=address, logging_level=level, log_to_driver=not quiet)
    else:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a local, throw-away cluster
        temp_dir = tempfile.mkdtemp(prefix="latentdial-ray-")
        notice = logging.getLogger("ray._private.authentication.authentication_token_setup")
        before = notice.level
        notice.setLevel(logging.ERROR)  # "token authentication is enabled": true, and not news here
        try:
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, _temp_dir=temp_dir,
                     logging_level=level, log_to_driver=not quiet)
        except BaseException:
            shutil.rmtree(temp_dir, ignore_errors=True)
            raise
        finally:
            notice.setLevel(before)
    try:
        yield
    finally:
        ray.shutdown()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)


def default_cpus_per_trial() -> float:
    """Every core of this machine, capped at the largest node's CPUs of the Ray in use."""
    import ray

    mine = float(os.cpu_count() or 1)
    nodes = [n.get("Resources", {}).get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")]
    return min(mine, max(nodes)) if nodes and max(nodes) > 0 else mine


def _trainable(config: dict[str, Any], *, spec: SweepSpec, out: str, threads: int,
               eval_overrides: dict[str, Any] | None) -> None:
    """One Tune trial: the sweep trial named by ``config`` (run, seed, grid point)."""
    params = {k: v for k, v in config.items() if k not in ("run", "seed")}
    trial = spec.trial(config["run"], int(config["seed"]), params)
    train_and_score(trial, spec, Path(out), threads=threads, progress=False, eval_overrides=eval_overrides,
                    report=tune.report)


class _AfterEachTrial(tune.Callback):
    """Calls ``action`` in the driver whenever a trial completes (the sweep rewrites its table)."""

    def __init__(self, action: Callable[[], Any]) -> None:
        self.action = action

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        try:
            self.action()
        except Exception:  # a table that cannot be written now is written at the end
            log.exception("sweep: could not rewrite the results after %s", trial)


def param_space(spec: SweepSpec, runs: Sequence[str]) -> dict[str, Any]:
    """One ``grid_search`` per axis: the runs, every grid key and the seeds."""
    return {"run": tune.grid_search(list(runs)),
            **{key: tune.grid_search(list(values)) for key, values in spec.grid},
            "seed": tune.grid_search(list(spec.seeds))}


def run_trials(
    spec: SweepSpec, out: Path, runs: Sequence[str], *, address: str | None = None,
    cpus_per_trial: float | None = None, progress: bool = True, eval_overrides: dict[str, Any] | None = None,
    max_failures: int = 0, on_trial_done: Callable[[], Any] | None = None,
) -> list[tuple[str, str]]:
    """Run the trials of ``runs`` x the grid x the seeds with Ray Tune; return the failures as
    (run directory, first line of the error)."""
    out = Path(out).resolve()
    with ray_session(address, quiet=not progress):
        cpus = cpus_per_trial or default_cpus_per_trial()
        threads = max(1, int(cpus))
        log.info("sweep: %d CPU(s) and %d torch thread(s) per trial", cpus, threads)

        def dir_name(trial: Any) -> str:
            params = {k: v for k, v in trial.config.items() if k not in ("run", "seed")}
            return spec.trial(trial.config["run"], int(trial.config["seed"]), params).dir_name

        trainable = tune.with_resources(
            tune.with_parameters(_trainable, spec=spec, out=str(out), threads=threads,
                                 eval_overrides=eval_overrides),
            {"cpu": cpus},
        )
        tuner = tune.Tuner(
            trainable,
            param_space=param_space(spec, runs),
            tune_config=tune.TuneConfig(reuse_actors=True, trial_name_creator=dir_name,
                                        trial_dirname_creator=dir_name),
            run_config=tune.RunConfig(
                name=time.strftime("%Y-%m-%d_%H-%M-%S"), storage_path=str(out / TUNE_DIR),
                verbose=1 if progress else 0,
                failure_config=tune.FailureConfig(max_failures=max_failures),
                callbacks=[_AfterEachTrial(on_trial_done)] if on_trial_done is not None else None,
            ),
        )
        with contextlib.nullcontext() if progress else contextlib.redirect_stdout(io.StringIO()):
            grid = tuner.fit()  # Tune prints its experiment header even when told to be silent
        errors = []
        for result in grid:
            if result.error is not None:
                where = Path(result.path).name if result.path else "?"
                errors.append((where, (str(result.error).strip().splitlines() or [repr(result.error)])[-1]))
        return errors
