"""Ada-GVAE: weakly supervised disentanglement from pairs that share some factors."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from latentdial.training.objectives.base import (
    Batch,
    Logs,
    ObjectiveConfig,
    VAEObjective,
    bernoulli_reconstruction,
    gaussian_kl,
)


def posterior_kl(mean1: torch.Tensor, log_var1: torch.Tensor, mean2: torch.Tensor, log_var2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, var1) || N(mean2, var2)) per dimension; all (N, D) -> (N, D)."""
    return 0.5 * (
        log_var2 - log_var1 + (log_var1.exp() + (mean1 - mean2).pow(2)) / log_var2.exp() - 1.0
    )


def adaptive_average(
    mean1: torch.Tensor, log_var1: torch.Tensor, mean2: torch.Tensor, log_var2: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ada-GVAE's posterior averaging (Locatello et al. 2020, section 4).

    Per pair, delta_d = KL(q(z_d|x1) || q(z_d|x2)); tau = (max_d delta + min_d delta) / 2;
    dims with delta_d < tau are taken as shared and both posteriors are replaced there by
    the GVAE average (mean of the means, log of the mean of the variances).

    Inputs (N, D). Returns (mean1, log_var1, mean2, log_var2, shared mask (N, D) bool).
    """
    delta = posterior_kl(mean1, log_var1, mean2, log_var2)  # (N, D)
    tau = 0.5 * (delta.max(dim=1, keepdim=True).values + delta.min(dim=1, keepdim=True).values)
    shared = delta < tau  # (N, D)
    avg_mean = 0.5 * (mean1 + mean2)
    avg_log_var = torch.log(0.5 * (log_var1.exp() + log_var2.exp()))
    return (
        torch.where(shared, avg_mean, mean1),
        torch.where(shared, avg_log_var, log_var1),
        torch.where(shared, avg_mean, mean2),
        torch.where(shared, avg_log_var, log_var2),
        shared,
    )


@dataclass
class AdaGVAEConfig(ObjectiveConfig):
    """beta = 1: the plain ELBO on both images, the reference setting of the paper.

    pair_k: how many factors differ within a pair; 0 draws k uniformly from 1 .. F-1
    per pair (the paper's "k = rnd"), k >= 1 fixes it (the paper's "k = 1" setting).
    """

    beta: float = 1.0
    pair_k: int = 0


class AdaGVAE(VAEObjective):
    """Ada-GVAE (Locatello et al. 2020, "Weakly-Supervised Disentanglement Without
    Compromises", ICML). Consumes PAIRS (x1, x2) that differ in a few factors.

    Both images are encoded; the posteriors are averaged on the dims judged shared
    (:func:`adaptive_average`); both are decoded from samples of the new posteriors.
    loss = recon(x1) + recon(x2) + beta * (KL1 + KL2), batch means.

    The pair changes the posterior itself, so this variant overrides :meth:`loss` rather
    than only :meth:`regularizer`; its regulariser is beta * KL.
    """

    name = "ada_gvae"
    Config = AdaGVAEConfig
    config: AdaGVAEConfig
    requires_pairs = True

    def regularizer(self, kl, mean, log_var, z, step):
        return self.config.beta * kl, {}

    def loss(self, batch: Batch, step: int) -> tuple[torch.Tensor, Logs]:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise TypeError("ada_gvae needs pairs (x1, x2); build the stream with pairs=True")
        x1, x2 = batch
        n = x1.shape[0]
        mean, log_var = self.model.encoder(torch.cat([x1, x2], dim=0))  # (2N, D)
        m1, lv1, m2, lv2, shared = adaptive_average(mean[:n], log_var[:n], mean[n:], log_var[n:])
        mean, log_var = torch.cat([m1, m2]), torch.cat([lv1, lv2])
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)  # (2N, D)
        logits = self.model.decoder(z)
        x = torch.cat([x1, x2], dim=0)
        recon = bernoulli_reconstruction(logits, x).view(2, n).sum(dim=0).mean()
        kl = gaussian_kl(mean, log_var).sum(dim=1).view(2, n).sum(dim=0).mean()
        reg, extra = self.regularizer(kl, mean, log_var, z, step)
        loss = recon + reg
        terms = {
            "loss": loss, "recon": recon, "kl": kl, "regularizer": reg,
            "shared_dims": shared.float().sum(dim=1).mean(), **extra,
        }
        return loss, self._finish(step, terms)
