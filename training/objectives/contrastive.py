"""Contrastive pairs: the representation from InfoNCE on weakly supervised pairs, the decoder on top.

Which contrastive method fits latentdial
----------------------------------------
DisCo (Ren et al. 2022, "Learning Disentangled Representation by Exploiting Pretrained
Generative Models: A Contrastive Learning View", ICLR) contrasts *variations*: it needs a
pretrained generator, learns directions in that generator's latent space and contrasts the
image changes they cause. latentdial has no pretrained generator to start from, and its
exported contract is an encoder/decoder pair trained together, so DisCo would need a second
training stage and a third network before anything could be served.

The data latentdial already streams fits a contrastive objective directly: the weakly
supervised pairs of Ada-GVAE (Locatello et al. 2020, "Weakly-Supervised Disentanglement
Without Compromises", ICML; ``training/data/pairs.py``), two images that share all factors
but k. A pair is a positive for the factors it shares, every other image of the batch a
negative. InfoNCE (Oord et al. 2018, "Representation Learning with Contrastive Predictive
Coding") on such views identifies the shared ("content") block of the latents up to an
invertible map (von Kuegelgen et al. 2021, "Self-Supervised Learning with Data Augmentations
Provably Isolates Content from Style", NeurIPS); because the shared set changes from pair to
pair (a different k factors change each time), contrasting on many shared sets pins the
factors down one by one, as the pairs do for Ada-GVAE. The same objective takes augmentation
invariance for free: with ``[augment]`` on, the encoder sees redrawn views and the InfoNCE
positives are views of images sharing those factors.

The objective
-------------
Both images of a pair are encoded to their means a = mean(x1), b = mean(x2), (N, D) each.

1. Which dims the pair shares is not given (as in Ada-GVAE): per pair i and dim d,
   delta_id = (a_id - b_id)^2 on the batch-standardised codes, tau_i = (max_d + min_d) / 2,
   and dims with delta_id < tau_i count as shared (w_id = 1), the others as changed
   (Ada-GVAE's adaptive rule on the codes rather than on the posteriors' KL). w is DETACHED.
2. InfoNCE over the batch on the shared dims: with s_i(u, v) = sum_d w_id (u_d - v_d)^2 /
   sum_d w_id on the standardised codes, logits_ij = -s_i(a_i, b_j) / temperature, and the
   pair's partner is the positive: loss = 1/2 [CE(logits_i., i) + CE(logits'_i., i)] with
   logits'_ij = -s_i(b_i, a_j) / temperature, averaged over pairs. Dims judged changed are
   free to differ within the pair; the denominator spreads the shared dims over the batch
   (the uniformity side of InfoNCE), so no dim collapses.
3. InfoNCE is scale-free (it reads standardised codes); ``moment_weight`` * sum_d
   (mean_d^2 / var_d + (log var_d)^2) of the raw codes over the batch only fixes each dim's
   offset and scale (the codes stay near zero mean and unit variance, the range serving's
   traversals and samples assume). It cannot prefer one factor over another, and, being
   scale-free too, it keeps its say against the InfoNCE whatever the codes' scale (a plain
   (var_d - 1)^2 has a vanishing gradient on the tiny codes of an untrained encoder).
4. The decoder reads the DETACHED codes plus N(0, ``decoder_noise``^2) noise and is trained
   with the Bernoulli reconstruction of both images; its gradient stops at the codes, so the
   representation comes from steps 2-3 alone, and the decoder makes it editable.

The encoder's ``log_var`` head is fixed at construction to the constant log(decoder_noise^2)
(weights zero, bias the constant, ``requires_grad`` off), so the exported encoder keeps the
(mean, log_var) contract and a served sample mean + exp(log_var / 2) * eps draws exactly the
noise the decoder was trained under. The logged ``kl`` is the KL of that fixed posterior to
N(0, I), a diagnostic only: it is not in the loss.

Template hooks: :meth:`inputs` (the pair), :meth:`hook_latents` (detach) and
:meth:`regularizer` (steps 1-3, replacing the KL); :meth:`vae_parameters` leaves the fixed head
out of the optimizer.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from latentdial.training.model import VAEModel
from latentdial.training.objectives.base import Batch, Inputs, ObjectiveConfig, VAEObjective


def standardise(codes: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Each dim to zero mean and unit variance over the batch. codes (M, D) -> (M, D)."""
    mean = codes.mean(dim=0, keepdim=True)
    var = codes.var(dim=0, unbiased=False, keepdim=True)
    return (codes - mean) * torch.rsqrt(var + eps)


