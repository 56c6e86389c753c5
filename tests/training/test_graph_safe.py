"""Graph-safe objectives: a training step that a CUDA graph can capture.

A CUDA graph replays kernels; it cannot wait for the device (``.item()``, ``int(t)``, a
boolean-mask index whose size depends on the data) nor copy fresh host data in. These
rules are checked here on CPU by recording every ATen call of a loss, so the capture on a
GPU host (training/graphed_step.py) does not meet a surprise there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from latentdial.training.config import TrainConfig
from latentdial.training.data import get_dataset
from latentdial.training.model import ModelConfig, build_model
from latentdial.training.objectives import OBJECTIVES, get_objective
from latentdial.training.objectives.base import stack_terms
from latentdial.training.objectives.semi_supervised import circular_loss

#: ATen calls that wait for the device or bring host data into the step.
HOST_SYNC = {"aten._local_scalar_dense.default", "aten.nonzero.default", "aten.masked_select.default",
             "aten.lift_fresh.default", "aten.lift_fresh_copy.default", "aten.item.default"}


class _Recorder(TorchDispatchMode):
    """Records every ATen call, and flags boolean-mask indexing (a data-dependent shape)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        if name == "aten.index.Tensor" and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else [])
        ):
            name = "aten.index.Tensor[bool mask]"
        self.calls.append(name)
        return func(*args, **(kwargs or {}))


def _batch(cls, objective, n: int = 8):
    rng = np.random.default_rng(0)
    dsprites = get_dataset("dsprites")
    images = torch.from_numpy(dsprites.sample_observations(n, rng))
    if cls.requires_pairs:
        return images, torch.from_numpy(dsprites.sample_observations(n, rng))
    if cls.requires_labels:
        objective.attach_dataset(dsprites)
        labels = torch.from_numpy(dsprites.sample_factors(n, rng))
        labels[: n // 2] = -1  # the stream's layout: the unlabelled half first, then the labelled pool's draws
        return images, labels
    return images


def _objective(cls, **config):
    if cls.requires_labels:  # every dSprites factor named: orientation is a (cos, sin) pair
        return cls(build_model(ModelConfig(latent_dim=8)), cls.Config(factors=[], **config))
    return cls(build_model(ModelConfig(latent_dim=6)), cls.Config(**config))


#: graph-safe objectives, and options of theirs that add work to the step
GRAPH_SAFE = [*((n, {}) for n in sorted(n for n, c in OBJECTIVES.items() if c.graph_safe)),
              ("semi_supervised", {"edit_cycle": 1.0}),
              ("semi_supervised", {"unlabelled_codes": "pseudo",
                                   "views": {"shift": ["shape"], "rot90": ["shape"], "flip": ["shape"]},
                                   "views_angle": "orientation", "pseudo_turns": True,
                                   "pseudo_circular": "read", "views_decode": 0.5})]


@pytest.mark.parametrize(("name", "config"), GRAPH_SAFE, ids=[f"{n}{'+' if c else ''}{','.join(c)}" for n, c in GRAPH_SAFE])
def test_a_graph_safe_loss_and_its_backward_never_wait_for_the_device(name, config):
    torch.manual_seed(0)
    cls = get_objective(name)
    objective = _objective(cls, **config)
    batch = _batch(cls, objective)
    objective.loss_terms(batch, step=0)  # the first call may cache device tables (warm-up does it)
    with _Recorder() as rec:
        loss, terms = objective.loss_terms(batch, step=1)
        loss.backward()
    assert rec.calls, "nothing was recorded"
    assert sorted(set(rec.calls) & (HOST_SYNC | {"aten.index.Tensor[bool mask]"})) == []
    assert all(t.shape == () for t in terms.values())


def test_the_recorder_catches_a_sync_a_host_copy_and_a_mask_index():
    x = torch.randn(4, 3)
    with _Recorder() as rec:
        int(x.max())
        x[:, [0, 1]]
        x[x > 0]
    assert {"aten._local_scalar_dense.default", "aten.lift_fresh.default", "aten.index.Tensor[bool mask]"} <= set(
        rec.calls
    )


@pytest.mark.parametrize("name", ["annealed_vae", "factor_vae", "infogan_cr"])
def test_step_dependent_and_two_optimizer_objectives_are_trained_eagerly(name):
    assert get_objective(name).graph_safe is False


def test_circular_loss_with_a_host_bound_on_the_order_equals_the_one_read_from_the_device():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(32, 2, generator=g)
    theta = torch.rand(32, generator=g) * 2 * torch.pi
    order = torch.randint(1, 5, (32,), generator=g)
    torch.testing.assert_close(circular_loss(u, theta, order, max_order=4), circular_loss(u, theta, order))


def test_the_graphed_step_refuses_what_it_cannot_capture():
    from latentdial.training.graphed_step import GraphedStep

    cpu = get_objective("beta_vae")(build_model(ModelConfig(latent_dim=4)))
    adam = torch.optim.Adam(cpu.parameters(), capturable=True)
    with pytest.raises(ValueError, match="CUDA device"):
        GraphedStep(cpu, adam, "cpu")
    with pytest.raises(ValueError, match="capturable=True"):
        GraphedStep(cpu, torch.optim.Adam(cpu.parameters()), "cuda")
    annealed = get_objective("annealed_vae")(build_model(ModelConfig(latent_dim=4)))
    with pytest.raises(ValueError, match="not graph-safe"):
        GraphedStep(annealed, adam, "cuda")


def test_cuda_graph_is_on_by_default_and_can_be_turned_off_in_the_config():
    assert TrainConfig().cuda_graph is True
    assert TrainConfig.from_dict({"cuda_graph": False}).cuda_graph is False


class _CpuReplay:
    """Stands in for GraphedStep on CPU: the same eager step, handing back the (T,) terms
    tensor as a replayed graph does, so the trainer's deferred logging is what is tested."""

    def __init__(self, trainer, poison_at: int | None = None) -> None:
        self.trainer, self.poison_at, self.names = trainer, poison_at, []

    def run(self, batch, step):
        t = self.trainer
        loss, terms = t.objective.loss_terms(torch.from_numpy(batch), step)
        t.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t.optimizer.step()
        self.names = list(terms)
        out = stack_terms(terms)
        return out * float("nan") if step == self.poison_at else out

    def term_names(self):
        return self.names


def _smoke_trainer(tmp_path, name):
    from latentdial.training.config import load_config
    from latentdial.training.trainer import Trainer

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "smoke.toml",
                      ["steps=6", "log_every=3", "checkpoint_every=100", "num_threads=1"])
    return Trainer(cfg, tmp_path / name)


