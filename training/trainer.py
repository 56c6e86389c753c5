"""The training loop: objective + optimizer(s) + batch stream -> a run directory.

One step: ``loss, logs = objective(batch, step)``; Adam step on the VAE; then the
objective's auxiliary step (FactorVAE's discriminator). Every ``checkpoint_every`` steps
a checkpoint (model + discriminator, optimizers, step, every rank's torch RNG state, the
loss log) goes to ``checkpoints/step_XXXXXXXX.pt``; the last ``keep_checkpoints`` stay.
Batches are a pure function of (seed, rank, step), so ``resume=True`` reproduces an
uninterrupted run bit for bit. On one CUDA device a graph-safe objective's step is replayed
from a CUDA graph (:mod:`latentdial.training.graphed_step`; ``cuda_graph = false`` turns it
off), and its terms are read only at log steps. At the end rank 0 writes the run directory of
:mod:`latentdial.training.run_dir` (see :func:`finish_run`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from latentdial.provenance import code_version
from latentdial.training.augment import AugmentConfig, build_encoder_view
from latentdial.training.config import ConfigError, OptimizerConfig, TrainConfig
from latentdial.training.distributed import (
    DistContext,
    any_rank,
    barrier,
    gather_objects,
    init_distributed,
    shutdown,
    wrap_objective,
)
from latentdial.training.evaluate import evaluate_run, resolve_dataset
from latentdial.training.graphed_step import GraphedStep
from latentdial.training.model import VAEModel, build_model
from latentdial.training.objectives import NonFiniteLossError, VAEObjective, get_objective
from latentdial.training.objectives.base import check_finite
from latentdial.training.run_dir import (
    CHECKPOINTS,
    CONFIG,
    FACTOR_CARD,
    WEIGHTS,
    checkpoint_paths,
    initial_weights,
    save_weights,
    write_checkpoint,
    write_loss_log,
)

log = logging.getLogger("latentdial.train")


class TrainingError(RuntimeError):
    """Training cannot start or continue; the message says what to do."""


def param_checksum(module: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer (sorted by name): equal across ranks after DDP."""
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _to_device(batch: Any, device: str) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    if isinstance(batch, tuple):
        return tuple(torch.from_numpy(b).to(device) for b in batch)  # type: ignore[return-value]
    return torch.from_numpy(batch).to(device)


