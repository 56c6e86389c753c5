"""Sweeps as Ray Tune trials on a real local Ray: a grid, the records, table and plot, resume after
a kill, failures, and joining a cluster by address.

One local Ray (2 CPUs) serves the whole module; the sweep uses it as it is (a Ray already
initialised in the process is not started or stopped again). Trials are the smoke config for a
few steps, scored by MIG alone on small samples.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
import ray

from latentdial.cli import main as cli_main
from latentdial.training.sweep import (
    SweepIncomplete,
    chunk_config,
    load_sweep,
    run_sweep,
    train_and_score,
    weights_step,
)
from latentdial.training.trainer import checkpoint_paths, train

REPO = Path(__file__).resolve().parents[2]
EVAL = {"num_train": 200, "num_test": 100}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    """A real local Ray with 2 CPUs for the module (a short temp folder: Ray's socket paths are bounded)."""
    if ray.is_initialized():
        pytest.skip("Ray is already running in this process")
    temp_dir = tempfile.mkdtemp(prefix="ld-test-ray-")
    try:
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp_dir, logging_level="warning",
                 log_to_driver=False)
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _spec(tmp_path: Path, text: str):
    path = tmp_path / "sweep.toml"
    path.write_text('metrics = "mig"\nrank_by = ["mig"]\n' + text + """
[[run]]
name = "smoke"
config = "configs/smoke.toml"
""")
    return load_sweep(path, REPO)


