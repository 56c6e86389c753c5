"""`latentdial sweep`: a bounded sweep trains every run for the same budget, scores and ranks them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from latentdial.cli import main as cli_main
from latentdial.training.config import ConfigError
from latentdial.training.sweep import (
    RunResult,
    SweepSpec,
    load_sweep,
    markdown_table,
    rank,
    run_sweep,
)

REPO = Path(__file__).resolve().parents[1]
#: Small enough that two runs train and score in seconds.
EVAL = {"num_train": 200, "num_test": 100}


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def _write_sweep(tmp_path: Path, steps: int = 4) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(f"""
steps = {steps}
seeds = [0]
metrics = "mig,dci"
rank_by = ["mig", "dci.disentanglement"]

[[run]]
name = "beta"
config = "configs/smoke.toml"

[[run]]
name = "tc"
config = "configs/smoke.toml"
set = ["objective.name=beta_tcvae"]
""")
    return path


def test_the_shipped_sweep_file_names_every_disentangling_objective_once():
    spec = load_sweep(REPO / "configs" / "sweep" / "dsprites.toml", REPO)
    from latentdial.training.config import load_config
    from latentdial.training.objectives import OBJECTIVES

    objectives = {load_config(r.config, list(r.overrides)).objective_name for r in spec.runs}
    # the plain VAE is beta_vae at beta = 1; the sweep ranks objectives that learn without labels
    labelled = {name for name, cls in OBJECTIVES.items() if cls.requires_labels}
    assert labelled == {"semi_supervised"}
    assert objectives == set(OBJECTIVES) - {"vae"} - labelled
    assert spec.steps >= 1 and spec.rank_by == ("factor_vae.eval_accuracy", "mig", "dci.disentanglement")


def test_a_sweep_trains_each_run_for_the_budget_and_ranks_them_by_the_mean_of_rank_by(tmp_path):
    spec = load_sweep(_write_sweep(tmp_path), REPO)
    out = tmp_path / "out"
    ranked = run_sweep(spec, out, progress=False, eval_overrides=EVAL)

    results = json.loads((out / "sweep.json").read_text())
    assert {r["name"] for r in results["runs"]} == {"beta", "tc"}
    for r in results["runs"]:
        config = json.loads((Path(r["run_dir"]) / "config.json").read_text())
        assert config["steps"] == 4 and config["seed"] == 0
        assert set(r["scores"]) >= {"mig", "dci.disentanglement"}
        assert r["train_seconds"] > 0 and r["eval_seconds"] > 0
    assert results["runs"][1]["objective"] == "beta_tcvae"
    for row in ranked:
        assert row["score"] == pytest.approx((row["mean"]["mig"] + row["mean"]["dci.disentanglement"]) / 2)
    assert ranked[0]["score"] >= ranked[1]["score"] and results["best"] == ranked[0]["name"]
    assert (out / "sweep.png").stat().st_size > 0
    assert ranked[0]["name"] in (out / "sweep.md").read_text()


def test_a_finished_run_is_read_back_not_retrained(tmp_path):
    spec = load_sweep(_write_sweep(tmp_path), REPO)
    out = tmp_path / "out"
    run_sweep(spec, out, only=["beta"], progress=False, eval_overrides=EVAL)
    weights = out / "beta-s0" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    ranked = run_sweep(spec, out, only=["tc"], progress=False, eval_overrides=EVAL)
    assert weights.stat().st_mtime_ns == stamp
    assert {row["name"] for row in ranked} == {"beta", "tc"}
    first = json.loads((out / "beta-s0" / "sweep_result.json").read_text())
    again = json.loads((out / "sweep.json").read_text())["runs"]
    # read back with the timings measured when it was trained
    assert [r["train_seconds"] for r in again if r["name"] == "beta"] == [first["train_seconds"]] != [None]


def test_a_finished_run_whose_metrics_lack_a_rank_by_key_is_evaluated_again_not_retrained(tmp_path):
    spec = load_sweep(_write_sweep(tmp_path), REPO)
    out = tmp_path / "out"
    run_sweep(spec, out, only=["beta"], progress=False, eval_overrides=EVAL)
    weights, metrics = out / "beta-s0" / "model.safetensors", out / "beta-s0" / "metrics.json"
    stamp = weights.stat().st_mtime_ns
    old = json.loads(metrics.read_text())
    metrics.write_text(json.dumps({k: v for k, v in old.items() if k != "mig"}))  # scored before mig ranked

    ranked = run_sweep(spec, out, only=["beta"], progress=False, eval_overrides=EVAL)
    assert weights.stat().st_mtime_ns == stamp
    assert json.loads(metrics.read_text())["mig"] == pytest.approx(old["mig"])
    assert ranked[0]["name"] == "beta" and ranked[0]["score"] is not None


def test_rank_puts_a_run_missing_a_metric_last_and_averages_seeds():
    def result(name: str, seed: int, **scores: float) -> RunResult:
        return RunResult(name, seed, "", "beta_vae", [], 1, None, None, scores)

    ranked = rank([result("a", 0, mig=0.2), result("a", 1, mig=0.4), result("b", 0, sap=0.9),
                   result("c", 0, mig=0.25)], ["mig"])
    assert [r["name"] for r in ranked] == ["a", "c", "b"]
    assert ranked[0]["mean"]["mig"] == pytest.approx(0.3) and ranked[0]["seeds"] == [0, 1]
    table = markdown_table(ranked, ["mig"], 1)
    assert "**a**" in table and "| 3 | b | beta_vae | 0 | — | — |" in table


def test_bad_sweep_files_are_rejected_with_what_to_fix(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('steps = 3\n[[run]]\nname = "x"\nconfig = "configs/nope.toml"\n')
    with pytest.raises(ConfigError, match="nope.toml does not exist"):
        load_sweep(bad, REPO)
    bad.write_text('steps = 3\nstep = 4\n[[run]]\nname = "x"\nconfig = "configs/smoke.toml"\n')
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['step'\]"):
        load_sweep(bad, REPO)
    bad.write_text('[[run]]\nname = "x"\nconfig = "configs/smoke.toml"\n')
    with pytest.raises(ConfigError, match="must set steps"):
        load_sweep(bad, REPO)
    with pytest.raises(ConfigError, match="unique"):
        SweepSpec(runs=(load_sweep(_write_sweep(tmp_path), REPO).runs[0],) * 2, steps=1)
    spec = load_sweep(_write_sweep(tmp_path), REPO)
    with pytest.raises(ConfigError, match=r"unknown runs \['nope'\]"):
        run_sweep(spec, tmp_path / "o", only=["nope"], progress=False)


def test_cli_runs_a_sweep_and_prints_the_ranked_table(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    path = _write_sweep(tmp_path, steps=2)
    code = cli_main(["sweep", str(path), "--out", str(tmp_path / "out"), "--only", "beta", "--quiet",
                    "--num-train", "200", "--num-test", "100"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "**beta**" in printed and "best: beta" in printed
    assert cli_main(["sweep", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o")]) == 2
