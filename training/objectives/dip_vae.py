"""DIP-VAE-I and DIP-VAE-II: match moments of the aggregate posterior to N(0, I)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from latentdial.training.objectives.base import ObjectiveConfig, VAEObjective


def covariance(x: torch.Tensor) -> torch.Tensor:
    """Biased covariance of the rows of x: (N, D) -> (D, D)."""
    centred = x - x.mean(dim=0, keepdim=True)
    return centred.T @ centred / x.shape[0]


def dip_penalty(cov: torch.Tensor, lambda_od: float, lambda_d: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(lambda_od * sum off-diag^2, lambda_d * sum (diag - 1)^2) for a (D, D) covariance."""
    diag = torch.diagonal(cov)
    off = cov - torch.diag(diag)
    return lambda_od * off.pow(2).sum(), lambda_d * (diag - 1.0).pow(2).sum()


@dataclass
class DIPVAEIConfig(ObjectiveConfig):
    """disentanglement_lib defaults: lambda_od 10, lambda_d = 10 * lambda_od for DIP-VAE-I."""

    lambda_od: float = 10.0
    lambda_d: float = 100.0


class DIPVAEI(VAEObjective):
    """DIP-VAE-I (Kumar et al. 2018, "Variational Inference of Disentangled Latent Concepts
    from Unlabeled Observations", ICLR): loss = recon + KL + penalty(Cov[mu(x)]) where the
    penalty pushes the covariance of the posterior means to the identity."""

    name = "dip_vae_i"
    Config = DIPVAEIConfig
    config: DIPVAEIConfig

    def target_covariance(self, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        """The (D, D) covariance pushed to the identity: Cov_x[mu(x)] for DIP-VAE-I."""
        return covariance(mean)

    def regularizer(self, kl, mean, log_var, z, step):
        cov = self.target_covariance(mean, log_var)
        off, diag = dip_penalty(cov, self.config.lambda_od, self.config.lambda_d)
        return kl + off + diag, {"dip_offdiag": off, "dip_diag": diag}


@dataclass
class DIPVAEIIConfig(DIPVAEIConfig):
    """disentanglement_lib defaults for DIP-VAE-II: lambda_d = lambda_od."""

    lambda_od: float = 10.0
    lambda_d: float = 10.0


class DIPVAEII(DIPVAEI):
    """DIP-VAE-II (Kumar et al. 2018): as DIP-VAE-I but on the covariance of the whole
    aggregate posterior, Cov_q(z) = E_x[diag(sigma^2(x))] + Cov_x[mu(x)]."""

    name = "dip_vae_ii"
    Config = DIPVAEIIConfig
    config: DIPVAEIIConfig

    def target_covariance(self, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        """Cov_q(z) = E_x[diag(sigma^2(x))] + Cov_x[mu(x)], (D, D)."""
        return covariance(mean) + torch.diag(log_var.exp().mean(dim=0))
