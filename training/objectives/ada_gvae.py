"""Ada-GVAE: weakly supervised disentanglement from pairs that share some factors."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from latentdial.training.objectives.base import Batch, Inputs, ObjectiveConfig, VAEObjective


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

    The pair changes the posterior itself: :meth:`inputs` stacks the pair (2N images,
    two per example) and :meth:`hook_posterior` averages; the regulariser is beta * KL.
    """

    name = "ada_gvae"
    Config = AdaGVAEConfig
    config: AdaGVAEConfig
    requires_pairs = True

    def inputs(self, batch: Batch) -> Inputs:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise TypeError("ada_gvae needs pairs (x1, x2); build the stream with pairs=True")
        return Inputs(images=torch.cat(list(batch), dim=0), per_example=2)  # (2N, C, H, W): x1 then x2

    def hook_posterior(self, mean, log_var, inputs):
        n = mean.shape[0] // 2
        m1, lv1, m2, lv2, shared = adaptive_average(mean[:n], log_var[:n], mean[n:], log_var[n:])
        return torch.cat([m1, m2]), torch.cat([lv1, lv2]), {"shared_dims": shared.float().sum(dim=1).mean()}

    def regularizer(self, kl, mean, log_var, z, step):
        return self.config.beta * kl, {}
