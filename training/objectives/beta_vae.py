"""beta-VAE and AnnealedVAE: reweighting or targeting the KL term."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from latentdial.training.objectives.base import ObjectiveConfig, VAEObjective


@dataclass
class BetaVAEConfig(ObjectiveConfig):
    """beta = 4: the value Higgins et al. report for dSprites with 10 latents, and a middle
    point of disentanglement_lib's sweep (1, 2, 4, 6, 8, 16); larger values disentangle more
    at the cost of blurrier reconstructions."""

    beta: float = 4.0


class BetaVAE(VAEObjective):
    """beta-VAE (Higgins et al. 2017, "beta-VAE: Learning Basic Visual Concepts with a
    Constrained Variational Framework", ICLR): loss = recon + beta * KL."""

    name = "beta_vae"
    Config = BetaVAEConfig
    config: BetaVAEConfig

    def regularizer(self, kl, mean, log_var, z, step):
        return self.config.beta * kl, {}


@dataclass
class AnnealedVAEConfig(ObjectiveConfig):
    """Defaults of disentanglement_lib: gamma 1000, C_max 25 nats, reached after 100k steps."""

    gamma: float = 1000.0
    c_max: float = 25.0
    iteration_threshold: int = 100_000


def capacity(step: int, c_max: float, iteration_threshold: int) -> float:
    """Linear capacity schedule C(step) = min(C_max, C_max * step / N) in nats."""
    if iteration_threshold <= 0:
        return c_max
    return min(c_max, c_max * step / iteration_threshold)


class AnnealedVAE(VAEObjective):
    """AnnealedVAE (Burgess et al. 2018, "Understanding disentangling in beta-VAE"):
    loss = recon + gamma * |KL - C|, with the capacity C rising linearly from 0 to C_max
    over ``iteration_threshold`` steps."""

    graph_safe = False  # the capacity target changes with the step

    name = "annealed_vae"
    Config = AnnealedVAEConfig
    config: AnnealedVAEConfig

    def regularizer(self, kl, mean, log_var, z, step):
        c = capacity(step, self.config.c_max, self.config.iteration_threshold)
        reg = self.config.gamma * (kl - c).abs()
        return reg, {"capacity": torch.tensor(c)}