def test_a_grid_runs_as_tune_trials_in_chunks_and_writes_records_table_and_plot(local_ray, tmp_path):
    spec = _spec(tmp_path, """
steps = 4
chunks = [2]
seeds = [0, 1]
[grid]
objective.beta = [1.0, 8.0]
[plot]
log_x = true
""")
    out = tmp_path / "out"
    ranked = run_sweep(spec, out, progress=False, eval_overrides=EVAL, cpus_per_trial=1)

    record = json.loads((out / "sweep.json").read_text())
    runs = {Path(r["run_dir"]).name: r for r in record["runs"]}
    assert sorted(runs) == ["smoke-beta=1.0-s0", "smoke-beta=1.0-s1", "smoke-beta=8.0-s0", "smoke-beta=8.0-s1"]
    for name, r in runs.items():
        config = json.loads((out / name / "config.json").read_text())
        assert config["objective"]["beta"] == r["params"]["objective.beta"] and config["seed"] == r["seed"]
        assert config["steps"] == 4 and config["num_threads"] == 1  # torch threads = the trial's CPUs
        assert [(s["from"], s["to"]) for s in r["segments"]] == [(0, 2), (2, 4)]
        assert set(r["scores"]) == {"mig"} and r["eval_seconds"] > 0
    assert record["grid"] == {"objective.beta": [1.0, 8.0]} and record["chunks"] == [2, 4]
    assert record["plot"] == {"metric": "mig", "x": "objective.beta", "file": "sweep_plot.png"}
    assert [row["seeds"] for row in ranked] == [[0, 1], [0, 1]] and record["best"] == ranked[0]["name"]
    table = (out / "sweep.md").read_text()
    assert "| rank | run | beta | objective | seeds | mig | score |" in table
    assert f"| **1** | **smoke** | **{ranked[0]['params']['objective.beta']}** |" in table
    for png in ("sweep.png", "sweep_plot.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    # Tune's records of the session sit under --out, one folder per trial
    (session,) = (out / "tune").iterdir()
    assert sorted(p.name for p in session.iterdir() if p.is_dir()) == sorted(runs)


def test_a_killed_sweep_skips_finished_trials_and_resumes_unfinished_ones_from_their_checkpoint(local_ray, tmp_path):
    spec = _spec(tmp_path, "steps = 4\nchunks = [2]\nseeds = [0, 1]\n")
    out = tmp_path / "out"
    # the first session finished seed 0, then was killed after seed 1's first chunk
    done, killed = spec.trials()
    train_and_score(done, spec, out, eval_overrides=EVAL)
    train(chunk_config(killed, spec, 2), out / killed.dir_name, progress=False)
    assert weights_step(out / killed.dir_name) == 2 and not (out / killed.dir_name / "metrics.json").exists()
    weights = out / done.dir_name / "model.safetensors"
    stamp, record = weights.stat().st_mtime_ns, (out / done.dir_name / "sweep_result.json").read_text()
    chunk_one = out / killed.dir_name / "checkpoints" / "step_00000002.pt"
    chunk_one_stamp = chunk_one.stat().st_mtime_ns

    ranked = run_sweep(spec, out, progress=False, eval_overrides=EVAL)
    assert weights.stat().st_mtime_ns == stamp  # finished: skipped, not trained again
    assert (out / done.dir_name / "sweep_result.json").read_text() == record
    resumed = json.loads((out / killed.dir_name / "sweep_result.json").read_text())
    assert [(s["from"], s["to"]) for s in resumed["segments"]] == [(2, 4)]  # only the second chunk trained
    assert chunk_one.stat().st_mtime_ns == chunk_one_stamp and resumed["finished"] is True
    assert [p.name for p in checkpoint_paths(out / killed.dir_name)] == ["step_00000002.pt", "step_00000004.pt"]
    rows = (out / killed.dir_name / "loss_log.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [2, 4]  # the loss log runs on from the checkpoint
    assert ranked[0]["seeds"] == [0, 1]
    runs = json.loads((out / "sweep.json").read_text())["runs"]
    assert [(r["seed"], weights_step(Path(r["run_dir"]))) for r in runs] == [(0, 4), (1, 4)]


def test_a_trial_with_edits_judges_them_through_a_server_in_its_tune_worker_and_a_rerun_reads_them_back(
        local_ray, tmp_path):
    # the smoke config as a semi-supervised model, every dSprites factor named; 8 edits per factor
    (tmp_path / "sweep.toml").write_text("""
steps = 4
metrics = "mig"
rank_by = ["mig"]
[edits]
num = 8
[grid]
objective.code_noise = [0.05]
[plot]
metric = "edit.shape"
[[run]]
name = "semi"
config = "configs/smoke.toml"
set = ["objective.name=semi_supervised", "model.latent_dim=6", "objective.num_labelled=16"]
""")
    spec = load_sweep(tmp_path / "sweep.toml", REPO)
    out = tmp_path / "out"
    run_sweep(spec, out, progress=False, eval_overrides=EVAL, cpus_per_trial=1)
    (run,) = json.loads((out / "sweep.json").read_text())["runs"]
    run_dir = Path(run["run_dir"])
    assert run_dir.name == "semi-code_noise=0.05-s0" and (run_dir / "model" / "1" / "manifest.json").is_file()
    assert json.loads((run_dir / "edits.json").read_text())["num"] == 8
    assert {"edit.shape", "edit.pos_y", "readback.orientation", "readback.all"} <= set(run["scores"])
    table = (out / "sweep.md").read_text()
    assert "| mig | score | edit.shape |" in table and "| readback.all |" in table
    assert (out / "sweep_plot.png").read_bytes()[:4] == b"\x89PNG"  # the plot's metric is an edit column

    stamp = (run_dir / "edits.json").stat().st_mtime_ns
    run_sweep(spec, out, progress=False, eval_overrides=EVAL, cpus_per_trial=1)
    assert (run_dir / "edits.json").stat().st_mtime_ns == stamp
    assert json.loads((out / "sweep.json").read_text())["runs"][0]["scores"] == run["scores"]


def test_a_failing_trial_is_reported_and_the_others_are_ranked(local_ray, tmp_path):
    # colour images into a one-channel model: that trial fails at its first step, the other finishes
    spec = _spec(tmp_path, 'steps = 2\n[grid]\ndataset.name = ["dsprites", "color_dsprites"]\n')
    with pytest.raises(SweepIncomplete) as failed:
        run_sweep(spec, tmp_path / "out", progress=False, eval_overrides=EVAL, cpus_per_trial=1)
    assert [name for name, _ in failed.value.errors] == ["smoke-name=color_dsprites-s0"]
    assert failed.value.unfinished == [] and "run the same command again" in str(failed.value)
    table = (tmp_path / "out" / "sweep.md").read_text()
    assert "| **1** | **smoke** | **dsprites** |" in table and "color_dsprites" not in table


@pytest.mark.parametrize("address", ["ray://head.example:10001", "auto"])
def test_address_joins_that_cluster_instead_of_starting_a_local_ray(address, tmp_path, monkeypatch, capsys):
    calls: list[tuple[tuple, dict]] = []

    def init(*args, **kwargs):
        calls.append((args, kwargs))
        raise ConnectionError("no cluster here")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append((("shutdown",), {})))
    monkeypatch.chdir(REPO)
    (tmp_path / "s.toml").write_text('steps = 2\n[[run]]\nname = "smoke"\nconfig = "configs/smoke.toml"\n')
    code = cli_main(["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out"), "--address", address,
                     "--quiet"])
    assert code == 2
    assert f"could not join the Ray cluster at {address}: no cluster here" in capsys.readouterr().err
    ((args, kwargs),) = calls  # one ray.init, no shutdown of a cluster never joined
    assert kwargs["address"] == address and not args
    assert not {"num_cpus", "_temp_dir", "include_dashboard"} & set(kwargs)
