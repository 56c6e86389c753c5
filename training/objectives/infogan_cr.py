"""InfoGAN-CR: an InfoGAN with a contrastive regulariser, plus an inversion encoder for editing.

Lin, Thekumparampil, Fanti & Oh, "InfoGAN-CR and ModelCentrality: Self-supervised Model Training
and Selection for Disentangling GANs", ICML 2020 (arXiv:1906.06034). The hyper-parameter defaults
below are those of the authors' dSprites runs (github.com/fjxmlzn/InfoGAN-CR, commit e0537bc,
``InfoGAN-CR_dSprites/config.py`` and ``gan/infogan_cr.py``, ``gan/latent.py``, ``gan/network.py``).

The latent layout
    z = (c, n): ``num_codes`` structured codes c ~ U[-1, 1] followed by ``num_noise`` noise
    dims n ~ U[-1, 1]; ``model.latent_dim`` must equal ``num_codes + num_noise`` (5 + 5 on
    dSprites). The VAEModel's DECODER is the generator G: x = sigmoid(G(z)) (it still returns
    logits, so the exported graph, which applies the sigmoid, serves it unchanged).

The networks the objective owns (all trained in :meth:`InfoGANCR.auxiliary_step`)
    - :class:`InfoDiscriminator` D with InfoGAN's Q head: a shared conv trunk, a real/fake logit
      and a regression of the codes, read as a Gaussian of fixed std ``q_std`` (1.0, as the
      authors): log Q(c | x) = sum_k log N(c_k; q_k(x), q_std^2).
    - :class:`CRDiscriminator` H: given two images stacked on the channel axis, which of the
      ``num_codes`` codes they share (a ``num_codes``-way classifier). Its pairs
      (:func:`sample_cr_pairs`) share one code value and the noise; every other code is drawn
      independently for each image (the authors' ``sample_cr`` with gap 0).

    Losses (B real images x, B latents z, B pairs (z1, z2) sharing code k):
      D:  -log D(x) - log(1 - D(G(z))) + info_weight_discriminator * -log Q(c | G(z))
      H:  CE(H(G(z1), G(z2)), k)
      G:  -log D(G(z)) + info_weight_generator * -log Q(c | G(z)) + lambda(t) * CE(H(G(z1), G(z2)), k)
          (+ generator_recon_weight * recon of the real batch, 0 by default; see below)
    lambda(t) = 0 before ``cr_start_step`` and ``cr_weight`` from it on; H and its Adam are
    re-initialised at that step (the authors' schedule: 0 -> 2 at step 288,000 of 322,560).
    Each step runs H, then D, then ``generator_steps`` (2) generator updates on the same latents,
    the authors' order. Each network has its own Adam (G: lr 1e-3; D and H: 2e-3; beta1 0.5).
    The authors' generator has batch normalisation and their discriminators spectral
    normalisation; here the generator is the project's decoder (no batch norm: that is the
    serving contract) and both discriminators are spectrally normalised (``spectral_norm``).

    Without batch norm this generator can collapse early: in short CPU runs (batch 32, seed 0)
    at the authors' learning rates it drifted to blank images (logits down to -115 by step 20,
    -176 by step 60), where the sigmoid passes no gradient back; at lower rates (2e-4, 1e-4)
    it drifted the same way, more slowly. ``generator_recon_weight`` (0 = the
    authors' objective) adds weight * Bernoulli NLL of the real batch under G(mean(x)) (encoder
    codes detached) to the generator's loss; that term's gradient does not vanish at saturated
    logits, so it keeps G on the data while the GAN terms shape it. It is this project's, not
    the paper's.

The inversion encoder (what the trainer's optimizer trains, the "loss" of this objective)
    The VAEModel's ENCODER learns to recover z from images so that a real image can be edited:
      inversion = -log N(z; mean(G(z)), exp(log_var(G(z)))) summed over the D dims, batch mean,
        on generated images (the generator is not updated by it); log_var is LEARNED: it is the
        encoder's own uncertainty about each dim (noise dims the generator ignores stay wide);
      recon (the round trip) = Bernoulli NLL of x under G(mean(x)), summed over pixels, batch mean,
        on the real batch, with the generator's weights frozen (only the encoder learns from it).
    loss = inversion_weight * inversion + roundtrip_weight * recon (logged as "recon", like the
    VAEs' reconstruction term, so the two read alike in loss logs). The paper has no encoder
    (its Q head reads only the codes); both terms and their weights (1, 1) are this project's.
    There is no KL term: the encoder is a regression, not a posterior under a prior.

The trainer's ``[optimizer]`` (and its cooldown) applies to the encoder only. Trains in one
process only (:meth:`InfoGANCR.distribute` raises).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.utils.parametrizations import spectral_norm

from latentdial.training.model import VAEModel
from latentdial.training.objectives.base import (
    Batch,
    Logs,
    ObjectiveConfig,
    VAEObjective,
    bernoulli_reconstruction,
    gaussian_log_density,
)

#: the authors' trunk: conv 4x4 stride 2 widths, then a dense layer, LeakyReLU(0.2) throughout
TRUNK_WIDTHS = (32, 32, 64, 64)
TRUNK_HIDDEN = 128


def _sn(module: nn.Module, on: bool) -> nn.Module:
    return spectral_norm(module) if on else module


def _dcgan_init(module: nn.Module) -> None:
    """N(0, 0.02) weights and zero biases, as the authors' ``op.py`` layers."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            weight = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            nn.init.normal_(weight, 0.0, 0.02)
            nn.init.zeros_(m.bias)


