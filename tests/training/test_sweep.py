"""`latentdial sweep`: sweep files and grids, a trial's chunks and resume, ranking, the table and plot.

A trial's body (``train_and_score``) is tested here without Ray; tests/training/test_tune.py runs trials
as Ray Tune trials on a real local Ray. The last test runs the command itself, which starts
and stops its own local Ray.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from latentdial.cli import main as cli_main
from latentdial.training.config import ConfigError, load_config
from latentdial.training.sweep import (
    EditSpec,
    RunResult,
    SweepSpec,
    Trial,
    check_chunks,
    chunk_config,
    collect_results,
    edit_columns,
    final_config,
    line_label,
    line_plot,
    line_series,
    load_sweep,
    markdown_table,
    rank,
    select_runs,
    train_and_score,
    weights_step,
    write_results,
)
from latentdial.training.sweep_select import select_models

REPO = Path(__file__).resolve().parents[2]
#: Small enough that a trial trains and scores in seconds.
EVAL = {"num_train": 200, "num_test": 100}


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def _write_sweep(tmp_path: Path, steps: int = 4, extra: str = "") -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(f"""
steps = {steps}
seeds = [0]
metrics = "mig,dci"
rank_by = ["mig", "dci.disentanglement"]
{extra}

[[run]]
name = "beta"
config = "configs/smoke.toml"

[[run]]
name = "tc"
config = "configs/smoke.toml"
set = ["objective.name=beta_tcvae"]
""")
    return path


def write_edit_sweep(tmp_path: Path, num: int = 8, extra: str = "") -> Path:
    """A smoke-sized semi-supervised sweep on dSprites (every factor named) with ``num`` edits per factor."""
    path = tmp_path / "edits.toml"
    path.write_text(f"""
steps = 4
seeds = [0]
metrics = "mig"
rank_by = ["mig"]
{extra}

[edits]
num = {num}