class Trainer:
    """Owns the objective, the optimizer and the loss log of one run."""

    def __init__(self, cfg: TrainConfig, out: Path, *, dataset: Any = None, ctx: DistContext | None = None) -> None:
        self.cfg, self.out = cfg, Path(out)
        self.ctx = ctx or DistContext(device=cfg.device)
        threads = cfg.num_threads or max(1, (os.cpu_count() or 1) // self.ctx.local_world_size)
        torch.set_num_threads(threads)
        self.dataset = resolve_dataset(cfg.dataset) if dataset is None else dataset
        want = (cfg.model.channels, cfg.model.image_size, cfg.model.image_size)
        drawn = getattr(self.dataset, "observation_shape", None)  # a stand-in in tests may not say
        if drawn is not None and tuple(drawn) != want:
            raise TrainingError(
                f"the dataset draws {tuple(drawn)} images (C, H, W) but the model takes "
                f"{want}: set model.channels / model.image_size to match, or the dataset's channels / image_size"
            )
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        obj_cls = get_objective(cfg.objective_name)
        model = build_model(cfg.model)
        if cfg.init_from:
            _start_from(model, Path(cfg.init_from), skip=tuple(cfg.init_skip))
        self.objective: VAEObjective = obj_cls(model, cfg.objective).to(self.ctx.device)
        if cfg.augment.families > 0 and not obj_cls.requires_labels:
            raise TrainingError(
                f"augment.families draws the encoder's view from each image's factors, but {cfg.objective_name} "
                "trains without labels; use an objective that reads them (semi_supervised)"
            )
        try:
            view = build_encoder_view(cfg.augment, cfg.model.image_size, self.dataset)
        except ValueError as e:
            raise TrainingError(str(e)) from None
        # on the training device: the families' outline bank is a buffer the view samples there
        self.objective.encoder_view = None if view is None else view.to(self.ctx.device)
        self.objective.attach_dataset(self.dataset)
        # the encoder's random views pick images by a data-dependent mask: not capturable
        use_graph = (cfg.cuda_graph and self.ctx.device.startswith("cuda") and self.ctx.world_size == 1
                     and obj_cls.graph_safe and not cfg.augment.enabled)
        # a captured Adam step reads its lr from a device tensor, so a cooldown can change it
        self._lr_tensor = use_graph and cfg.optimizer.cooldown_steps > 0
        self.optimizer = torch.optim.Adam(
            self.objective.vae_parameters(), lr=self._lr_value(cfg.optimizer.lr),
            betas=(cfg.optimizer.beta1, cfg.optimizer.beta2), eps=cfg.optimizer.eps,
            **({"capturable": True} if use_graph else {}),
        )
        self.net = wrap_objective(self.objective, self.ctx)
        self.graphed: GraphedStep | None = (
            GraphedStep(self.objective, self.optimizer, self.ctx.device) if use_graph else None
        )
        if self.ctx.rank > 0:  # different reparameterisation noise per rank
            torch.manual_seed(cfg.seed + 7919 * self.ctx.rank)
        from latentdial.training.data import BatchStream

        self.stream = BatchStream(
            self.dataset, cfg.batch_size, cfg.seed, pairs=obj_cls.requires_pairs,
            k=getattr(self.objective.config, "pair_k", 0) or None,
            labels=obj_cls.requires_labels, num_labelled=getattr(self.objective.config, "num_labelled", 0) or None,
            rank=self.ctx.rank, world_size=self.ctx.world_size,
        )
        self.step = 0
        self.rows: list[dict[str, float]] = []
        self.rank_checksums: list[str] = []

    # -- checkpoints ------------------------------------------------------------------
    def save_checkpoint(self) -> Path | None:
        """Write checkpoints/step_<step>.pt (rank 0) and prune old ones; every rank must call it."""
        rng = gather_objects(self._rng_state(), self.ctx)
        path = self.out / CHECKPOINTS / f"step_{self.step:08d}.pt"
        if self.ctx.is_main:
            state = {
                "step": self.step,
                "objective": self.objective.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "auxiliary": self.objective.auxiliary_state_dict(),
                "rng": rng,
                "rows": self.rows,
                "config": self.cfg.to_dict(),
            }
            write_checkpoint(self.out, path, state, self.cfg.keep_checkpoints)
            self.write_loss_log()
        barrier(self.ctx)
        return path

    def _rng_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"torch": torch.get_rng_state()}
        if self.ctx.device.startswith("cuda"):
            state["cuda"] = torch.cuda.get_rng_state()
        return state

    def load_checkpoint(self, path: Path) -> None:
        """Restore everything ``save_checkpoint`` wrote; the config must match but for ``steps``."""
        state = torch.load(path, map_location=self.ctx.device, weights_only=False)
        saved, now = state["config"], self.cfg.to_dict()
        saved = {"augment": AugmentConfig().to_dict(), "init_from": "", "init_skip": [], **saved}  # older runs
        for key in ("model", "objective", "dataset", "seed", "batch_size", "augment", "init_from", "init_skip"):
            if saved.get(key) != now.get(key):
                raise ConfigError(
                    f"cannot resume from {path}: '{key}' was {saved.get(key)!r}, now {now.get(key)!r}; "
                    f"resume with the run's own config (only steps and a later cooldown may change)"
                )
        saved_opt = OptimizerConfig(**saved["optimizer"])
        if not self.cfg.optimizer.agrees_before(saved_opt, int(state["step"]), self.cfg.steps, int(saved["steps"])):
            raise ConfigError(
                f"cannot resume from {path} at step {state['step']}: the optimizer was {saved['optimizer']!r} "
                f"over {saved['steps']} steps, now {now['optimizer']!r} over {self.cfg.steps}; only a cooldown "
                "that starts at or after the checkpoint may be added (optimizer.cooldown_steps)"
            )
        self.objective.load_state_dict(state["objective"])
        capturable = [g.get("capturable", False) for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state["optimizer"])
        for group, mine in zip(self.optimizer.param_groups, capturable, strict=True):
            if "capturable" in group:  # a GPU run's graphed Adam resumes on CPU (and back) as this run's Adam
                group["capturable"] = mine
            group["lr"] = self._lr_value(self.cfg.optimizer.lr)
        self.objective.load_auxiliary_state_dict(state["auxiliary"])
        self.step, self.rows = int(state["step"]), list(state["rows"])
        rng = state["rng"]
        if len(rng) != self.ctx.world_size:
            log.warning("checkpoint has RNG states of %d ranks, running %d: noise will differ",
                        len(rng), self.ctx.world_size)
        mine = rng[min(self.ctx.rank, len(rng) - 1)]
        torch.set_rng_state(mine["torch"].cpu())
        if "cuda" in mine and self.ctx.device.startswith("cuda"):
            torch.cuda.set_rng_state(mine["cuda"].cpu())

    def write_loss_log(self) -> None:
        write_loss_log(self.out, self.rows)

    # -- the loop -----------------------------------------------------------------------
    def train(self, *, progress: bool = True) -> None:
        """Run from ``self.step`` to ``cfg.steps``, or until ``cfg.time_limit_s`` is spent: then
        it stops at a checkpoint of the step reached (checked every ``log_every`` steps, on
        every rank alike), and ``--resume`` continues bit for bit."""
        cfg = self.cfg
        started = time.monotonic()
        remaining = cfg.steps - self.step
        if remaining <= 0:
            log.info("already at step %d of %d; nothing to train", self.step, cfg.steps)
            return
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not (progress and self.ctx.is_main),
                   desc=f"train {cfg.objective_name}", dynamic_ncols=True)
        self.objective.train()
        try:
            for batch in self.stream.iterate(self.step, remaining):
                log_now = (self.step + 1) % cfg.log_every == 0 or self.step + 1 == cfg.steps
                logs = self.train_step(batch, logs=log_now)
                bar.update(1)
                if log_now:
                    self.rows.append({"step": self.step, **logs})
                    bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items() if k in ("loss", "recon", "kl", "tc")})
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    self.save_checkpoint()
                elif self.step % cfg.log_every == 0 and self._out_of_time(started):
                    self.save_checkpoint()
                    log.warning("time limit of %.0f s reached at step %d of %d; resume with --resume",
                                cfg.time_limit_s, self.step, cfg.steps)
                    break
        finally:
            bar.close()

    def _out_of_time(self, started: float) -> bool:
        limit = self.cfg.time_limit_s
        return limit > 0 and any_rank(time.monotonic() - started > limit, self.ctx)

    def train_step(self, batch: Any, *, logs: bool = True) -> dict[str, float]:
        """One optimisation step on a numpy batch (or pair); advances ``self.step``.

        Returns the logged terms. A graphed step reads them (and checks them for NaN) only
        when ``logs`` is true, and returns {} otherwise; an eager step always has them.
        """
        self._set_lr(self.step)
        if self.graphed is not None:
            return self._graphed_step(batch, logs)
        step = self.step
        error: NonFiniteLossError | None = None
        try:
            loss, logs = self.net(_to_device(batch, self.ctx.device), step)
        except NonFiniteLossError as e:
            error = e
        if any_rank(error is not None, self.ctx):
            self._diverged(error or NonFiniteLossError(step, "loss (on another rank)", float("nan")))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        logs.update(self.objective.auxiliary_step(step))
        self.step = step + 1
        return logs

    def _graphed_step(self, batch: Any, logs: bool) -> dict[str, float]:
        assert self.graphed is not None
        terms = self.graphed.run(batch, self.step)
        self.step += 1
        if not logs:
            return {}
        names = self.graphed.term_names()
        try:
            check_finite(self.step - 1, dict(zip(names, terms.unbind(), strict=True)))
        except NonFiniteLossError as e:
            self._diverged(e)
        return dict(zip(names, terms.tolist(), strict=True))

    def _lr_value(self, lr: float) -> float | torch.Tensor:
        return torch.tensor(lr, device=self.ctx.device) if self._lr_tensor else lr

    def _set_lr(self, step: int) -> None:
        """Put the lr of ``step`` (:meth:`OptimizerConfig.lr_at`) in every param group."""
        if not self.cfg.optimizer.cooldown_steps:
            return
        lr = self.cfg.optimizer.lr_at(step, self.cfg.steps)
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)  # in place: the captured step reads this tensor
            else:
                group["lr"] = lr

    def _diverged(self, error: NonFiniteLossError) -> None:
        ckpts = checkpoint_paths(self.out)
        where = f"the last good checkpoint is {ckpts[-1]}" if ckpts else "no checkpoint was written yet"
        raise TrainingError(
            f"training stopped: loss term {error.term!r} is {error.value} at step {error.step}; {where}. "
            "Lower optimizer.lr or the regulariser weight and resume with --resume."
        ) from error


