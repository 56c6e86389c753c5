"""The StarGAN training loop: (G, D) + two Adams + a labelled batch stream -> a run directory.

Losses (Choi et al. 2018, "StarGAN: Unified Generative Adversarial Networks for Multi-Domain
Image-to-Image Translation", Sec. 3), with x a real image, c its codes and c' target codes:

- D: -E[D_src(x)] + E[D_src(G(x, c'))] + lambda_gp * GP + lambda_cls * L_cls(D_cls(x), c),
  GP = E[(||grad D_src(x_hat)||_2 - 1)^2] on x_hat between real and fake (WGAN-GP, Gulrajani
  et al. 2017); L_cls on the LABELLED real images only;
- G (every ``n_critic`` D updates): -E[D_src(G(x, c'))] + lambda_cls * L_cls(D_cls(G(x, c')), c')
  + lambda_rec * E|x - G(G(x, c'), c)|_1 (the cycle).

L_cls is :meth:`CodeLayout.classification_loss` (cross-entropy, squared error or the circular
loss, per factor kind). Target codes c' are the label codes of images drawn from the batch's
labelled rows, so they follow the labelled set. The batch stream is the semi-supervised
recipe's (``BatchStream(labels=True, num_labelled=...)``): the same seed labels the SAME pool of
images, and a batch is ``batch_size`` unlabelled images then ``batch_size`` from the pool
(``num_labelled = 0``: ``batch_size`` images, all labelled). An unlabelled image's own codes c
for the cycle are what D's auxiliary head reads from it, as the server reads them at edit time.

A step is one D update. Checkpoints hold G, D, both optimisers, the torch (and CUDA) RNG state
and the loss log; batches are a pure function of (seed, step), so ``--resume`` continues the run.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from latentdial.provenance import code_version
from latentdial.training.config import ConfigError
from latentdial.training.run_dir import (
    CHECKPOINTS,
    CONFIG,
    FACTOR_CARD,
    WEIGHTS,
    checkpoint_paths,
    write_checkpoint,
    write_loss_log,
)
from latentdial.training.stargan.codes import CodeLayout
from latentdial.training.stargan.config import StarGANConfig
from latentdial.training.stargan.networks import Discriminator, Generator, build_networks

log = logging.getLogger("latentdial.train.stargan")
SAMPLES = "samples.png"


class StarGANTrainingError(RuntimeError):
    """Training cannot start or continue; the message says what to do."""


def _f(value: torch.Tensor) -> float:
    return float(value.detach())


def gradient_penalty(discriminator: Discriminator, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: E[(||d D_src(x_hat) / d x_hat||_2 - 1)^2], x_hat = a x + (1 - a) x~, a ~ U(0, 1) per image.

    real, fake: (N, C, H, W). Returns a scalar.
    """
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    src, _ = discriminator(x_hat)
    (grad,) = torch.autograd.grad(src.sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1.0).pow(2).mean()


