"""The base VAE objective and the helpers every variant shares.

Kingma & Welling 2014, "Auto-Encoding Variational Bayes": the negative ELBO is a
Bernoulli reconstruction term (binary cross-entropy with logits, summed over the
pixels of an image, averaged over the batch) plus KL(q(z|x) || N(0, I)) summed
over latent dimensions and averaged over the batch.

Every variant overrides hooks of one template, :meth:`VAEObjective.loss`, never the
loss itself, and declares its own dataclass config that inherits from its parent's:

- :meth:`VAEObjective.inputs`: what a batch is (single images; Ada-GVAE's pairs;
  labelled images for the semi-supervised family) -> :class:`Inputs`.
- :meth:`VAEObjective.hook_posterior`: change q(z|x) before sampling, on (mean, log_var),
  like disent's ``hook_intercept_ds`` (Ada-GVAE's adaptive averaging).
- :meth:`VAEObjective.hook_latents`: what the decoder reads (the semi-supervised family
  feeds label codes on its named dims).
- :meth:`VAEObjective.supervised`: a term from labels (none by default).
- :meth:`VAEObjective.regularizer`: the term added to the reconstruction loss (every
  unsupervised variant overrides only this one).

Variants that need more (FactorVAE's discriminator) say so in their docstring.

Trainer hooks
- ``objective(batch, step)`` / :meth:`loss` -> ``(loss, logs)``; ``forward`` is the
  loss so a ``DistributedDataParallel`` wrapper around the objective syncs gradients.
- :meth:`attach_dataset`: the training data, for objectives that need its factor layout.
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
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from latentdial.training.model import VAEModel

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

    def __reduce__(self) -> tuple:
        """Pickle by the constructor's arguments, so the error crosses processes (a Ray trial's
        failure reaches the sweep as itself, not as a TypeError from unpickling)."""
        return type(self), (self.step, self.term, self.value)


@dataclass
class Inputs:
    """One batch as the loss template sees it.

    images: (M, C, H, W) float32 in [0, 1], everything that is encoded and reconstructed.
    per_example: images that form one example (2 for a pair); reconstruction and KL are
        summed over an example's images and averaged over the M / per_example examples.
    labels: (M, F) int64 factor indices with -1 where a factor is not labelled, or None.
    """

    images: torch.Tensor
    per_example: int = 1
    labels: torch.Tensor | None = None


@dataclass
class ObjectiveConfig:
    """Hyper-parameters of the plain VAE (none beyond the architecture)."""

    #: Options added after runs were recorded without them: written only when not at their default,
    #: so those runs' configs (resume checks, a study's ledger keys) still read as the same recipe.
    WRITTEN_WHEN_SET: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def to_dict(self) -> dict[str, Any]:
        """Every option by name, but those of ``WRITTEN_WHEN_SET`` only when they differ from their default."""
        out = asdict(self)
        for f in fields(self):
            if f.name not in self.WRITTEN_WHEN_SET:
                continue
            default = f.default_factory() if f.default_factory is not MISSING else f.default
            if default is not MISSING and out[f.name] == default:
                del out[f.name]
        return out


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


def stack_terms(terms: dict[str, torch.Tensor]) -> torch.Tensor:
    """The () terms of a loss as one detached float (T,) vector, in the dict's order."""
    return torch.stack([t.detach().float().reshape(()) for t in terms.values()])


def check_finite(step: int, terms: dict[str, torch.Tensor]) -> None:
    """Raise :class:`NonFiniteLossError` naming the first NaN/inf term (one sync for all)."""
    stacked = stack_terms(terms)
    if bool(torch.isfinite(stacked).all()):
        return
    for name, value in terms.items():
        v = float(value.detach())
        if not math.isfinite(v):
            raise NonFiniteLossError(step, name, v)