[[run]]
name = "semi"
config = "configs/smoke.toml"
set = ["objective.name=semi_supervised", "model.latent_dim=6", "objective.num_labelled=16"]
""")
    return path


def _only_trial(spec: SweepSpec, run: str = "beta") -> Trial:
    (trial,) = [t for t in spec.trials() if t.run.name == run]
    return trial


# -- sweep files ---------------------------------------------------------------------------------


def test_the_shipped_sweep_file_names_every_disentangling_objective_once():
    spec = load_sweep(REPO / "configs" / "sweep" / "dsprites.toml", REPO)
    from latentdial.training.objectives import OBJECTIVES

    objectives = {load_config(r.config, list(r.overrides)).objective_name for r in spec.runs}
    # the plain VAE is beta_vae at beta = 1; the sweep ranks objectives that learn without labels
    labelled = {name for name, cls in OBJECTIVES.items() if cls.requires_labels}
    assert labelled == {"semi_supervised"}
    assert objectives == set(OBJECTIVES) - {"vae"} - labelled
    assert spec.steps >= 1 and spec.rank_by == ("factor_vae.eval_accuracy", "mig", "dci.disentanglement")
    assert spec.cpus_per_trial == 1 and spec.grid == () and spec.chunk_ends() == [spec.steps]
    # without a grid, run directories keep their names
    assert [t.dir_name for t in spec.trials()][:2] == ["beta_vae-s0", "annealed_vae-s0"]


def test_the_infogan_cr_sweep_is_the_authors_recipe_over_ten_seeds_selected_by_model_centrality():
    spec = load_sweep(REPO / "configs" / "sweep" / "infogan_cr.toml", REPO)
    (run,) = spec.runs
    assert run.config == REPO / "configs" / "families" / "dsprites_infogan_cr.toml"
    recipe = load_config(run.config, list(run.overrides))
    assert recipe.objective_name == "infogan_cr" and recipe.device == "cuda"
    assert spec.steps == recipe.steps == 322560 and spec.seeds == tuple(range(10))
    # the paper's "with selection" row: the authors' sizes, the reference metrics, edits by the reader
    assert spec.select is not None and spec.select.sizes == {"num_groups": 500, "group_size": 100,
                                                              "num_std": 10000, "seed": 0}
    assert spec.metrics_preset == "reference" and spec.edits is not None and spec.edits.num == 1000
    assert len(spec.chunk_ends()) > 1  # resumable: a stopped GPU job continues from its checkpoint


#: what the few-label recipe adds to the shipped default's objective (configs/few_labels/dsprites.toml)
FEW_LABELS = {
    "num_labelled": 1000, "unlabelled_codes": "pseudo", "views_angle": "orientation", "views_position": ["pos_x", "pos_y"],
    "views": {"shift": ["shape", "scale", "orientation"], "rot90": ["shape", "scale"], "flip": ["shape", "scale"]},
}


def test_the_gpu_label_trials_are_the_shipped_default_recipe_and_length_with_1000_labels():
    spec = load_sweep(REPO / "configs" / "sweep" / "label_study_gpu.toml", REPO)
    plain, few, drawn = spec.trials()
    shipped = load_config(REPO / "configs" / "shipped" / "dsprites.toml")
    # dsprites/5's schedule: 59,300 steps at the constant lr, then 36,000 cooling down to 0
    assert spec.steps == 95300 and spec.chunk_ends() == [59300, 95300]
    assert spec.edits is not None and spec.edits.every_chunk and spec.metrics_preset == "reference"
    for trial, objective in ((plain, {"num_labelled": 1000}), (few, {**FEW_LABELS, "pseudo_turns": True}),
                             (drawn, {**FEW_LABELS, "pseudo_turns": True, "views_decode": 0.5})):
        last = chunk_config(trial, spec, spec.steps)
        assert last.device == "cuda" and last.optimizer.cooldown_steps == 36000
        check_chunks(trial, spec)
        for key in ("model", "dataset", "batch_size"):
            assert last.to_dict()[key] == shipped.to_dict()[key], key
        assert {**last.to_dict()["optimizer"], "cooldown_steps": 0} == shipped.to_dict()["optimizer"]
        assert last.to_dict()["objective"] == {**shipped.to_dict()["objective"], **objective}


def test_the_few_label_recipe_is_the_shipped_default_with_1000_labels_pseudo_labels_and_views():
    few = load_config(REPO / "configs" / "few_labels" / "dsprites.toml").to_dict()
    shipped = load_config(REPO / "configs" / "shipped" / "dsprites.toml").to_dict()
    assert few["objective"] == {**shipped["objective"], **FEW_LABELS}
    assert {k: v for k, v in few.items() if k != "objective"} == {k: v for k, v in shipped.items() if k != "objective"}
    spec = load_sweep(REPO / "configs" / "sweep" / "label_study_pseudo.toml", REPO)
    assert {t.run.config.relative_to(REPO).as_posix() for t in spec.trials()} == {"configs/few_labels/dsprites.toml"}
    assert dict(spec.grid) == {"objective.num_labelled": (1000, 100)}


def test_the_label_study_is_the_shipped_semi_supervised_recipe_over_labels_seeds_and_datasets():
    spec = load_sweep(REPO / "configs" / "sweep" / "label_study.toml", REPO)
    trials = spec.trials()
    assert len(trials) == 4 * 3 * 2
    assert {t.run.config.relative_to(REPO).as_posix() for t in trials} == {
        "configs/shipped/dsprites.toml", "configs/shipped/color_dsprites.toml"}
    assert dict(spec.grid) == {"objective.num_labelled": (100, 1000, 10000, 0)} and spec.seeds == (0, 1, 2)
    assert spec.plot_x() == "objective.num_labelled" and spec.plot.log_x and spec.plot.zero_label == "all"
    # what a user sees: 1,000 edits per factor judged by the dataset's reader, and the metrics at
    # the reference protocol's sizes
    assert spec.edits == EditSpec(num=1000, seed=0, reader=None) and spec.metrics_preset == "reference"
    assert spec.plot_metric() == "edit.shape"
    ends = spec.chunk_ends()
    assert ends[-1] == spec.steps and len(ends) >= 2
    for trial in trials:
        check_chunks(trial, spec)  # every chunk but the last ends before the cooldown starts
    trial = next(t for t in trials if dict(t.params)["objective.num_labelled"] == 1000)
    last = chunk_config(trial, spec, ends[-1], threads=2)
    assert last.objective_name == "semi_supervised" and last.objective.num_labelled == 1000
    assert last.optimizer.cooldown_steps > 0 and last.num_threads == 2
    for end in ends[:-1]:  # the earlier chunks run at the constant lr
        assert chunk_config(trial, spec, end).optimizer.cooldown_steps == 0
        assert end <= spec.steps - last.optimizer.cooldown_steps


def test_the_snap_study_is_the_label_studys_dsprites_half_at_few_labels_with_mean_and_snapped_codes():
    study = load_sweep(REPO / "configs" / "sweep" / "label_study.toml", REPO)
    spec = load_sweep(REPO / "configs" / "sweep" / "label_study_snap.toml", REPO)
    trials = spec.trials()
    assert len(trials) == 2 * 2 * 3 and spec.seeds == (0, 1, 2)
    assert dict(spec.grid) == {"objective.num_labelled": (100, 1000), "objective.unlabelled_codes": ("mean", "snap")}
    assert [r.config for r in spec.runs] == [REPO / "configs" / "shipped" / "dsprites.toml"]
    same = ("steps", "chunks", "metrics", "metrics_preset", "rank_by", "edits")
    assert all(getattr(spec, k) == getattr(study, k) for k in same)
    assert spec.plot_x() == "objective.num_labelled" and spec.plot_metric() == "edit.shape"
    by_point = {(dict(t.params)["objective.unlabelled_codes"], dict(t.params)["objective.num_labelled"], t.seed): t
                for t in trials}
    studied = {(dict(t.params)["objective.num_labelled"], t.seed): t for t in study.trials() if t.run.name == "dsprites"}
    for (codes, labels, seed), trial in by_point.items():
        check_chunks(trial, spec)
        cfg = final_config(trial, spec)
        assert cfg.objective.unlabelled_codes == codes and cfg.objective.num_labelled == labels
        # "mean" is the label study's trial itself; "snap" differs from it in that option alone
        twin = final_config(studied[(labels, seed)], study).to_dict()
        twin["objective"]["unlabelled_codes"] = codes
        assert cfg.to_dict() == twin
    assert trials[-1].dir_name == "dsprites-num_labelled=1000-unlabelled_codes=snap-s2"


def test_a_grid_over_dotted_keys_is_the_cartesian_product_with_the_seeds(tmp_path):
    path = _write_sweep(tmp_path, extra="""