def shared_dims(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Ada-GVAE's adaptive rule on codes: 1 where a pair's dim moved less than the midpoint
    (max + min) / 2 of its squared changes, else 0.

    a, b: (N, D) codes of the two images of each pair. Returns (N, D) float, detached; every
    row has at least one shared dim (its smallest change is below the midpoint unless all
    changes tie, and then every dim counts as shared).
    """
    delta = (a - b).detach().pow(2)  # (N, D)
    tau = 0.5 * (delta.max(dim=1, keepdim=True).values + delta.min(dim=1, keepdim=True).values)
    ties = (delta.max(dim=1, keepdim=True).values == delta.min(dim=1, keepdim=True).values)
    return ((delta < tau) | ties).to(a.dtype)


def masked_sq_distances(u: torch.Tensor, v: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """s_ij = sum_d w_id (u_id - v_jd)^2 / sum_d w_id: row i's weights measure it against every v_j.

    u, v, weights: (N, D). Returns (N, N).
    """
    diff = (u[:, None, :] - v[None, :, :]).pow(2)  # (N, N, D)
    return (diff * weights[:, None, :]).sum(dim=2) / weights.sum(dim=1, keepdim=True).clamp_min(1.0)


def pair_infonce(a: torch.Tensor, b: torch.Tensor, weights: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE (Oord et al. 2018) with the pair's partner as the positive and the rest
    of the batch as negatives, distances on each pair's shared dims (:func:`masked_sq_distances`).

    a, b: (N, D) standardised codes of x1 and x2; weights: (N, D) shared dims. Returns ().
    """
    target = torch.arange(a.shape[0], device=a.device)
    forward = F.cross_entropy(-masked_sq_distances(a, b, weights) / temperature, target)
    backward = F.cross_entropy(-masked_sq_distances(b, a, weights) / temperature, target)
    return 0.5 * (forward + backward)


def moment_penalty(codes: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """sum_d (mean_d^2 / var_d + (log var_d)^2) over the batch: 0 at zero mean and unit variance.

    It ties each dim's offset and scale and nothing else. Both parts are scale-free like the
    standardised InfoNCE (multiplying the codes by s changes neither the first part nor, beyond
    a shift of log s^2, the second), so their gradients stay of the InfoNCE's size at any scale
    and Adam weighs the two alike. codes (M, D) -> ().
    """
    mean = codes.mean(dim=0)
    var = codes.var(dim=0, unbiased=False) + eps
    return (mean.pow(2) / var + torch.log(var).pow(2)).sum()


@dataclass
class ContrastiveConfig(ObjectiveConfig):
    """temperature 1.0 on the mean squared distance of standardised codes (a random pair sits
    near 2, a matched one near 0). On dSprites pairs a sharper 0.1 left the InfoNCE above
    chance (log 64) for the first hundreds of steps while 1.0 fell below it at once (a few
    hundred steps on one thread, lr 1e-4, batch 64): with the sharp one the loss is ruled by the
    nearest negative before the codes mean anything.

    contrastive_weight: weight of the InfoNCE term. The reconstruction trains only the decoder
        and the InfoNCE and moment terms only the encoder, so this weight matters only
        relative to ``moment_weight``.
    moment_weight: weight of the offset/scale anchor (step 3 of the module docstring).
    decoder_noise: std of the noise added to the detached codes the decoder reads; also the
        encoder's fixed posterior std. Must be > 0.
    pair_k: how many factors differ within a pair, as for Ada-GVAE (0: drawn from 1 .. F-1).
    """

    temperature: float = 1.0
    contrastive_weight: float = 1.0
    moment_weight: float = 1.0
    decoder_noise: float = 0.05
    pair_k: int = 0


class ContrastivePairs(VAEObjective):
    """InfoNCE on weakly supervised pairs for the encoder, reconstruction from detached codes
    for the decoder (module docstring). Consumes PAIRS (x1, x2) like Ada-GVAE.

    loss = recon(x1) + recon(x2) [decoder only]
           + contrastive_weight * InfoNCE(shared dims) + moment_weight * moments [encoder only].
    """

    name = "contrastive"
    Config = ContrastiveConfig
    config: ContrastiveConfig
    requires_pairs = True

    def __init__(self, model: VAEModel, config: ContrastiveConfig | None = None) -> None:
        super().__init__(model, config)
        c = self.config
        if not c.decoder_noise > 0:
            raise ValueError(f"contrastive: decoder_noise must be > 0, got {c.decoder_noise}")
        if not c.temperature > 0:
            raise ValueError(f"contrastive: temperature must be > 0, got {c.temperature}")
        head: nn.Linear = model.encoder.log_var
        with torch.no_grad():
            head.weight.zero_()
            head.bias.fill_(2.0 * math.log(c.decoder_noise))
        for p in head.parameters():
            p.requires_grad_(False)

    def inputs(self, batch: Batch) -> Inputs:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise TypeError("contrastive needs pairs (x1, x2); build the stream with pairs=True")
        return Inputs(images=torch.cat(list(batch), dim=0), per_example=2)  # (2N, C, H, W): x1 then x2

    def hook_latents(self, z: torch.Tensor, mean: torch.Tensor, inputs: Inputs) -> torch.Tensor:
        """The decoder reads z = mean + decoder_noise * eps with its gradient stopped: (M, D)."""
        return z.detach()

    def regularizer(self, kl, mean, log_var, z, step):
        n = mean.shape[0] // 2
        std = standardise(mean)  # (2N, D), statistics over both images of every pair
        a, b = std[:n], std[n:]
        weights = shared_dims(a, b)
        nce = pair_infonce(a, b, weights, self.config.temperature)
        moments = moment_penalty(mean)
        reg = self.config.contrastive_weight * nce + self.config.moment_weight * moments
        return reg, {"infonce": nce, "moments": moments, "shared_dims": weights.sum(dim=1).mean()}

    def vae_parameters(self) -> Iterator[nn.Parameter]:
        """Every trained parameter: all but the fixed ``log_var`` head."""
        return (p for p in self.model.parameters() if p.requires_grad)
