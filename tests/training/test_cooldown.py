"""An lr cooldown at the end of a run, and adding one to a run that is already under way."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from latentdial.training.config import ConfigError, OptimizerConfig, TrainConfig, load_config
from latentdial.training.trainer import Trainer, train

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "smoke.toml"


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def _smoke(*overrides: str) -> TrainConfig:
    return load_config(SMOKE, list(overrides))


def test_without_a_cooldown_the_lr_is_constant():
    opt = OptimizerConfig(lr=5e-4)
    assert {opt.lr_at(s, 100) for s in range(100)} == {5e-4}
    assert opt.cooldown_start(100) == 100


def test_the_cooldown_decays_linearly_over_the_last_steps_to_lr_final():
    opt = OptimizerConfig(lr=1e-3, cooldown_steps=4, lr_final=1e-4)
    lrs = [opt.lr_at(s, 10) for s in range(10)]
    assert lrs[:6] == [1e-3] * 6
    assert lrs[6:] == pytest.approx([7.75e-4, 5.5e-4, 3.25e-4, 1e-4])  # the last step runs at lr_final
    assert opt.cooldown_start(10) == 6


@pytest.mark.parametrize("kwargs", [{"lr": 0.0}, {"lr_final": 1.0}, {"lr_final": -1.0}, {"cooldown_steps": -1}])
def test_impossible_schedules_are_refused(kwargs):
    with pytest.raises(ConfigError):
        OptimizerConfig(**kwargs)


def test_a_cooldown_that_starts_at_or_after_the_checkpoint_agrees_with_the_run_so_far():
    before = OptimizerConfig(lr=5e-4)
    later = OptimizerConfig(lr=5e-4, cooldown_steps=400)
    assert later.agrees_before(before, 600, 1000, 300_000)  # cooldown starts at 600 = checkpoint
    assert not later.agrees_before(before, 601, 1000, 300_000)  # step 600 would have run at a lower lr
    assert not OptimizerConfig(lr=1e-4).agrees_before(before, 1, 1000, 1000)
    assert not OptimizerConfig(lr=5e-4, beta2=0.99).agrees_before(before, 1, 1000, 1000)
    # a cooldown already under way may be resumed only on the same line
    assert later.agrees_before(later, 800, 1000, 1000)
    assert not OptimizerConfig(lr=5e-4, cooldown_steps=500).agrees_before(later, 800, 1100, 1000)


def test_the_trainer_runs_each_step_at_its_scheduled_lr():
    cfg = _smoke("optimizer.cooldown_steps=3", "optimizer.lr_final=1e-4")
    trainer = Trainer(cfg, Path("unused"))
    seen = []
    for batch in trainer.stream.iterate(0, cfg.steps):
        trainer.train_step(batch)
        seen.append(trainer.optimizer.param_groups[0]["lr"])
    assert seen == pytest.approx([cfg.optimizer.lr_at(s, cfg.steps) for s in range(cfg.steps)])
    assert seen[-1] == pytest.approx(1e-4) and seen[0] == 1e-3


def test_adding_a_cooldown_on_resume_equals_a_run_planned_with_it(tmp_path):
    planned = train(_smoke("optimizer.cooldown_steps=3"), tmp_path / "planned", progress=False)
    part = train(_smoke("steps=3"), tmp_path / "part", progress=False)  # no cooldown, checkpoint at 3
    resumed = train(_smoke("optimizer.cooldown_steps=3"), part, resume=True, progress=False)
    a, b = load_file(str(planned / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    constant = load_file(str(train(_smoke(), tmp_path / "constant", progress=False) / "model.safetensors"))
    assert not all(torch.equal(a[k], constant[k]) for k in a)  # the cooldown changed the last steps
    assert "Adam lr 0.001, decaying linearly to 0 over the last 3 steps" in (planned / "report.md").read_text()
    assert "decaying" not in (tmp_path / "constant" / "report.md").read_text()


def test_a_cooldown_reaching_back_before_the_checkpoint_is_refused_naming_the_way_out(tmp_path):
    part = train(_smoke("steps=3"), tmp_path / "part", progress=False)
    with pytest.raises(ConfigError, match="cooldown that starts at or after the checkpoint"):
        train(_smoke("optimizer.cooldown_steps=4"), part, resume=True, progress=False)
    with pytest.raises(ConfigError, match="optimizer was"):
        train(_smoke("optimizer.lr=5e-4"), part, resume=True, progress=False)