class StarGANTrainer:
    """Owns G, D, their optimisers and the loss log of one run."""

    def __init__(self, cfg: StarGANConfig, out: Path, *, dataset: Any = None) -> None:
        from latentdial.training.data import BatchStream
        from latentdial.training.evaluate import resolve_dataset

        self.cfg, self.out = cfg, Path(out)
        torch.set_num_threads(cfg.num_threads or max(1, os.cpu_count() or 1))
        self.device = torch.device(cfg.device)
        self.dataset = resolve_dataset(cfg.dataset) if dataset is None else dataset
        want = (cfg.model.channels, cfg.model.image_size, cfg.model.image_size)
        if tuple(self.dataset.observation_shape) != want:
            raise StarGANTrainingError(
                f"the dataset draws {tuple(self.dataset.observation_shape)} images (C, H, W) but the model "
                f"takes {want}: set model.channels / model.image_size to match")
        try:
            self.layout = CodeLayout.from_dataset(self.dataset, cfg.objective.factors, cfg.objective.categorical_code)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.columns = [f.column for f in self.layout.factors]
        torch.manual_seed(cfg.seed)
        g, d = build_networks(cfg.model, self.layout)
        self.G, self.D = g.to(self.device), d.to(self.device)
        o = cfg.optimizer
        self.g_opt = torch.optim.Adam(self.G.parameters(), lr=o.g_lr, betas=(o.beta1, o.beta2))
        self.d_opt = torch.optim.Adam(self.D.parameters(), lr=o.d_lr, betas=(o.beta1, o.beta2))
        self.stream = BatchStream(self.dataset, cfg.batch_size, cfg.seed, labels=True,
                                  num_labelled=cfg.objective.num_labelled or None)
        self.step = 0
        self.rows: list[dict[str, float]] = []
        self._g_logs: dict[str, float] = {}

    # -- one step -------------------------------------------------------------------------
    def train_step(self, batch: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
        """One D update (and a G update every ``n_critic`` steps) on (images (M, C, H, W), labels
        (M, F) int64, -1 = unlabelled); advances ``self.step`` and returns the loss terms."""
        obj = self.cfg.objective
        x = torch.from_numpy(batch[0]).to(self.device)
        labels = torch.from_numpy(batch[1]).to(self.device)
        known = (labels[:, self.columns] >= 0).all(dim=1)  # (M,) rows labelled for every factor used
        if not bool(known.any()):
            raise StarGANTrainingError(f"step {self.step}: no labelled image in the batch to draw target codes from")
        pool = labels[known]
        target = pool[torch.randint(0, len(pool), (len(x),), device=self.device)]  # (M, F) target labels
        c_trg = self.layout.codes_of(target)  # (M, D)

        # discriminator: adversarial (WGAN-GP) + classification of the labelled real images
        src_real, head_real = self.D(x)
        d_cls, cls_logs = self.layout.classification_loss(head_real[known], pool)
        with torch.no_grad():
            fake = self.G(x, c_trg)
        src_fake, _ = self.D(fake)
        gp = gradient_penalty(self.D, x, fake)
        d_adv = -src_real.mean() + src_fake.mean()
        d_loss = d_adv + obj.lambda_cls * d_cls + obj.lambda_gp * gp
        self._check(d_loss, "d_loss")
        self.d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_opt.step()
        logs = {"d_loss": _f(d_loss), "d_adv": _f(d_adv), "d_cls": _f(d_cls), "d_gp": _f(gp),
                **{f"cls_{k}": v for k, v in cls_logs.items()}}

        if (self.step + 1) % obj.n_critic == 0:
            self._g_logs = self._generator_step(x, labels, known, target, c_trg)
        self.step += 1
        return {**logs, **self._g_logs}

    def _generator_step(self, x: torch.Tensor, labels: torch.Tensor, known: torch.Tensor,
                        target: torch.Tensor, c_trg: torch.Tensor) -> dict[str, float]:
        obj = self.cfg.objective
        with torch.no_grad():  # own codes: the labels where known, else what D reads
            read = self.layout.codes_from_head(self.D(x)[1])
            c_org = torch.where(known[:, None], self.layout.codes_of(labels.clamp(min=0)), read)
        fake = self.G(x, c_trg)
        src, head = self.D(fake)
        g_adv = -src.mean()
        g_cls, _ = self.layout.classification_loss(head, target)
        g_rec = (x - self.G(fake, c_org)).abs().mean()
        g_loss = g_adv + obj.lambda_cls * g_cls + obj.lambda_rec * g_rec
        self._check(g_loss, "g_loss")
        self.g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        self.g_opt.step()
        return {"g_loss": _f(g_loss), "g_adv": _f(g_adv), "g_cls": _f(g_cls), "g_rec": _f(g_rec)}

    def _check(self, loss: torch.Tensor, name: str) -> None:
        if not torch.isfinite(loss):
            ckpts = checkpoint_paths(self.out)
            where = f"the last good checkpoint is {ckpts[-1]}" if ckpts else "no checkpoint was written yet"
            raise StarGANTrainingError(f"training stopped: {name} is {float(loss)} at step {self.step}; {where}. "
                                       "Lower optimizer.g_lr / d_lr and resume with --resume.")

    # -- the loop ---------------------------------------------------------------------------
    def train(self, *, progress: bool = True) -> None:
        """Run from ``self.step`` to ``cfg.steps``, checkpointing every ``checkpoint_every`` steps."""
        cfg = self.cfg
        remaining = cfg.steps - self.step
        if remaining <= 0:
            log.info("already at step %d of %d; nothing to train", self.step, cfg.steps)
            return
        self.G.train()
        self.D.train()
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not progress, desc="train stargan",
                   dynamic_ncols=True)
        try:
            for batch in self.stream.iterate(self.step, remaining):
                logs = self.train_step(batch)
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    self.rows.append({"step": self.step - 1, **logs})
                    bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items() if k in ("d_loss", "g_loss", "g_rec")})
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    self.save_checkpoint()
        finally:
            bar.close()

    # -- checkpoints ------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Write checkpoints/step_<step>.pt and keep the newest ``keep_checkpoints``."""
        path = self.out / CHECKPOINTS / f"step_{self.step:08d}.pt"
        state = {"step": self.step, "generator": self.G.state_dict(), "discriminator": self.D.state_dict(),
                 "g_opt": self.g_opt.state_dict(), "d_opt": self.d_opt.state_dict(),
                 "rng": torch.get_rng_state(),
                 "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
                 "rows": self.rows, "g_logs": self._g_logs,
                 "config": self.cfg.to_dict()}
        write_checkpoint(self.out, path, state, self.cfg.keep_checkpoints)
        self.write_loss_log()
        return path

    def load_checkpoint(self, path: Path) -> None:
        """Restore what ``save_checkpoint`` wrote; the config must match but for ``steps``."""
        state = torch.load(path, map_location=self.device, weights_only=False)
        saved, now = state["config"], self.cfg.to_dict()
        for key in now:
            if key not in ("steps", "log_every", "checkpoint_every", "keep_checkpoints", "num_threads") \
                    and saved.get(key) != now[key]:
                raise ConfigError(f"cannot resume from {path}: '{key}' was {saved.get(key)!r}, now {now[key]!r}; "
                                  "resume with the run's own config (only steps and logging may change)")
        self.G.load_state_dict(state["generator"])
        self.D.load_state_dict(state["discriminator"])
        self.g_opt.load_state_dict(state["g_opt"])
        self.d_opt.load_state_dict(state["d_opt"])
        torch.set_rng_state(state["rng"].cpu())
        if state.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
        self.step, self.rows, self._g_logs = int(state["step"]), list(state["rows"]), dict(state["g_logs"])

    def write_loss_log(self) -> None:
        write_loss_log(self.out, self.rows)