[grid]
objective.beta = [1.0, 8.0]
dataset.name = ["dsprites", "noisy_dsprites"]
""")
    spec = load_sweep(path, REPO)
    trials = spec.trials(select_runs(spec, ["beta"]))
    assert len(trials) == 4
    names = [t.dir_name for t in trials]
    assert names[0] == "beta-beta=1.0-name=dsprites-s0" and len(set(names)) == 4
    assert trials[3].overrides == ("objective.beta=8.0", 'dataset.name="noisy_dsprites"')
    cfg = chunk_config(trials[3], spec, spec.steps)
    assert cfg.objective.beta == 8.0 and cfg.dataset["name"] == "noisy_dsprites" and cfg.evaluate is False
    # `seed` in the grid is the seeds axis
    (tmp_path / "s.toml").write_text(path.read_text().replace("seeds = [0]\n", "").replace(
        "[grid]\n", "[grid]\nseed = [3, 4]\n"))
    assert load_sweep(tmp_path / "s.toml", REPO).seeds == (3, 4)


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
        select_runs(spec, ["nope"])
    for grid, match in (("steps = [1, 2]", "budget"), ("num_threads = [1]", "cpus-per-trial"),
                        ("objective.beta = 4", "must be a list")):
        with pytest.raises(ConfigError, match=match):
            load_sweep(_write_sweep(tmp_path, extra=f"[grid]\n{grid}\n"), REPO)
    with pytest.raises(ConfigError, match="both seeds"):
        load_sweep(_write_sweep(tmp_path, extra="[grid]\nseed = [1]\n"), REPO)
    with pytest.raises(ConfigError, match="increasing"):
        load_sweep(_write_sweep(tmp_path, extra="chunks = [3, 2]\n"), REPO)
    with pytest.raises(ConfigError, match="plot x"):
        load_sweep(_write_sweep(tmp_path, extra='[grid]\nobjective.beta = [1.0]\n[plot]\nx = "seed"\n'), REPO)
    with pytest.raises(ConfigError, match="metrics_preset must be one of"):
        load_sweep(_write_sweep(tmp_path, extra='metrics_preset = "huge"\n'), REPO)
    for edits, match in (("num = 0", "num must be >= 1"), ("nmu = 8", r"unknown key\(s\) \['nmu'\] in \[edits\]"),
                         ('reader = "nope.safetensors"', "reader .*nope.safetensors does not exist")):
        with pytest.raises(ConfigError, match=match):
            load_sweep(_write_sweep(tmp_path, extra=f"[edits]\n{edits}\n"), REPO)
    with pytest.raises(ConfigError, match=r"\['edit.shape'\] are scores of the edit evaluation"):
        load_sweep(_write_sweep(tmp_path, extra='[plot]\nmetric = "edit.shape"\n'), REPO)
    # a chunk may not end inside the cooldown: the trainer could not resume it on the same lr line
    spec = load_sweep(_write_sweep(tmp_path, steps=10, extra="chunks = [4, 8]\n"), REPO)
    trial = dataclasses.replace(_only_trial(spec), run=dataclasses.replace(
        spec.runs[0], overrides=("optimizer.cooldown_steps=4",)))
    with pytest.raises(ConfigError, match=r"chunk end\(s\) \[8\] fall inside the cooldown"):
        check_chunks(trial, spec)


@pytest.mark.slow
def test_select_picks_each_runs_most_central_trial_without_labels_and_keeps_it_until_weights_change(
        tmp_path, monkeypatch):
    import latentdial.training.model_centrality as mc

    path = _write_sweep(tmp_path, steps=2, extra=(
        '[select]\nmethod = "centrality"\ngroups = 20\ngroup_size = 10\nstd_images = 200\n'))
    path.write_text(path.read_text().replace("seeds = [0]\n", "seeds = [0, 1, 2]\n", 1))
    spec = load_sweep(path, REPO)
    assert spec.select is not None and spec.select.sizes["num_groups"] == 20
    out = tmp_path / "out"
    results = [train_and_score(t, spec, out, eval_overrides=EVAL) for t in spec.trials()]
    calls: list[int] = []
    real = mc.centrality_of_runs
    monkeypatch.setattr(mc, "centrality_of_runs", lambda dirs, **kw: calls.append(len(dirs)) or real(dirs, **kw))

    selection = select_models(spec.select, out, results)
    assert calls == [3, 3]  # one similarity matrix per run, over its three seeds
    for run in ("beta", "tc"):
        ranking = selection[run]["ranking"]
        assert sorted(name for name, _ in ranking) == [f"{run}-s{s}" for s in (0, 1, 2)]
        assert selection[run]["selected"] == ranking[0][0]
        assert [score for _, score in ranking] == sorted((score for _, score in ranking), reverse=True)
        assert all(0.0 <= score <= 1.0 for _, score in ranking)
    write_results(out, spec, results, selection)
    table = (out / "sweep.md").read_text()
    chosen = selection["beta"]["selected"]
    own = next(r for r in results if r.run_dir.endswith(chosen)).scores["mig"]
    assert f"| beta | 3 | {chosen} | {selection['beta']['ranking'][0][1]:.3f} | {own:.3f} |" in table
    assert json.loads((out / "sweep.json").read_text())["selected"]["tc"]["trial"] == selection["tc"]["selected"]

    assert select_models(spec.select, out, results) == selection and calls == [3, 3]  # read back
    longer = dataclasses.replace(spec, steps=3)
    retrained = train_and_score(next(t for t in spec.trials() if t.run.name == "tc"), longer, out, eval_overrides=EVAL)
    select_models(spec.select, out, [r for r in results if r.run_dir != retrained.run_dir] + [retrained])
    assert calls == [3, 3, 3]  # only the run whose weights changed is measured again
    with pytest.raises(ConfigError, match="method must be one of"):
        load_sweep(_write_sweep(tmp_path, extra='[select]\nmethod = "medoid"\n'), REPO)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['grups'\] in \[select\]"):
        load_sweep(_write_sweep(tmp_path, extra="[select]\ngrups = 3\n"), REPO)


# -- one trial, without Ray ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_trial_trains_in_chunks_and_its_cooldown_ends_it_as_if_planned_from_the_start(tmp_path):
    from latentdial.training.trainer import train

    spec = load_sweep(_write_sweep(tmp_path, extra="chunks = [2]\n"), REPO)
    run = dataclasses.replace(spec.runs[0], overrides=("optimizer.cooldown_steps=2",))
    trial = Trial(run, 0, (), "beta")
    reports: list[dict] = []
    result = train_and_score(trial, spec, tmp_path / "out", eval_overrides=EVAL, report=reports.append)
    run_dir = tmp_path / "out" / "beta-s0"
    assert [(s["from"], s["to"]) for s in result.segments] == [(0, 2), (2, 4)]
    assert [r["step"] for r in reports] == [2, 4, 4] and reports[-1]["finished"] is True
    assert set(reports[-1]) >= {"mig", "dci.disentanglement"}
    assert weights_step(run_dir) == 4 and result.train_seconds > 0 and result.eval_seconds > 0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["steps"] == 4 and config["optimizer"]["cooldown_steps"] == 2
    record = json.loads((run_dir / "sweep_result.json").read_text())
    assert record["finished"] is True and record["scores"] == pytest.approx(result.scores)

    planned = load_config(run.config, ["steps=4", "optimizer.cooldown_steps=2", "evaluate=false",
                                       "num_threads=1", "checkpoint_every=4"])
    train(planned, tmp_path / "planned", progress=False)
    chunked, straight = load_file(run_dir / "model.safetensors"), load_file(tmp_path / "planned" / "model.safetensors")
    assert all(torch.equal(chunked[k], straight[k]) for k in straight)


@pytest.mark.slow
def test_a_finished_trial_is_read_back_not_retrained(tmp_path):
    spec = load_sweep(_write_sweep(tmp_path), REPO)
    trial = _only_trial(spec)
    first = train_and_score(trial, spec, tmp_path / "out", eval_overrides=EVAL)
    weights = tmp_path / "out" / "beta-s0" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    reports: list[dict] = []
    again = train_and_score(trial, spec, tmp_path / "out", eval_overrides=EVAL, report=reports.append)
    assert weights.stat().st_mtime_ns == stamp
    assert again.scores == pytest.approx(first.scores)
    # read back with the timings measured when it was trained
    assert again.train_seconds == first.train_seconds is not None and reports[0]["read_back"] is True
    # a longer budget continues it from its checkpoint rather than starting again
    longer = dataclasses.replace(spec, steps=6)
    more = train_and_score(trial, longer, tmp_path / "out", eval_overrides=EVAL)
    assert [(s["from"], s["to"]) for s in more.segments] == [(0, 4), (4, 6)] and weights_step(weights.parent) == 6
    # a run directory trained with another config is not read back as this sweep's
    other = dataclasses.replace(trial, run=dataclasses.replace(trial.run, overrides=("objective.beta=9",)))
    with pytest.raises(ConfigError, match="was trained with objective"):
        train_and_score(other, longer, tmp_path / "out", eval_overrides=EVAL)


def test_train_only_trains_without_ray_or_measuring_and_the_plain_sweep_then_scores_those_weights(tmp_path, capsys):
    from latentdial.cli import main as cli_main

    path = write_edit_sweep(tmp_path)
    out = tmp_path / "out"
    assert cli_main(["sweep", str(path), "--out", str(out), "--root", str(REPO), "--train-only", "--quiet"]) == 0
    assert "semi-s0: step 4 of 4" in capsys.readouterr().out
    run_dir = out / "semi-s0"
    weights = run_dir / "model.safetensors"
    assert weights_step(run_dir) == 4
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "edits.json").exists()
    record = json.loads((run_dir / "sweep_result.json").read_text())
    assert record["finished"] is False and [(s["from"], s["to"]) for s in record["segments"]] == [(0, 4)]
    stamp = weights.stat().st_mtime_ns

    spec = load_sweep(path, REPO)
    scored = train_and_score(spec.trials()[0], spec, out, eval_overrides=EVAL)
    assert weights.stat().st_mtime_ns == stamp  # scored, not trained again
    assert [(s["from"], s["to"]) for s in scored.segments] == [(0, 4)]
    assert "mig" in scored.scores and "edit.shape" in scored.scores and (run_dir / "edits.json").is_file()


def test_train_only_stops_at_its_time_limit_and_says_the_trials_are_unfinished(tmp_path, capsys):
    from latentdial.cli import main as cli_main

    path = _write_sweep(tmp_path)
    out = tmp_path / "out"
    assert cli_main(["sweep", str(path), "--out", str(out), "--root", str(REPO), "--train-only",
                     "--time-limit-s", "1e-9", "--quiet"]) == 1
    assert "stopped before their budget" in capsys.readouterr().err
    assert all(weights_step(out / name) != 4 for name in ("beta-s0", "tc-s0"))


@pytest.mark.slow
def test_a_finished_trial_whose_metrics_lack_a_rank_by_key_is_evaluated_again_not_retrained(tmp_path):
    spec = load_sweep(_write_sweep(tmp_path), REPO)
    trial = _only_trial(spec)
    train_and_score(trial, spec, tmp_path / "out", eval_overrides=EVAL)
    weights, metrics = tmp_path / "out" / "beta-s0" / "model.safetensors", tmp_path / "out" / "beta-s0" / "metrics.json"
    stamp = weights.stat().st_mtime_ns
    old = json.loads(metrics.read_text())
    metrics.write_text(json.dumps({k: v for k, v in old.items() if k != "mig"}))  # scored before mig ranked

    result = train_and_score(trial, spec, tmp_path / "out", eval_overrides=EVAL)
    assert weights.stat().st_mtime_ns == stamp
    assert json.loads(metrics.read_text())["mig"] == pytest.approx(old["mig"]) == pytest.approx(result.scores["mig"])


@pytest.mark.slow
def test_a_trial_with_edits_is_exported_judged_through_a_server_and_read_back_without_redoing_them(tmp_path):
    spec = load_sweep(write_edit_sweep(tmp_path), REPO)
    (trial,) = spec.trials()
    out = tmp_path / "out"
    result = train_and_score(trial, spec, out, eval_overrides=EVAL)
    run_dir = out / "semi-s0"
    factors = ["shape", "scale", "orientation", "pos_x", "pos_y"]
    assert list(result.scores) == ["mig", *(f"edit.{f}" for f in factors), *(f"readback.{f}" for f in factors),
                                   "readback.all"]
    assert all(0.0 <= v <= 1.0 for k, v in result.scores.items() if k != "mig")
    # the figures are evaluate-edits' own report, of the run exported to <run>/model/1 (fp32 ONNX only)
    report = json.loads((run_dir / "edits.json").read_text())
    assert report["num"] == 8 and report["model"]["name"] == "model" and report["model"]["version"] == "1"
    assert result.scores["edit.shape"] == report["factors"]["shape"]["success"]
    assert result.scores["readback.pos_x"] == report["readback"]["pos_x"]
    assert (run_dir / "edits.png").read_bytes()[:4] == b"\x89PNG"
    manifest = json.loads((run_dir / "model" / "1" / "manifest.json").read_text())
    assert sorted(f["path"] for f in manifest["files"]) == ["decoder.onnx", "decoder.raw.onnx", "encoder.onnx",
                                                             "encoder.raw.onnx"]  # the graph choice keeps the raw export
    assert {f["precision"] for f in manifest["files"]} == {"fp32"}
    record = json.loads((run_dir / "sweep_result.json").read_text())
    assert record["edits"]["asked"] == {"num": 8, "seed": 0, "reader": None} and record["metrics_preset"] == "fast"
    assert result.edit_seconds == record["edits"]["seconds"] > record["edits"]["export_seconds"] > 0

    # the results: sweep.json and the table carry the edit and read-back columns
    write_results(out, spec, collect_results(spec, out))
    table = (out / "sweep.md").read_text()
    assert ("| rank | run | objective | seeds | mig | score | edit.shape | edit.scale | edit.orientation | edit.pos_x "
            "| edit.pos_y | readback.shape |") in table and "| readback.all |" in table
    assert "share of 8 edits of factor F" in table
    row = next(line for line in table.splitlines() if "semi_supervised" in line)
    assert f"{result.scores['edit.pos_y']:.3f}" in row and f"{result.scores['readback.all']:.3f}" in row
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["edits"] == {"num": 8, "seed": 0, "reader": None} and saved["metrics_preset"] == "fast"
    assert saved["runs"][0]["scores"]["edit.orientation"] == result.scores["edit.orientation"]

    # run again: read back, nothing trained, scored, exported or judged again
    files = [run_dir / "model.safetensors", run_dir / "metrics.json", run_dir / "edits.json",
             run_dir / "model" / "1" / "encoder.onnx"]
    stamps = [f.stat().st_mtime_ns for f in files]
    reports: list[dict] = []
    again = train_and_score(trial, spec, out, eval_overrides=EVAL, report=reports.append)
    assert [f.stat().st_mtime_ns for f in files] == stamps and reports[-1]["read_back"] is True
    assert again.scores == result.scores and again.edit_seconds == result.edit_seconds

    # edits that were never written (a session killed while judging): judged again from the kept
    # export, the weights and metrics untouched
    (run_dir / "edits.json").unlink()
    redone = train_and_score(trial, spec, out, eval_overrides=EVAL)
    assert [f.stat().st_mtime_ns for f in files[:2] + files[3:]] == stamps[:2] + stamps[3:]
    assert redone.scores == result.scores  # the same sources and targets (seed 0), the same model

    # other edits asked (--edits 4): judged again; another metrics preset: scored again, edits kept
    fewer = dataclasses.replace(spec, edits=EditSpec(num=4))
    train_and_score(trial, fewer, out, eval_overrides=EVAL)
    assert json.loads((run_dir / "edits.json").read_text())["num"] == 4
    edits_stamp = (run_dir / "edits.json").stat().st_mtime_ns
    train_and_score(trial, dataclasses.replace(fewer, metrics_preset="reference"), out, eval_overrides=EVAL)
    assert (run_dir / "edits.json").stat().st_mtime_ns == edits_stamp
    assert (run_dir / "metrics.json").stat().st_mtime_ns != stamps[1]
    assert json.loads((run_dir / "sweep_result.json").read_text())["metrics_preset"] == "reference"
    assert (run_dir / "model.safetensors").stat().st_mtime_ns == stamps[0]


# -- ranking, table, plot --------------------------------------------------------------------------


def _result(name: str, seed: int, params: dict | None = None, run: str = "", **scores: float) -> RunResult:
    return RunResult(name, seed, "", "beta_vae", [], 1, None, None, scores, run=run, params=params or {})


@pytest.mark.slow
def test_with_every_chunk_each_chunk_ends_weights_are_judged_once_and_shown_against_the_step(tmp_path):
    path = write_edit_sweep(tmp_path, extra="chunks = [2]")
    path.write_text(path.read_text().replace("num = 8\n", "num = 8\nevery_chunk = true\n"))
    spec = load_sweep(path, REPO)
    assert spec.edits == EditSpec(num=8, every_chunk=True)
    assert spec.edits.asked()["every_chunk"] is True and "every_chunk" not in EditSpec(num=8).asked()
    (trial,) = spec.trials()
    out = tmp_path / "out"
    result = train_and_score(trial, spec, out, eval_overrides=EVAL)
    run_dir = out / "semi-s0"
    report = json.loads((run_dir / "chunk-edits" / "2" / "edits.json").read_text())
    assert report["num"] == 8 and (run_dir / "chunk-edits" / "2" / "edits.png").is_file()
    assert not (run_dir / "chunk-edits" / "2" / "model").exists()  # the chunk's export is not kept
    assert list(result.chunk_edits) == ["2"]
    assert result.chunk_edits["2"]["edit.scale"] == report["factors"]["scale"]["success"]
    assert result.chunk_edits["2"]["readback.all"] == report["readback"]["all"]
    # a chunk end is judged once: read back, not judged again
    stamp = (run_dir / "chunk-edits" / "2" / "edits.json").stat().st_mtime_ns
    assert train_and_score(trial, spec, out, eval_overrides=EVAL).chunk_edits == result.chunk_edits
    assert (run_dir / "chunk-edits" / "2" / "edits.json").stat().st_mtime_ns == stamp

    write_results(out, spec, [result])
    assert (out / "sweep_chunks.png").read_bytes()[:4] == b"\x89PNG"
    table = (out / "sweep.md").read_text()
    assert "Edits at every chunk end" in table
    assert f"| semi-s0 | 2 | {result.chunk_edits['2']['edit.shape']:.3f} |" in table
    assert f"| semi-s0 | 4 | {result.scores['edit.shape']:.3f} |" in table


def test_rank_puts_a_run_missing_a_metric_last_and_averages_seeds():
    ranked = rank([_result("a", 0, mig=0.2), _result("a", 1, mig=0.4), _result("b", 0, sap=0.9),
                   _result("c", 0, mig=0.25)], ["mig"])
    assert [r["name"] for r in ranked] == ["a", "c", "b"]
    assert ranked[0]["mean"]["mig"] == pytest.approx(0.3) and ranked[0]["seeds"] == [0, 1]
    assert ranked[0]["std"]["mig"] == pytest.approx(0.1414, abs=1e-4)
    table = markdown_table(ranked, ["mig"], 1)
    assert "| **1** | **a** | **beta_vae** | **0,1** | **0.300 ± 0.141** | **0.300** |" in table
    assert "| 3 | b | beta_vae | 0 | — | — |" in table


def test_edit_columns_follow_the_score_edits_first_with_the_seeds_spread_and_a_dash_where_none():
    results = [_result("a", 0, mig=0.2, **{"edit.shape": 0.5, "edit.scale": 0.9, "readback.shape": 1.0}),
               _result("a", 1, mig=0.4, **{"edit.shape": 0.7, "readback.shape": 0.8, "edit.scale": 0.9}),
               _result("b", 0, mig=0.1)]
    assert edit_columns(results, ["mig"]) == ["edit.shape", "edit.scale", "readback.shape"]
    assert edit_columns(results, ["mig", "edit.shape"]) == ["edit.scale", "readback.shape"]
    columns = edit_columns(results)
    table = markdown_table(rank(results, ["mig"]), ["mig"], 1, extra=columns, edits=EditSpec(num=1000))
    assert "| rank | run | objective | seeds | mig | score | edit.shape | edit.scale | readback.shape |" in table
    assert "|---|---|---|---|---:|---:|---:|---:|---:|" in table and "share of 1,000 edits of factor F" in table
    assert ("| **1** | **a** | **beta_vae** | **0,1** | **0.300 ± 0.141** | **0.300** | **0.600 ± 0.141** "
            "| **0.900 ± 0.000** | **0.900 ± 0.141** |") in table
    assert "| 2 | b | beta_vae | 0 | 0.100 | 0.100 | — | — | — |" in table
    assert markdown_table(rank(results, ["mig"]), ["mig"], 1).count("edit.") == 0  # no columns unless asked


def _label_results() -> list[RunResult]:
    out = []
    for run, offset in (("dsprites", 0.0), ("color", 0.1)):
        for n, base in ((100, 0.2), (1000, 0.4), (0, 0.6)):
            for seed in (0, 1, 2):
                out.append(_result(f"{run}-num_labelled={n}", seed, {"objective.num_labelled": n}, run,
                                   mig=base + offset + 0.01 * seed))
    return out


def test_the_table_has_a_column_per_grid_key_and_the_plot_one_line_per_run_with_the_seeds_spread(tmp_path):
    results = _label_results()
    table = markdown_table(rank(results, ["mig"]), ["mig"], 6000, ["objective.num_labelled"])
    assert "| rank | run | num_labelled | objective | seeds | mig | score |" in table
    assert "| **1** | **color** | **0** | **beta_vae** | **0,1,2** | **0.710 ± 0.010** | **0.710** |" in table

    series = line_series(results, "objective.num_labelled", "mig", [100, 1000, 10000, 0])
    assert list(series) == ["dsprites", "color"]
    assert [(x, round(m, 3), round(s, 3), n) for x, m, s, n in series["dsprites"]] == [
        (100, 0.21, 0.01, 3), (1000, 0.41, 0.01, 3), (0, 0.61, 0.01, 3)]

    spec = SweepSpec(runs=(load_sweep(_write_sweep(tmp_path), REPO).runs[0],), steps=1, rank_by=("mig",),
                     grid=(("objective.num_labelled", (100, 1000, 10000, 0)),))
    spec = dataclasses.replace(spec, plot=dataclasses.replace(spec.plot, log_x=True, zero_label="all"))
    assert line_plot(results, spec, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not line_plot(results, dataclasses.replace(spec, grid=()), tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
    # the legend says how many seeds each line averages, as a range while a study is part-way through
    assert line_label("dsprites", [3, 3, 3]) == "dsprites (3 seeds)" and line_label("color", [1]) == "color (1 seed)"
    assert line_label("dsprites", [2, 2, 1, 1]) == "dsprites (1-2 seeds)"


# -- the command, with its own local Ray ------------------------------------------------------------------


def test_cli_preset_and_edits_override_the_sweep_file(tmp_path, monkeypatch, capsys):
    import latentdial.training.sweep as sweep

    asked: list[SweepSpec] = []
    monkeypatch.setattr(sweep, "run_sweep", lambda spec, out, **kwargs: asked.append(spec) or [])
    monkeypatch.chdir(REPO)
    study, plain = "configs/sweep/label_study.toml", "configs/sweep/dsprites.toml"
    out = ["--out", str(tmp_path / "o"), "--quiet"]
    assert cli_main(["sweep", study, *out, "--edits", "20", "--preset", "fast"]) == 0
    assert asked[-1].edits == EditSpec(num=20) and asked[-1].metrics_preset == "fast"
    assert cli_main(["sweep", plain, *out, "--edits", "5"]) == 0  # turns them on
    assert asked[-1].edits == EditSpec(num=5) and asked[-1].metrics_preset == "fast"
    assert cli_main(["sweep", study, *out, "--edits", "0", "--plot-metric", "dci.disentanglement"]) == 0
    assert asked[-1].edits is None and asked[-1].metrics_preset == "reference"
    # the study plots an edit column: turning edits off alone is refused, saying what to do
    assert cli_main(["sweep", study, *out, "--edits", "0"]) == 2
    assert "--plot-metric" in capsys.readouterr().err and len(asked) == 3


def test_cli_grid_runs_part_of_a_study_as_the_studys_own_trials(tmp_path, monkeypatch, capsys):
    import latentdial.training.sweep as sweep

    asked: list[SweepSpec] = []
    monkeypatch.setattr(sweep, "run_sweep", lambda spec, out, **kwargs: asked.append(spec) or [])
    monkeypatch.chdir(REPO)
    study = "configs/sweep/label_study.toml"
    whole = load_sweep(REPO / study, REPO)
    out = ["--out", str(tmp_path / "o"), "--quiet"]
    assert cli_main(["sweep", study, *out, "--grid", "objective.num_labelled=[10000, 0]"]) == 0
    part = asked[-1]
    assert part.grid == (("objective.num_labelled", (10000, 0)),) and part.seeds == whole.seeds
    # the same trials as the whole study's: names and ledger entries agree, so the ledger is shared
    assert {t.dir_name for t in part.trials()} < {t.dir_name for t in whole.trials()}
    for t in part.trials():
        same = whole.trial(t.run.name, t.seed, dict(t.params))
        assert sweep.ledger_key(t, part) == sweep.ledger_key(same, whole)
    assert cli_main(["sweep", study, *out, "--grid", "objective.num_labelled=100"]) == 0
    assert asked[-1].grid == (("objective.num_labelled", (100,)),)
    # refused before any work, saying what the grid has or where the seeds go
    for bad, says in (("objective.beta=[1.0]", "not a grid key of this sweep; its grid has objective.num_labelled"),
                      ("seed=[1]", "--seeds"), ("objective.num_labelled=[]", "has no values"),
                      ("num_labelled", "must look like key=value")):
        assert cli_main(["sweep", study, *out, "--grid", bad]) == 2
        assert says in capsys.readouterr().err
    assert len(asked) == 2


def _ray_session_processes() -> dict[str, bytes]:
    """pid -> command line of every process of a Ray session that the sweep command starts."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"latentdial-ray-" in cmdline:
            found[pid] = cmdline.replace(b"\0", b" ")[:200]
    return found


@pytest.mark.slow
def test_cli_runs_a_sweep_on_a_local_ray_it_starts_and_stops(tmp_path, capsys, monkeypatch):
    import ray

    if ray.is_initialized():
        pytest.skip("Ray is already running in this process")
    monkeypatch.chdir(REPO)
    before = _ray_session_processes()  # another Ray on this machine (a study running) is not ours
    ray_results = Path.home() / "ray_results"  # Tune's default home for its records
    had_ray_results = ray_results.exists()
    path = _write_sweep(tmp_path, steps=2)
    code = cli_main(["sweep", str(path), "--out", str(tmp_path / "out"), "--only", "beta", "--quiet",
                     "--num-train", "200", "--num-test", "100"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "**beta**" in printed and "best: beta" in printed
    assert (tmp_path / "out" / "beta-s0" / "sweep_result.json").is_file()
    assert list((tmp_path / "out" / "tune").glob("*/beta-s0"))  # Tune's records under --out
    assert ray_results.exists() == had_ray_results
    # the command's Ray is gone: not connected, no process left of its session
    assert not ray.is_initialized()
    leftovers = {pid: cmd for pid, cmd in _ray_session_processes().items() if pid not in before}
    assert not leftovers
    assert cli_main(["sweep", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o")]) == 2
