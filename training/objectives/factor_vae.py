"""FactorVAE: penalise total correlation estimated by a density-ratio discriminator."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from latentdial.training.model import VAEModel
from latentdial.training.objectives.base import Logs, ObjectiveConfig, VAEObjective


def permute_dims(z: torch.Tensor) -> torch.Tensor:
    """Shuffle each latent dimension independently across the batch: samples of prod_d q(z_d).

    z: (B, D) -> (B, D). Uses the global torch RNG (saved in checkpoints).
    """
    b, d = z.shape
    idx = torch.argsort(torch.rand(b, d, device=z.device), dim=0)  # (B, D) one permutation per dim
    return torch.gather(z, 0, idx)


class Discriminator(nn.Module):
    """MLP of disentanglement_lib: 6 hidden layers of 1000 units, LeakyReLU(0.2), 2 logits.

    (B, D) -> (B, 2) logits; class 0 = "from q(z)", class 1 = "dimension-permuted".
    """

    def __init__(self, latent_dim: int, hidden: int = 1000, layers: int = 6) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        width = latent_dim
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        mods.append(nn.Linear(width, 2))
        self.net = nn.Sequential(*mods)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


@dataclass
class FactorVAEConfig(ObjectiveConfig):
    """gamma = 30: middle of disentanglement_lib's sweep (10..100). The discriminator's Adam
    (lr 1e-4, betas (0.5, 0.9)) and its size follow disentanglement_lib."""

    gamma: float = 30.0
    discriminator_lr: float = 1e-4
    discriminator_beta1: float = 0.5
    discriminator_beta2: float = 0.9
    discriminator_hidden: int = 1000
    discriminator_layers: int = 6


class FactorVAE(VAEObjective):
    """FactorVAE (Kim & Mnih 2018, "Disentangling by Factorising", ICML).

    VAE loss = recon + KL + gamma * TC, TC ~ mean(logit_true - logit_permuted) of the
    discriminator on z ~ q(z|x). The discriminator is read with DETACHED weights in the VAE
    loss, so that term never updates it; it learns in :meth:`auxiliary_step` with its own
    Adam from DETACHED latents of the last VAE step, so its loss never updates the VAE.
    """

    graph_safe = False  # the discriminator has its own optimizer step

    name = "factor_vae"
    Config = FactorVAEConfig
    config: FactorVAEConfig

    def __init__(self, model: VAEModel, config: FactorVAEConfig | None = None) -> None:
        super().__init__(model, config)
        c = self.config
        self.discriminator = Discriminator(model.config.latent_dim, c.discriminator_hidden, c.discriminator_layers)
        self.discriminator_optimizer = torch.optim.Adam(
            self.discriminator.parameters(), lr=c.discriminator_lr,
            betas=(c.discriminator_beta1, c.discriminator_beta2),
        )
        self._discriminator_net: nn.Module = self.discriminator
        self._last_latents: torch.Tensor | None = None

    def regularizer(self, kl, mean, log_var, z, step):
        # Frozen copy of the weights: gradients reach z (the encoder), never the discriminator.
        frozen = {k: v.detach() for k, v in self.discriminator.named_parameters()}
        logits = functional_call(self.discriminator, frozen, (z,))  # (B, 2)
        tc = (logits[:, 0] - logits[:, 1]).mean()
        self._last_latents = z.detach()
        return kl + self.config.gamma * tc, {"tc": tc}

    def discriminator_loss(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of true (class 0) vs dimension-permuted (class 1) latents; z (B, D).

        Returns (loss (), accuracy ()).
        """
        z_perm = permute_dims(z)
        logits = self._discriminator_net(torch.cat([z, z_perm], dim=0))  # (2B, 2)
        b = z.shape[0]
        target = torch.cat([torch.zeros(b, dtype=torch.long), torch.ones(b, dtype=torch.long)]).to(z.device)
        loss = F.cross_entropy(logits, target)
        acc = (logits.argmax(dim=1) == target).float().mean()
        return loss, acc

    def auxiliary_step(self, step: int) -> Logs:
        """One Adam step of the discriminator on the detached latents of the last VAE loss."""
        if self._last_latents is None:
            raise RuntimeError("factor_vae: call loss() before auxiliary_step()")
        z = self._last_latents
        self._last_latents = None
        self.discriminator_optimizer.zero_grad(set_to_none=True)
        loss, acc = self.discriminator_loss(z)
        self._finish(step, {"discriminator_loss": loss})
        loss.backward()
        self.discriminator_optimizer.step()
        return {"discriminator_loss": float(loss.detach()), "discriminator_acc": float(acc)}

    def auxiliary_state_dict(self) -> dict[str, Any]:
        return {"discriminator_optimizer": self.discriminator_optimizer.state_dict()}

    def load_auxiliary_state_dict(self, state: dict[str, Any]) -> None:
        if "discriminator_optimizer" not in state:
            raise ValueError("factor_vae checkpoint lacks the discriminator optimizer state")
        self.discriminator_optimizer.load_state_dict(state["discriminator_optimizer"])

    def distribute(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        self._discriminator_net = wrap(self.discriminator)

    def ddp_ignored_names(self) -> list[str]:
        return [f"discriminator.{k}" for k, _ in self.discriminator.named_parameters()]
