"""The base VAE objective and the helpers every variant shares.

Kingma & Welling 2014, "Auto-Encoding Variational Bayes": the negative ELBO is a
Bernoulli reconstruction term (binary cross-entropy with logits, summed over the
pixels of an image, averaged over the batch) plus KL(q(z|x) || N(0, I)) summed
over latent dimensions and averaged over the batch.

Each variant in this package overrides ONE hook, :meth:`VAEObjective.regularizer`,
and declares its own dataclass config that inherits from its parent's. Variants that
need more (FactorVAE's discriminator, Ada-GVAE's pairs) say so in their docstring.

Trainer hooks
- ``objective(batch, step)`` / :meth:`loss` -> ``(loss, logs)``; ``forward`` is the
  loss so a ``DistributedDataParallel`` wrapper around the objective syncs gradients.
- :meth:`vae_parameters`: what the main optimizer updates.
- :meth:`auxiliary_step`: an extra optimizer step after the VAE step (FactorVAE).
- :meth:`auxiliary_state_dict` / :meth:`load_auxiliary_state_dict`: extra optimizer
  state for checkpoints. The discriminator weights are part of ``state_dict()``.
- :meth:`distribute`: wrap auxiliary networks for data-parallel training;
  :meth:`ddp_ignored_names` lists parameters the objective's own DDP must skip.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from latentdial.training.model import VAEModel
from torch import nn

Batch = torch.Tensor | tuple[torch.Tensor, torch.Tensor]
Logs = dict[str, float]


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; ``step`` and ``term`` say where."""

    def __init__(self, step: int, term: str, value: float) -> None:
        self.step, self.term, self.value = step, term, value
        super().__init__(
            f"loss term {term!r} is {value} at step {step}; lower the learning rate or the "
            f"regulariser weight, or check the data for NaN/inf"
        )


@dataclass
class ObjectiveConfig:
    """Hyper-parameters of the plain VAE (none beyond the architecture)."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def bernoulli_reconstruction(logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Bernoulli negative log-likelihood per image.

    logits, images: (N, C, H, W); images in [0, 1]. Returns (N,): BCE summed over pixels.
    """
    bce = F.binary_cross_entropy_with_logits(logits, images, reduction="none")
    return bce.flatten(1).sum(dim=1)


def gaussian_kl(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_var)) || N(0, 1)) per dimension. mean, log_var: (N, D) -> (N, D)."""
    return 0.5 * (mean.pow(2) + log_var.exp() - log_var - 1.0)


def gaussian_log_density(z: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """log N(z; mean, exp(log_var)) elementwise (broadcasting). Returns the broadcast shape."""
    return -0.5 * (math.log(2 * math.pi) + log_var + (z - mean).pow(2) * torch.exp(-log_var))


def check_finite(step: int, terms: dict[str, torch.Tensor]) -> None:
    """Raise :class:`NonFiniteLossError` naming the first NaN/inf term (one sync for all)."""
    stacked = torch.stack([t.detach().float().reshape(()) for t in terms.values()])
    if bool(torch.isfinite(stacked).all()):
        return
    for name, value in terms.items():
        v = float(value.detach())
        if not math.isfinite(v):
            raise NonFiniteLossError(step, name, v)


class VAEObjective(nn.Module):
    """Plain VAE: loss = reconstruction + KL (Kingma & Welling 2014).

    Variants override :meth:`regularizer`. ``batch`` is (N, C, H, W) float32 in [0, 1]
    (or a pair of such tensors when ``requires_pairs``).
    """

    name: ClassVar[str] = "vae"
    Config: ClassVar[type[ObjectiveConfig]] = ObjectiveConfig
    requires_pairs: ClassVar[bool] = False

    def __init__(self, model: VAEModel, config: ObjectiveConfig | None = None) -> None:
        super().__init__()
        config = self.Config() if config is None else config
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}, got {type(config).__name__}")
        self.model = model
        self.config = config

    # -- the one hook variants override ------------------------------------------------
    def regularizer(
        self, kl: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor, z: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The term added to the reconstruction loss.

        kl: () batch-mean KL summed over dims; mean, log_var, z: (N, D).
        Returns (regulariser (), extra terms to log).
        """
        return kl, {}

    # -- loss ----------------------------------------------------------------------------
    def forward(self, batch: Batch, step: int) -> tuple[torch.Tensor, Logs]:
        return self.loss(batch, step)

    def loss(self, batch: Batch, step: int) -> tuple[torch.Tensor, Logs]:
        """(loss (), logs {"loss", "recon", "kl", ...regulariser terms}) for one batch."""
        if isinstance(batch, (tuple, list)):
            raise TypeError(f"{self.name} takes single images, not pairs; set pairs=False on the stream")
        logits, mean, log_var, z = self.model(batch)
        recon = bernoulli_reconstruction(logits, batch).mean()
        kl = gaussian_kl(mean, log_var).sum(dim=1).mean()
        reg, extra = self.regularizer(kl, mean, log_var, z, step)
        loss = recon + reg
        terms = {"loss": loss, "recon": recon, "kl": kl, "regularizer": reg, **extra}
        return loss, self._finish(step, terms)

    def _finish(self, step: int, terms: dict[str, torch.Tensor]) -> Logs:
        check_finite(step, terms)
        return {k: float(v.detach()) for k, v in terms.items()}

    # -- trainer hooks -------------------------------------------------------------------
    def vae_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters the main (VAE) optimizer updates."""
        return self.model.parameters()

    def auxiliary_step(self, step: int) -> Logs:
        """Extra optimizer step run after the VAE step (e.g. a discriminator). Default: none."""
        return {}

    def auxiliary_state_dict(self) -> dict[str, Any]:
        """State of extra optimizers for checkpoints (network weights are in ``state_dict``)."""
        return {}

    def load_auxiliary_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{self.name} has no auxiliary optimizer but the checkpoint has {sorted(state)}")

    def distribute(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        """Wrap auxiliary networks with ``wrap`` (e.g. DistributedDataParallel). Default: none."""

    def ddp_ignored_names(self) -> list[str]:
        """Parameter/buffer names the objective's DDP wrapper must not synchronise."""
        return []
