"""`latentdial train`: configs, the run directory, resume, divergence and the report."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from latentdial.cli import main as cli_main
from latentdial.training import trainer as trainer_module
from latentdial.training.config import ConfigError, TrainConfig, load_config
from latentdial.training.data import get_dataset
from latentdial.training.objectives import OBJECTIVES
from latentdial.training.run_dir import load_run
from latentdial.training.trainer import Trainer, TrainingError, checkpoint_paths, train

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke.toml"


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def _smoke(*overrides: str) -> TrainConfig:
    return load_config(SMOKE, list(overrides))


# -- config ----------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    from latentdial.training.stargan.config import is_stargan_config, load_stargan_config

    if is_stargan_config(path):  # not an objective: the StarGAN family has a config of its own
        assert path.stem == "stargan" and load_stargan_config(path).steps >= 1
        return
    cfg = load_config(path)
    assert cfg.batch_size >= 1 and cfg.model.latent_dim >= 1
    if path.stem != "smoke":
        assert cfg.objective_name == path.stem
        assert cfg.optimizer.lr == 1e-4 and cfg.batch_size == 64 and cfg.model.latent_dim == 10


def test_overrides_are_typed_and_reach_the_objective_config():
    cfg = load_config(REPO / "configs" / "beta_vae.toml",
                      ["objective.beta=8", "steps=2000", "dataset.name=color_dsprites", "evaluate=false"])
    assert cfg.objective.beta == 8.0 and isinstance(cfg.objective.beta, float)
    assert cfg.steps == 2000 and cfg.evaluate is False
    assert cfg.dataset["name"] == "color_dsprites"


def test_unknown_keys_are_rejected_listing_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['gama'\].*gamma"):
        load_config(REPO / "configs" / "factor_vae.toml", ["objective.gama=10"])
    with pytest.raises(ConfigError, match="batch_size"):
        load_config(SMOKE, ["batchsize=3"])


def test_wrongly_typed_override_says_what_was_expected():
    with pytest.raises(ConfigError, match="steps: expected int"):
        load_config(SMOKE, ["steps=many"])
    with pytest.raises(ConfigError, match="unknown objective 'nope'"):
        load_config(SMOKE, ["objective.name=nope"])


def test_config_round_trips_through_its_dict():
    cfg = _smoke("objective.name=factor_vae", "objective.gamma=12")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


# -- training runs ---------------------------------------------------------------------
def test_smoke_run_writes_the_run_directory(tmp_path):
    out = train(_smoke(), tmp_path / "run", progress=False)
    for name in ("config.json", "model.safetensors", "loss_log.csv", "loss.png",
                 "reconstructions.png", "traversal.png", "report.md"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["objective"]["name"] == "beta_vae" and config["model"]["latent_dim"] == 4
    assert config["code_version"] and config["code_version"] != "unknown"
    run = load_run(out)
    assert run.weights_metadata["step"] == "6"
    assert run.model.encoder(torch.zeros(2, 1, 64, 64))[0].shape == (2, 4)
    lines = (out / "loss_log.csv").read_text().splitlines()
    assert lines[0].startswith("step,loss,recon,kl") and [ln.split(",")[0] for ln in lines[1:]] == ["2", "4", "6"]
    assert [p.name for p in checkpoint_paths(out)] == ["step_00000003.pt", "step_00000006.pt"]
    report = (out / "report.md").read_text()
    assert "beta_vae" in report and "![" in report and "Not evaluated" in report


def _extra(objective: str) -> list[str]:
    """Overrides that fit an objective into the smoke config (a small discriminator; 4 latents)."""
    return {
        "factor_vae": ["objective.discriminator_hidden=32", "objective.discriminator_layers=2"],
        "semi_supervised": ['objective.factors=["scale", "pos_x", "pos_y"]', "objective.num_labelled=20"],
        "infogan_cr": ["objective.num_codes=2", "objective.num_noise=2"],  # latent_dim 4 = codes + noise
    }.get(objective, [])


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_every_objective_trains_on_dsprites_to_a_run_directory_with_report(tmp_path, objective):
    extra = _extra(objective)
    out = train(_smoke(f"objective.name={objective}", *extra, "steps=2", "checkpoint_every=2"), tmp_path / "r", progress=False)
    header, *rows = (out / "loss_log.csv").read_text().splitlines()
    losses = [float(v) for v in rows[-1].split(",")[1:] if v]
    assert header.startswith("step,loss") and losses and np.isfinite(losses).all()
    assert objective in (out / "report.md").read_text() and (out / "model.safetensors").is_file()


@pytest.mark.parametrize("objective", ["beta_vae", "factor_vae", "semi_supervised"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, objective):
    extra = _extra(objective)
    full = train(_smoke(f"objective.name={objective}", *extra), tmp_path / "full", progress=False)
    part = train(_smoke(f"objective.name={objective}", *extra, "steps=3"), tmp_path / "part", progress=False)
    resumed = train(_smoke(f"objective.name={objective}", *extra), part, resume=True, progress=False)
    a, b = load_file(str(full / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ckpt_a = torch.load(checkpoint_paths(full)[-1], weights_only=False)["objective"]
    ckpt_b = torch.load(checkpoint_paths(resumed)[-1], weights_only=False)["objective"]
    assert all(torch.equal(ckpt_a[k], ckpt_b[k]) for k in ckpt_a)  # discriminator included
    # the interrupted run also logged its last step (3); every row of the full run is identical
    assert set((full / "loss_log.csv").read_text().splitlines()) <= set(
        (resumed / "loss_log.csv").read_text().splitlines())


def test_time_limit_stops_at_a_checkpoint_and_resume_finishes_bit_for_bit(tmp_path, caplog):
    full = train(_smoke(), tmp_path / "full", progress=False)
    with caplog.at_level(logging.WARNING, logger="latentdial.train"):
        part = train(_smoke("time_limit_s=1e-9", "checkpoint_every=100"), tmp_path / "part", progress=False)
    assert [p.name for p in checkpoint_paths(part)] == ["step_00000002.pt"]  # the first log_every check
    assert "time limit" in caplog.text and "step 2 of 6" in caplog.text
    resumed = train(_smoke(), part, resume=True, progress=False)
    a, b = load_file(str(full / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_existing_run_is_not_overwritten_without_resume(tmp_path):
    out = train(_smoke("steps=3"), tmp_path / "run", progress=False)
    with pytest.raises(TrainingError, match="--resume"):
        train(_smoke("steps=3"), out, progress=False)
    with pytest.raises(TrainingError, match="no checkpoint"):
        train(_smoke(), tmp_path / "empty", resume=True, progress=False)


def test_a_dataset_whose_images_do_not_fit_the_model_is_refused_before_training(tmp_path):
    cfg = load_config(REPO / "configs" / "smoke.toml", ["dataset.name=color_dsprites"])  # 3 channels, model 1
    with pytest.raises(TrainingError, match=r"draws \(3, 64, 64\) images .* model takes \(1, 64, 64\)"):
        Trainer(cfg, tmp_path / "run")


def test_resume_with_a_different_objective_is_refused(tmp_path):
    out = train(_smoke("steps=3"), tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="'objective' was"):
        train(_smoke("objective.beta=1"), out, resume=True, progress=False)


class _NaNAfter:
    """dSprites whose batches turn to NaN from the ``bad``-th batch on (batches render in order)."""

    def __init__(self, bad: int) -> None:
        self._inner, self._calls, self._bad = get_dataset("dsprites"), 0, bad
        self.num_factors = self._inner.num_factors

    def sample_observations(self, num: int, rng: np.random.Generator) -> np.ndarray:
        x = self._inner.sample_observations(num, rng)
        self._calls += 1
        if self._calls > self._bad:
            x[:] = np.nan
        return x


def test_nan_loss_stops_training_naming_step_and_term_and_keeps_last_good_checkpoint(tmp_path):
    with pytest.raises(TrainingError, match=r"'(recon|loss)' is nan at step 4.*step_00000003\.pt"):
        train(_smoke(), tmp_path / "run", dataset=_NaNAfter(4), progress=False)
    assert [p.name for p in checkpoint_paths(tmp_path / "run")] == ["step_00000003.pt"]
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_labelled_run_calls_the_evaluation_and_labels_traversal_rows(tmp_path, monkeypatch):
    calls = []

    def evaluate_run(run_dir, **_):
        from latentdial.factor_card import FactorCard, FactorEntry

        calls.append(Path(run_dir))
        FactorCard([FactorEntry("scale", "continuous", [1]), FactorEntry("shape", "categorical", [3])],
                   latent_dim=4).save(Path(run_dir) / "factor_card.json")
        (Path(run_dir) / "metrics.json").write_text(json.dumps({"mig": 0.25}))

    monkeypatch.setattr(trainer_module, "evaluate_run", evaluate_run)
    out = train(_smoke("evaluate=true"), tmp_path / "run", progress=False)
    assert calls == [out]
    report = (out / "report.md").read_text()
    assert "| mig | 0.25 |" in report and "| scale | 1 |" in report

    from latentdial.training.figures import traversal_labels

    assert traversal_labels(4, out / "factor_card.json") == ["z0", "z1 scale", "z2", "z3 shape"]
    assert traversal_labels(4, None) == ["z0", "z1", "z2", "z3"]


def test_ada_gvae_trains_on_pairs(tmp_path):
    out = train(_smoke("objective.name=ada_gvae", "objective.beta=1", "steps=2"), tmp_path / "run", progress=False)
    assert "shared_dims" in (out / "loss_log.csv").read_text().splitlines()[0]


def test_ada_gvae_pair_k_fixes_how_many_factors_differ_within_a_pair(tmp_path):
    fixed = Trainer(_smoke("objective.name=ada_gvae", "objective.pair_k=1"), tmp_path / "fixed")
    drawn = Trainer(_smoke("objective.name=ada_gvae"), tmp_path / "drawn")
    assert fixed.stream.k == 1
    assert drawn.stream.k is None  # the paper's k = rnd: drawn per pair from 1 .. F-1


@pytest.mark.parametrize("path", sorted([*(REPO / "configs" / "shipped").glob("*.toml"),
                                          *(REPO / "configs" / "families").glob("*.toml")]), ids=lambda p: p.name)
def test_shipped_model_configs_load(path):
    from latentdial.training.stargan.config import is_stargan_config, load_stargan_config

    if is_stargan_config(path):  # the editor: its dataset's semi-supervised factors, on 1,000 labels
        editor = load_stargan_config(path)
        vae = load_config(REPO / "configs" / "shipped" / f"{editor.dataset['name']}.toml")
        assert editor.objective.factors == vae.objective.factors and editor.objective.num_labelled == 1000
        assert editor.model.channels == vae.model.channels
        return
    cfg = load_config(path)
    assert cfg.batch_size == 64
    if cfg.objective_name == "semi_supervised":  # every factor named, labelled on every image; no free dims
        from latentdial.training.objectives.semi_supervised import factor_codes

        dataset = get_dataset(cfg.dataset["name"])
        codes = factor_codes(dataset, cfg.objective.factors, cfg.model.latent_dim)
        assert [c.name for c in codes] == list(dataset.factor_names) and cfg.objective.num_labelled == 0
        assert sum(len(c.dims) for c in codes) == cfg.model.latent_dim
    else:
        assert cfg.model.latent_dim == 10


def test_cli_trains_and_reports_config_errors(tmp_path, capsys):
    assert cli_main(["train", "--config", str(SMOKE), "--out", str(tmp_path / "cli"),
                     "--set", "steps=2", "--no-progress"]) == 0
    assert (tmp_path / "cli" / "model.safetensors").is_file()
    assert cli_main(["train", "--config", str(SMOKE), "--out", str(tmp_path / "x"), "--set", "objective.bta=2"]) == 2
    assert "valid keys" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--help", "--list"])
def test_train_help_and_list_name_every_registered_objective_dataset_and_architecture(flag, capsys):
    from latentdial.training.data import DATASETS
    from latentdial.training.model import ARCHITECTURES

    with pytest.raises(SystemExit) as e:
        cli_main(["train", flag])  # --list needs no --out
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in (*OBJECTIVES, *DATASETS, *ARCHITECTURES):
        assert f"\n  {name} " in out, name
    assert re.search(r"\n  beta_vae +beta-VAE +beta=4.0\n", out)
    assert re.search(r"\n  folder +path, channels=1", out)  # path has no default: required
    assert "MISSING" not in out  # fields with a default factory show the default it makes


def test_the_train_listing_is_read_from_the_registries(monkeypatch, capsys):
    from latentdial.training.data import DATASETS

    monkeypatch.setitem(OBJECTIVES, "my_objective", OBJECTIVES["beta_vae"])
    monkeypatch.setitem(DATASETS, "my_data", DATASETS["dsprites"])
    with pytest.raises(SystemExit):
        cli_main(["train", "--list"])
    out = capsys.readouterr().out
    assert "\n  my_objective " in out and "\n  my_data " in out


def test_traversal_has_one_row_per_latent_dimension_and_grids_check_their_labels():
    from latentdial.training.figures import PAD, image_grid, traversal_figure
    from latentdial.training.model import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(latent_dim=3, channels=3))
    fig = traversal_figure(model, np.zeros((3, 64, 64), np.float32), num_steps=5)
    assert fig.size[1] == 3 * (64 + PAD) + PAD  # 3 rows
    grid = image_grid(np.zeros((2, 4, 1, 8, 8), np.float32))  # black tiles on a white canvas
    assert grid.size == (4 * (8 + PAD) + PAD, 2 * (8 + PAD) + PAD)
    pixels = np.asarray(grid)
    assert pixels[PAD, PAD].tolist() == [0, 0, 0] and pixels[0, 0].tolist() == [255, 255, 255]
    with pytest.raises(ValueError, match="2 row labels for 3 rows"):
        image_grid(np.zeros((3, 1, 1, 8, 8), np.float32), ["a", "b"])