def _start_from(model: VAEModel, source: Path, *, skip: tuple[str, ...] = ()) -> None:
    """Load ``init_from``'s weights into ``model``, or say which names or shapes disagree.

    Weights whose names start with a prefix in ``skip`` keep their fresh initialisation (a
    source with another ``latent_dim`` differs only in the encoder's ``mean`` / ``log_var``
    heads and the decoder's first layer); every other weight must be in the source and fit.
    """
    def skipped(name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in skip)

    fresh = model.state_dict()
    unused = [p for p in skip if not any(skipped(n) and n.startswith(p) for n in fresh)]
    if unused:
        raise ConfigError(f"init_skip: {unused} name no weight of this run's model; its weights are "
                          f"{sorted({n.rsplit('.', 1)[0] for n in fresh})}")
    state = {k: v for k, v in initial_weights(source).items() if not skipped(k)}
    state.update({k: v for k, v in fresh.items() if skipped(k)})
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ConfigError(
            f"init_from: the weights of {source} do not fit this run's [model] "
            f"({model.config.architecture}, {model.config.channels} channel(s), latent_dim "
            f"{model.config.latent_dim}): {e}"
            + ("" if skip else "; init_skip can leave the heads whose shapes differ at their fresh values")
        ) from None
    log.info("starting from the weights of %s%s", source, f", all but {list(skip)}" if skip else "")