def finish_run(trainer: StarGANTrainer) -> Path:
    """Write the run directory: config.json, model.safetensors (``generator.*``, ``discriminator.*``),
    factor_card.json, loss_log.csv + loss.png and samples.png."""
    from safetensors.torch import save_file

    from latentdial.training.figures import loss_plot
    from latentdial.training.stargan.samples import sample_sheet

    cfg, out = trainer.cfg, trainer.out
    version = code_version()
    (out / CONFIG).write_text(json.dumps({**cfg.to_dict(), "code_version": version}, indent=2) + "\n")
    state = {f"generator.{k}": v for k, v in trainer.G.state_dict().items()}
    state.update({f"discriminator.{k}": v for k, v in trainer.D.state_dict().items()})
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(out / WEIGHTS), metadata={
        "step": str(trainer.step), "code_version": version, "family": cfg.family, "dataset": cfg.dataset["name"]})
    trainer.layout.card().save(out / FACTOR_CARD)
    trainer.write_loss_log()
    if trainer.rows:
        loss_plot(trainer.rows, out / "loss.png")
    g, d = trainer.G.cpu().eval(), trainer.D.cpu().eval()
    rng = np.random.default_rng([cfg.seed, 2**31 - 1])
    images = trainer.dataset.sample_observations(8, rng)
    sample_sheet(g, d, trainer.layout, trainer.layout.card(), images).save(out / SAMPLES)
    return out


def train(cfg: StarGANConfig, out: Path, *, resume: bool = False, dataset: Any = None,
          progress: bool = True) -> Path:
    """Train ``cfg`` into the run directory ``out`` (or continue it with ``resume``)."""
    out = Path(out)
    if resume:
        if not checkpoint_paths(out):
            raise StarGANTrainingError(f"--resume: {out / CHECKPOINTS} holds no checkpoint; start without --resume")
    elif (out / WEIGHTS).exists() or checkpoint_paths(out):
        raise StarGANTrainingError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    trainer = StarGANTrainer(cfg, out, dataset=dataset)
    if resume:
        ckpt = checkpoint_paths(out)[-1]
        trainer.load_checkpoint(ckpt)
        log.info("resumed from %s at step %d", ckpt, trainer.step)
    trainer.train(progress=progress)
    return finish_run(trainer)


__all__ = ["Discriminator", "Generator", "StarGANTrainer", "StarGANTrainingError", "finish_run",
           "gradient_penalty", "train"]
