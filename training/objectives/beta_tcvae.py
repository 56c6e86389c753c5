"""beta-TCVAE: penalise the total correlation of the aggregate posterior."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from latentdial.training.objectives.base import ObjectiveConfig, VAEObjective, gaussian_log_density


def total_correlation(z: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """Minibatch-weighted-sampling estimate of TC(q(z)) (Chen et al. 2018, section 4.1).

    z, mean, log_var: (B, D); z[i] is a sample of q(z|x_i). The aggregate posterior is
    the mixture of the B posteriors of the batch:
    log q(z_i) ~ logsumexp_j log q(z_i|x_j) - log B, and likewise per dimension for the
    product of marginals. Returns TC = mean_i [log q(z_i) - sum_d log q(z_id)], shape ().

    Normalising by the batch size B (rather than the data set size as in the paper)
    only shifts the estimate by a constant, so gradients are identical, and the
    estimate of independent latents is close to 0.
    """
    b = z.shape[0]
    # (B, B, D): log q(z_i,d | x_j)
    log_qz_ij = gaussian_log_density(z.unsqueeze(1), mean.unsqueeze(0), log_var.unsqueeze(0))
    log_norm = math.log(b)
    log_qz = torch.logsumexp(log_qz_ij.sum(dim=2), dim=1) - log_norm  # (B,)
    log_prod_marginals = (torch.logsumexp(log_qz_ij, dim=1) - log_norm).sum(dim=1)  # (B,)
    return (log_qz - log_prod_marginals).mean()


@dataclass
class BetaTCVAEConfig(ObjectiveConfig):
    """beta = 6: middle of disentanglement_lib's sweep (1..10) and the value Chen et al.
    show for dSprites."""

    beta: float = 6.0


class BetaTCVAE(VAEObjective):
    """beta-TCVAE (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs", NeurIPS).

    loss = recon + KL + (beta - 1) * TC, i.e. the KL decomposition (index-code MI +
    TC + dimension-wise KL) with weight beta on the TC, as in disentanglement_lib.
    """

    name = "beta_tcvae"
    Config = BetaTCVAEConfig
    config: BetaTCVAEConfig

    def regularizer(self, kl, mean, log_var, z, step):
        tc = total_correlation(z, mean, log_var)
        return kl + (self.config.beta - 1.0) * tc, {"tc": tc}