def finish_run(trainer: Trainer, *, evaluate: bool | None = None, progress: bool = True) -> Path:
    """Write the run directory (rank 0): weights, config, loss log + plot, metrics and factor
    card (labelled data with ``evaluate``; always for an objective whose labels name the dims),
    reconstructions, traversal and report.md."""
    from latentdial.training.figures import (
        loss_plot,
        reconstruction_figure,
        traversal_figure,
        traversal_labels,
    )
    from latentdial.training.report import write_report

    cfg, out, model = trainer.cfg, trainer.out, trainer.objective.model
    version = code_version()
    config = {**cfg.to_dict(), "code_version": version, "world_size": trainer.ctx.world_size}
    if trainer.rank_checksums:
        config["rank_param_checksums"] = trainer.rank_checksums
    (out / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    model_cpu = build_model(cfg.model)
    model_cpu.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
    model_cpu.eval()
    save_weights(model_cpu, out / WEIGHTS, {
        "step": str(trainer.step), "code_version": version, "objective": cfg.objective_name,
        "dataset": cfg.dataset["name"],
    })
    trainer.write_loss_log()
    if trainer.rows:
        loss_plot(trainer.rows, out / "loss.png")
    labelled = getattr(trainer.dataset, "num_factors", 0) > 0
    supervised_card = getattr(trainer.objective, "factor_card", None)
    if callable(supervised_card):  # the labels name the dims: the card needs no evaluation
        supervised_card().save(out / FACTOR_CARD)
    if evaluate if evaluate is not None else cfg.evaluate:
        if not labelled:
            log.info("dataset %s has no ground-truth factors: skipping metrics and the factor card",
                     cfg.dataset["name"])
        else:
            _evaluate(out, trainer.dataset, cfg.seed, progress)
    rng = np.random.default_rng([cfg.seed, 2**31 - 1])
    images = trainer.dataset.sample_observations(8, rng)
    reconstruction_figure(model_cpu, images).save(out / "reconstructions.png")
    labels = traversal_labels(cfg.model.latent_dim, out / FACTOR_CARD)
    traversal_figure(model_cpu, images[0], labels).save(out / "traversal.png")
    write_report(out)
    return out


def _evaluate(out: Path, dataset: Any, seed: int, progress: bool) -> None:
    log.info("evaluating %s (metrics and factor card)", out)
    evaluate_run(out, dataset=dataset, seed=seed, progress=progress)


def train(cfg: TrainConfig, out: Path, *, resume: bool = False, dataset: Any = None,
          progress: bool = True) -> Path:
    """Train ``cfg`` into the run directory ``out`` (single process or one torchrun rank)."""
    out = Path(out)
    ctx = init_distributed(cfg.device)
    try:
        if ctx.is_main:
            _check_out_dir(out, resume)
        barrier(ctx)
        trainer = Trainer(cfg, out, dataset=dataset, ctx=ctx)
        if resume:
            ckpts = checkpoint_paths(out)
            trainer.load_checkpoint(ckpts[-1])
            log.info("resumed from %s at step %d", ckpts[-1], trainer.step)
        trainer.train(progress=progress)
        trainer.rank_checksums = gather_objects(param_checksum(trainer.objective), ctx)
        if len(set(trainer.rank_checksums)) > 1:
            log.error("data-parallel ranks ended with different parameters: %s", trainer.rank_checksums)
        if ctx.is_main:
            finish_run(trainer, progress=progress)
        barrier(ctx)
        return out
    finally:
        shutdown(ctx)


def _check_out_dir(out: Path, resume: bool) -> None:
    if resume:
        if not checkpoint_paths(out):
            raise TrainingError(f"--resume: {out / CHECKPOINTS} holds no checkpoint; start without --resume")
        return
    if (out / WEIGHTS).exists() or checkpoint_paths(out):
        raise TrainingError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