class VAEObjective(nn.Module):
    """Plain VAE: loss = reconstruction + KL (Kingma & Welling 2014).

    Variants override the hooks (module docstring). ``batch`` is (N, C, H, W) float32 in
    [0, 1] (or a pair of such tensors when ``requires_pairs``).
    """

    name: ClassVar[str] = "vae"
    Config: ClassVar[type[ObjectiveConfig]] = ObjectiveConfig
    requires_pairs: ClassVar[bool] = False
    #: batches are (images, factor indices) from a stream built with labels=True
    requires_labels: ClassVar[bool] = False
    #: :meth:`loss_terms` is the same computation at every step and never waits for the
    #: device (no ``.item()``, no data-dependent shapes, no host data copied in), so a CUDA
    #: graph can capture a whole training step (``training/graphed_step.py``). False for
    #: step-dependent losses (AnnealedVAE) and auxiliary optimizers (FactorVAE).
    graph_safe: ClassVar[bool] = True

    def __init__(self, model: VAEModel, config: ObjectiveConfig | None = None) -> None:
        super().__init__()
        config = self.Config() if config is None else config
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}, got {type(config).__name__}")
        self.model = model
        self.config = config
        #: (N, C, H, W) -> (N, C, H, W): the encoder's view of the images (training/augment.py);
        #: the decoder always reconstructs the clean images. None: the encoder sees them as they are.
        self.encoder_view: nn.Module | None = None

    # -- hooks variants override -------------------------------------------------------
    def inputs(self, batch: Batch) -> Inputs:
        """The images to encode and reconstruct (and their labels) from one batch."""
        if isinstance(batch, (tuple, list)):
            raise TypeError(f"{self.name} takes single images, not pairs; set pairs=False on the stream")
        return Inputs(images=batch)

    def hook_posterior(
        self, mean: torch.Tensor, log_var: torch.Tensor, inputs: Inputs
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Change the posterior before it is sampled. mean, log_var: (M, D).

        Returns (mean, log_var, terms to log); the default leaves it as it is.
        """
        return mean, log_var, {}

    def hook_latents(self, z: torch.Tensor, mean: torch.Tensor, inputs: Inputs) -> torch.Tensor:
        """The latents (M, D) the decoder reads, from the sample z (M, D); default z itself."""
        return z

    def supervised(self, mean: torch.Tensor, inputs: Inputs) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """A term from labels on the posterior means (M, D); default none: (None, {})."""
        return None, {}

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
        """(loss (), logs {"loss", "recon", "kl", "regularizer", ...hook terms}) for one batch;
        raises :class:`NonFiniteLossError` when a term is NaN or infinite."""
        loss, terms = self.loss_terms(batch, step)
        return loss, self._finish(step, terms)

    def loss_terms(self, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss (), every logged term as a () tensor) for one batch, with no host sync.

        The template: inputs -> (the encoder's view) -> encode -> hook_posterior -> sample -> hook_latents -> decode;
        loss = recon + regularizer (+ supervised), each summed within an example and
        averaged over examples.
        """
        inputs = self.inputs(batch)
        x, group = inputs.images, inputs.per_example
        mean, log_var = self.model.encoder(x if self.encoder_view is None else self.encoder_view(x, inputs.labels))  # (M, D)
        mean, log_var, posterior_terms = self.hook_posterior(mean, log_var, inputs)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)  # (M, D)
        logits = self.model.decoder(self.hook_latents(z, mean, inputs))
        n = x.shape[0] // group
        recon = bernoulli_reconstruction(logits, x).view(group, n).sum(dim=0).mean()
        kl = gaussian_kl(mean, log_var).sum(dim=1).view(group, n).sum(dim=0).mean()
        reg, extra = self.regularizer(kl, mean, log_var, z, step)
        loss = recon + reg
        sup, sup_terms = self.supervised(mean, inputs)
        if sup is not None:
            loss = loss + sup
            sup_terms = {"supervised": sup, **sup_terms}
        terms = {
            "loss": loss, "recon": recon, "kl": kl, "regularizer": reg,
            **posterior_terms, **sup_terms, **extra,
        }
        return loss, terms

    def _finish(self, step: int, terms: dict[str, torch.Tensor]) -> Logs:
        check_finite(step, terms)
        return {k: float(v.detach()) for k, v in terms.items()}

    # -- trainer hooks -------------------------------------------------------------------
    def attach_dataset(self, dataset: Any) -> None:
        """Learn the training data's factor layout (names, kinds, grids). Default: not needed."""

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
