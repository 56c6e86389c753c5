"""A study's ledger: finished trials recorded with the code, so another machine resumes the study."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from latentdial.cli import main as cli_main
from latentdial.training.sweep import finished_result, load_sweep, train_and_score

REPO = Path(__file__).resolve().parents[2]
EVAL = {"num_train": 200, "num_test": 100}


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def _sweep(tmp_path: Path, ledger: Path) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(f"""
steps = 4
seeds = [0]
metrics = "mig"
rank_by = ["mig"]
ledger = "{ledger}"

[grid]
objective.beta = [2.0, 8.0]

[[run]]
name = "beta"
config = "configs/smoke.toml"
""")
    return path


def test_a_trial_finished_on_one_machine_is_read_from_the_ledger_on_another(tmp_path):
    ledger = tmp_path / "ledger"
    spec = load_sweep(_sweep(tmp_path, ledger), REPO)
    trial, other = spec.trials()
    here = train_and_score(trial, spec, tmp_path / "machine-a", eval_overrides=EVAL)
    assert finished_result(trial, spec, tmp_path / "machine-a") is not None  # recorded on the way
    entry = json.loads((ledger / f"{trial.dir_name}.json").read_text())
    assert entry["result"]["scores"]["mig"] == pytest.approx(here.scores["mig"])
    assert entry["key"]["config"]["objective"]["beta"] == 2.0 and entry["key"]["config"]["steps"] == 4

    elsewhere = tmp_path / "machine-b"  # no run directories at all
    again = finished_result(trial, spec, elsewhere)
    assert again is not None and again.scores == pytest.approx(here.scores)
    assert finished_result(other, spec, elsewhere) is None  # never trained anywhere
    assert not elsewhere.exists()


def test_a_ledger_entry_of_another_recipe_is_not_read_back(tmp_path):
    ledger = tmp_path / "ledger"
    spec = load_sweep(_sweep(tmp_path, ledger), REPO)
    trial = spec.trials()[0]
    train_and_score(trial, spec, tmp_path / "a", eval_overrides=EVAL)
    finished_result(trial, spec, tmp_path / "a")
    assert finished_result(trial, dataclasses.replace(spec, steps=6), tmp_path / "b") is None
    assert finished_result(trial, dataclasses.replace(spec, metrics_preset="reference"), tmp_path / "b") is None
    changed = dataclasses.replace(trial, run=dataclasses.replace(trial.run, overrides=("optimizer.lr=0.01",)))
    assert finished_result(changed, spec, tmp_path / "b") is None


def test_collect_writes_the_table_of_the_ledger_and_trains_nothing(tmp_path, capsys):
    ledger = tmp_path / "ledger"
    path = _sweep(tmp_path, ledger)
    spec = load_sweep(path, REPO)
    trial = spec.trials()[0]
    train_and_score(trial, spec, tmp_path / "a", eval_overrides=EVAL)
    finished_result(trial, spec, tmp_path / "a")

    out = tmp_path / "b"
    assert cli_main(["sweep", str(path), "--out", str(out), "--root", str(REPO), "--collect", "--quiet"]) == 0
    assert [r["name"] for r in json.loads((out / "sweep.json").read_text())["runs"]] == [trial.name]
    assert "| **beta** | **2.0** |" in (out / "sweep.md").read_text()
    assert not [p for p in out.iterdir() if p.is_dir()], "no run directory: nothing was trained"


def test_a_relative_init_from_is_trained_from_the_sweep_root_and_recorded_as_written(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(f"""
steps = 4
ledger = "{tmp_path / 'ledger'}"

[[run]]
name = "pretrained"
config = "configs/smoke.toml"
set = ["init_from=models/dsprites_tcvae/2", "model.latent_dim=6",
       'init_skip=["encoder.mean", "encoder.log_var", "decoder.fc.0"]']
""")
    from latentdial.training.sweep import chunk_config, ledger_key

    spec = load_sweep(path, REPO)
    (trial,) = spec.trials()
    # a Tune worker runs in its trial directory, so the trainer gets the path under the root ...
    assert chunk_config(trial, spec, 4).init_from == str(REPO / "models/dsprites_tcvae/2")
    # ... while the ledger keeps it as the file says, so another machine's checkout matches it
    key = ledger_key(trial, spec)["config"]
    assert key["init_from"] == "models/dsprites_tcvae/2"
    assert key["init_skip"] == ["encoder.mean", "encoder.log_var", "decoder.fc.0"]


def test_a_sweep_without_init_skip_keeps_the_ledger_key_it_had_before_init_skip_existed(tmp_path):
    spec = load_sweep(_sweep(tmp_path, tmp_path / "ledger"), REPO)
    from latentdial.training.sweep import ledger_key

    assert "init_skip" not in ledger_key(spec.trials()[0], spec)["config"]


@pytest.mark.parametrize("sweep", sorted(p.name for p in (REPO / "configs" / "sweep").glob("*.toml")
                                         if "ledger" in p.read_text()))
def test_every_committed_ledger_entry_still_reads_back_under_todays_code(sweep):
    """An option added to a config (edit_cycle, init_skip) must not turn finished trials into new ones:
    each entry's recorded config is the one today's code resolves for its trial. (The metrics and
    edits asked are the sweep file's choice: the snap study keeps a fast-preset pilot on purpose.)"""
    from latentdial.training.ledger import entry_path
    from latentdial.training.sweep import ledger_key

    spec = load_sweep(REPO / "configs" / "sweep" / sweep, REPO)
    recorded = [t for t in spec.trials() if entry_path(spec.ledger, t.dir_name).is_file()]
    for trial in recorded:
        key = json.loads(entry_path(spec.ledger, trial.dir_name).read_text())["key"]
        now = json.loads(json.dumps(ledger_key(trial, spec)))  # tuples as the file has them: lists
        assert key["config"] == now["config"], trial.dir_name


def test_an_option_at_its_default_is_left_out_of_a_config_it_was_added_after():
    from latentdial.training.config import load_config

    plain = load_config(REPO / "configs" / "shipped" / "dsprites.toml").to_dict()["objective"]
    assert "edit_cycle" not in plain and plain["commitment"] == 0.25  # older options are always written
    cycled = load_config(REPO / "configs" / "shipped" / "dsprites.toml", ["objective.edit_cycle=10.0"])
    assert cycled.to_dict()["objective"]["edit_cycle"] == 10.0
    assert load_config(REPO / "configs" / "shipped" / "dsprites.toml").objective.edit_cycle == 0.0