class Trunk(nn.Module):
    """(N, C, S, S) -> (N, 128): convs 32-32-64-64 (4x4, stride 2, padding 1) and a dense 128,
    each followed by LeakyReLU(0.2); S = 64 or 128 (one stride-2 conv per halving past 64)."""

    def __init__(self, channels: int, image_size: int, sn: bool) -> None:
        super().__init__()
        widths = (32,) * ((image_size // 64).bit_length() - 1) + TRUNK_WIDTHS
        layers: list[nn.Module] = []
        c = channels
        for w in widths:
            layers += [_sn(nn.Conv2d(c, w, 4, 2, 1), sn), nn.LeakyReLU(0.2)]
            c = w
        side = image_size >> len(widths)
        layers += [nn.Flatten(), _sn(nn.Linear(c * side * side, TRUNK_HIDDEN), sn), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class InfoDiscriminator(nn.Module):
    """D with InfoGAN's Q head. (N, C, S, S) -> (real/fake logit (N,), code regression (N, K))."""

    def __init__(self, channels: int, image_size: int, num_codes: int, q_hidden: int, sn: bool) -> None:
        super().__init__()
        self.trunk = Trunk(channels, image_size, sn)
        self.real = _sn(nn.Linear(TRUNK_HIDDEN, 1), sn)
        self.q = nn.Sequential(_sn(nn.Linear(TRUNK_HIDDEN, q_hidden), sn), nn.LeakyReLU(0.2),
                               _sn(nn.Linear(q_hidden, num_codes), sn))
        _dcgan_init(self)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(images)
        return self.real(h).squeeze(1), self.q(h)


class CRDiscriminator(nn.Module):
    """H: which code a pair shares. pair images (N, C, S, S) x 2 -> (N, K) logits."""

    def __init__(self, channels: int, image_size: int, num_codes: int, sn: bool) -> None:
        super().__init__()
        self.trunk = Trunk(2 * channels, image_size, sn)
        self.head = nn.Linear(TRUNK_HIDDEN, num_codes)  # the authors' last layer is not normalised
        _dcgan_init(self)

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(torch.cat([first, second], dim=1)))


def sample_latents(batch: int, num_codes: int, num_noise: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """z = (codes, noise), every entry U[-1, 1]: (batch, num_codes + num_noise)."""
    return torch.rand(batch, num_codes + num_noise, device=device) * 2.0 - 1.0


def sample_cr_pairs(
    batch: int, num_codes: int, num_noise: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pairs for the contrastive regulariser: (z1, z2, shared), z (batch, K + noise), shared (batch,).

    In pair i, code ``shared[i]`` (uniform over the K codes) and the noise are equal in z1 and z2;
    every other code is drawn independently for each.
    """
    z1 = sample_latents(batch, num_codes, num_noise, device)
    z2 = sample_latents(batch, num_codes, num_noise, device)
    shared = torch.randint(num_codes, (batch,), device=device)
    keep = F.one_hot(shared, num_codes + num_noise).bool()
    keep[:, num_codes:] = True  # the noise is common to both images
    return z1, torch.where(keep, z1, z2), shared


@dataclass
class InfoGANCRConfig(ObjectiveConfig):
    """Defaults: the authors' dSprites config (fjxmlzn/InfoGAN-CR, InfoGAN-CR_dSprites/config.py):
    5 uniform codes + 5 uniform noise dims, info_coe_de = info_coe_infod = 0.05, cr_coe 0 -> 2.0
    at batch 288,000, de_lr 1e-3, infod_lr = crd_lr = 2e-3 (Adam beta1 0.5), q_std 1, Q hidden 128,
    two generator updates per step. ``inversion_weight``, ``roundtrip_weight`` and
    ``generator_recon_weight`` (0: off) are this project's."""

    num_codes: int = 5
    num_noise: int = 5
    info_weight_generator: float = 0.05
    info_weight_discriminator: float = 0.05
    cr_weight: float = 2.0
    cr_start_step: int = 288_000
    q_std: float = 1.0
    q_hidden: int = 128
    spectral_norm: bool = True
    generator_steps: int = 2
    generator_lr: float = 1e-3
    generator_beta1: float = 0.5
    discriminator_lr: float = 2e-3
    discriminator_beta1: float = 0.5
    cr_discriminator_lr: float = 2e-3
    cr_discriminator_beta1: float = 0.5
    inversion_weight: float = 1.0
    roundtrip_weight: float = 1.0
    generator_recon_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.num_codes < 1 or self.num_noise < 0:
            raise ValueError(f"infogan_cr needs num_codes >= 1 and num_noise >= 0, got {self.num_codes}, "
                             f"{self.num_noise}")
        if self.generator_steps < 1:
            raise ValueError(f"infogan_cr: generator_steps must be >= 1, got {self.generator_steps}")


class InfoGANCR(VAEObjective):
    """InfoGAN-CR (Lin et al. 2020) with an inversion encoder; see the module docstring.

    The trainer's optimizer (``[optimizer]``) trains the encoder on :meth:`loss_terms`; the
    generator (the decoder), D and H learn in :meth:`auxiliary_step` with their own Adams, on
    the real batch the last :meth:`loss` call saw.
    """

    name = "infogan_cr"
    Config = InfoGANCRConfig
    config: InfoGANCRConfig
    graph_safe = False  # three optimizers of its own

    def __init__(self, model: VAEModel, config: InfoGANCRConfig | None = None) -> None:
        super().__init__(model, config)
        c, m = self.config, model.config
        if m.latent_dim != c.num_codes + c.num_noise:
            raise ValueError(f"infogan_cr: model.latent_dim ({m.latent_dim}) must equal num_codes + num_noise "
                             f"({c.num_codes} + {c.num_noise})")
        self.discriminator = InfoDiscriminator(m.channels, m.image_size, c.num_codes, c.q_hidden, c.spectral_norm)
        self.cr_discriminator = CRDiscriminator(m.channels, m.image_size, c.num_codes, c.spectral_norm)
        self.generator_optimizer = torch.optim.Adam(
            self.model.decoder.parameters(), lr=c.generator_lr, betas=(c.generator_beta1, 0.999))
        self.discriminator_optimizer = torch.optim.Adam(
            self.discriminator.parameters(), lr=c.discriminator_lr, betas=(c.discriminator_beta1, 0.999))
        self.cr_optimizer = self._new_cr_optimizer()
        self._real: torch.Tensor | None = None  # the last real batch and its encoder codes, for the GAN step
        self._real_codes: torch.Tensor | None = None

    def _new_cr_optimizer(self) -> torch.optim.Adam:
        c = self.config
        return torch.optim.Adam(self.cr_discriminator.parameters(), lr=c.cr_discriminator_lr,
                                betas=(c.cr_discriminator_beta1, 0.999))

    # -- pieces -----------------------------------------------------------------------
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """Images sigmoid(G(z)): (N, D) -> (N, C, S, S) in [0, 1]."""
        return torch.sigmoid(self.model.decoder(z))

    def cr_weight_at(self, step: int) -> float:
        """lambda(step): 0 before ``cr_start_step``, ``cr_weight`` from it on."""
        return self.config.cr_weight if step >= self.config.cr_start_step else 0.0

    def q_nll(self, q: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """-log Q(c | x), Gaussian of std q_std, summed over codes, batch mean. q, codes: (N, K) -> ()."""
        log_var = torch.full_like(q, 2.0 * math.log(self.config.q_std))
        return -gaussian_log_density(codes, q, log_var).sum(dim=1).mean()

    # -- the encoder's loss (the trainer's optimizer) -------------------------------------
    def _real_images(self, batch: Batch) -> torch.Tensor:
        if isinstance(batch, (tuple, list)):
            raise TypeError("infogan_cr takes single images, not pairs; set pairs=False on the stream")
        return batch

    def loss_terms(self, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Inversion on generated images + round trip on the real batch; only the encoder learns.

        batch: (B, C, S, S) real images in [0, 1]. Terms: loss, inversion, recon (the round trip),
        code_mse (mean squared error of the recovered codes, a read-out, not optimised by itself).
        """
        c = self.config
        real = self._real_images(batch)
        self._real = real.detach()
        b = real.shape[0]
        z = sample_latents(b, c.num_codes, c.num_noise, real.device)
        with torch.no_grad():
            fake = self.generate(z)
        mean, log_var = self.model.encoder(fake)
        inversion = -gaussian_log_density(z, mean, log_var).sum(dim=1).mean()
        code_mse = (mean[:, : c.num_codes] - z[:, : c.num_codes]).pow(2).mean().detach()
        view = real if self.encoder_view is None else self.encoder_view(real)
        real_mean, _ = self.model.encoder(view)
        self._real_codes = real_mean.detach()
        frozen = {k: v.detach() for k, v in self.model.decoder.named_parameters()}
        logits = functional_call(self.model.decoder, frozen, (real_mean,))
        recon = bernoulli_reconstruction(logits, real).mean()
        loss = c.inversion_weight * inversion + c.roundtrip_weight * recon
        return loss, {"loss": loss, "inversion": inversion, "recon": recon, "code_mse": code_mse}

    # -- the GAN (its own optimizers) ------------------------------------------------------
    def auxiliary_step(self, step: int) -> Logs:
        """H step, D step, then ``generator_steps`` generator steps, on one draw of latents."""
        if self._real is None:
            raise RuntimeError("infogan_cr: call loss() before auxiliary_step()")
        real, codes, self._real, self._real_codes = self._real, self._real_codes, None, None
        c = self.config
        if step == c.cr_start_step and step > 0:  # the authors restart H when lambda rises
            fresh = CRDiscriminator(self.model.config.channels, self.model.config.image_size, c.num_codes,
                                    c.spectral_norm).to(real.device)
            self.cr_discriminator.load_state_dict(fresh.state_dict())
            self.cr_optimizer = self._new_cr_optimizer()
        b, dev = real.shape[0], real.device
        z = sample_latents(b, c.num_codes, c.num_noise, dev)
        z1, z2, shared = sample_cr_pairs(b, c.num_codes, c.num_noise, dev)
        with torch.no_grad():
            fake, fake1, fake2 = self.generate(torch.cat([z, z1, z2])).split(b)

        self.cr_optimizer.zero_grad(set_to_none=True)
        cr_logits = self.cr_discriminator(fake1, fake2)
        h_loss = F.cross_entropy(cr_logits, shared)
        cr_acc = (cr_logits.argmax(dim=1) == shared).float().mean()
        self._finish(step, {"cr_discriminator_loss": h_loss})
        h_loss.backward()
        self.cr_optimizer.step()

        self.discriminator_optimizer.zero_grad(set_to_none=True)
        real_logit, _ = self.discriminator(real)
        fake_logit, q = self.discriminator(fake)
        d_gan = (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
                 + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))
        d_info = self.q_nll(q, z[:, : c.num_codes])
        d_loss = d_gan + c.info_weight_discriminator * d_info
        self._finish(step, {"discriminator_loss": d_loss})
        d_loss.backward()
        self.discriminator_optimizer.step()

        lam = self.cr_weight_at(step)
        self.discriminator.requires_grad_(False)
        self.cr_discriminator.requires_grad_(False)
        try:
            for _ in range(c.generator_steps):
                self.generator_optimizer.zero_grad(set_to_none=True)
                fake, fake1, fake2 = self.generate(torch.cat([z, z1, z2])).split(b)
                fake_logit, q = self.discriminator(fake)
                g_gan = F.binary_cross_entropy_with_logits(fake_logit, torch.ones_like(fake_logit))
                g_info = self.q_nll(q, z[:, : c.num_codes])
                g_cr = F.cross_entropy(self.cr_discriminator(fake1, fake2), shared)
                g_loss = g_gan + c.info_weight_generator * g_info + lam * g_cr
                if c.generator_recon_weight > 0:
                    g_recon = bernoulli_reconstruction(self.model.decoder(codes), real).mean()
                    g_loss = g_loss + c.generator_recon_weight * g_recon
                self._finish(step, {"generator_loss": g_loss})
                g_loss.backward()
                self.generator_optimizer.step()
        finally:
            self.discriminator.requires_grad_(True)
            self.cr_discriminator.requires_grad_(True)
        return {
            "generator_loss": float(g_loss.detach()), "generator_gan": float(g_gan.detach()),
            "generator_cr": float(g_cr.detach()), "q_nll": float(g_info.detach()),
            "discriminator_loss": float(d_loss.detach()), "discriminator_gan": float(d_gan.detach()),
            "cr_discriminator_loss": float(h_loss.detach()), "cr_accuracy": float(cr_acc), "cr_weight": lam,
            **({"generator_recon": float(g_recon.detach())} if c.generator_recon_weight > 0 else {}),
        }

    # -- checkpoints -----------------------------------------------------------------------
    def auxiliary_state_dict(self) -> dict[str, Any]:
        return {
            "generator_optimizer": self.generator_optimizer.state_dict(),
            "discriminator_optimizer": self.discriminator_optimizer.state_dict(),
            "cr_optimizer": self.cr_optimizer.state_dict(),
        }

    def load_auxiliary_state_dict(self, state: dict[str, Any]) -> None:
        missing = {"generator_optimizer", "discriminator_optimizer", "cr_optimizer"} - set(state)
        if missing:
            raise ValueError(f"infogan_cr checkpoint lacks optimizer state {sorted(missing)}")
        self.generator_optimizer.load_state_dict(state["generator_optimizer"])
        self.discriminator_optimizer.load_state_dict(state["discriminator_optimizer"])
        self.cr_optimizer.load_state_dict(state["cr_optimizer"])

    def vae_parameters(self):
        """The trainer's optimizer trains the encoder only; the generator has its own Adam."""
        return self.model.encoder.parameters()

    def distribute(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        raise NotImplementedError("infogan_cr trains in one process; run it without torchrun")