def test_a_replayed_step_logs_only_at_log_steps_and_trains_exactly_as_the_eager_step(tmp_path):
    eager = _smoke_trainer(tmp_path, "eager")  # each trainer seeds the global RNG as it is built
    eager.train(progress=False)
    replayed = _smoke_trainer(tmp_path, "replayed")
    replayed.graphed = _CpuReplay(replayed)
    replayed.train(progress=False)
    assert [r["step"] for r in replayed.rows] == [3, 6]
    assert replayed.rows == eager.rows
    for a, b in zip(eager.objective.state_dict().values(), replayed.objective.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_nan_in_a_replayed_step_stops_training_at_the_next_log_step_naming_the_term(tmp_path):
    from latentdial.training.trainer import TrainingError

    trainer = _smoke_trainer(tmp_path, "nan")
    trainer.graphed = _CpuReplay(trainer, poison_at=5)
    with pytest.raises(TrainingError, match="'loss' is nan at step 5"):
        trainer.train(progress=False)


def test_a_single_process_on_plain_cuda_keeps_the_current_device_and_a_rank_takes_its_own(monkeypatch):
    """`device = "cuda"` has no index: torch.cuda.set_device refuses that, so it is not called."""
    from latentdial.training import distributed

    chosen: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert distributed.init_distributed("cuda").device == "cuda" and chosen == []
    assert distributed.init_distributed("cuda:1").device == "cuda:1" and chosen == [torch.device("cuda:1")]


def test_a_checkpoint_of_a_graphed_gpu_run_resumes_on_cpu(tmp_path):
    """A graphed run's Adam is capturable, which CPU Adam refuses; resuming takes this run's setting."""
    trainer = _smoke_trainer(tmp_path, "gpu-like")
    for group in trainer.optimizer.param_groups:
        group["capturable"] = True  # as the optimizer of a CUDA-graph run is saved
    trainer.save_checkpoint()
    resumed = _smoke_trainer(tmp_path, "gpu-like")
    resumed.load_checkpoint(sorted((tmp_path / "gpu-like" / "checkpoints").glob("*.pt"))[-1])
    assert [g["capturable"] for g in resumed.optimizer.param_groups] == [False]
    resumed.train(progress=False)
    assert resumed.step == 6
