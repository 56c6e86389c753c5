"""InfoVAE / MMD-VAE: match the aggregate posterior to the prior with an MMD."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from latentdial.training.objectives.base import ObjectiveConfig, VAEObjective


def gaussian_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gaussian (RBF) kernel k(x, y) = exp(-||x - y||^2 / D) with 2 sigma^2 = D, the
    bandwidth of Zhao et al.'s reference code. x: (N, D), y: (M, D) -> (N, M)."""
    return torch.exp(-torch.cdist(x, y).pow(2) / x.shape[1])


def mmd(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased squared MMD between samples x (N, D) and y (M, D) with the Gaussian kernel."""
    n, m = x.shape[0], y.shape[0]
    kxx, kyy, kxy = gaussian_kernel(x, x), gaussian_kernel(y, y), gaussian_kernel(x, y)
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return sxx + syy - 2.0 * kxy.mean()


@dataclass
class InfoVAEConfig(ObjectiveConfig):
    """alpha = 1 drops the KL term (the MMD-VAE of the paper); lambda_ = 1000 makes the
    MMD (about 1e-2 for a batch of 64) comparable to the summed reconstruction loss."""

    alpha: float = 1.0
    lambda_: float = 1000.0


class InfoVAE(VAEObjective):
    """InfoVAE (Zhao et al. 2019, "InfoVAE: Balancing Learning and Inference in Variational
    Autoencoders", AAAI): loss = recon + (1 - alpha) * KL + (alpha + lambda - 1) * MMD(q(z), p(z)),
    with a Gaussian-kernel MMD between posterior samples and N(0, I) samples."""

    name = "info_vae"
    Config = InfoVAEConfig
    config: InfoVAEConfig

    def regularizer(self, kl, mean, log_var, z, step):
        prior = torch.randn_like(z)
        d = mmd(z, prior)
        reg = (1.0 - self.config.alpha) * kl + (self.config.alpha + self.config.lambda_ - 1.0) * d
        return reg, {"mmd": d}
