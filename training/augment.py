"""Label-preserving views of the encoder's input, for an encoder that reads images drawn elsewhere.

The encoder sees a randomly redrawn view of each image while the decoder still reconstructs
the clean one (the denoising auto-encoder's split: Vincent et al. 2008, "Extracting and
Composing Robust Features with Denoising Autoencoders"). The redrawings are small enough
that no factor's label changes (a fraction of a grid step of position, scale and
orientation on dSprites) and wide enough to cover what another renderer does differently:
anti-aliased grey edges, sub-pixel placement, a slightly other size and a slightly other
outline (randomising the rendering so the real one is one more variation: Tobin et al.
2017, "Domain Randomization for Transferring Deep Neural Networks from Simulation to the
Real World").

``[augment]`` in a training config::

    [augment]
    p = 0.75                 # share of images redrawn; the rest are seen clean
    degrees = 2.0            # rotation, +- degrees (dSprites: 9 degrees a step)
    translate_px = 0.5       # shift, +- pixels on each axis (dSprites: 1 pixel a step)
    scale = 0.04             # size, 1 +- scale (dSprites: 0.1 a step at scale 1 of 0.5-1)
    elastic_px = 0.8         # outline warp: mean displacement in pixels, smooth over ~6 px
    blur_sigma = 0.6         # Gaussian blur, sigma drawn in [0.1, blur_sigma] pixels

    families = 0.0           # share of labelled images drawn again from their factors by
                             # randomised renderers (training/outline_families.py; dSprites grid)

All off (``p = 0``, ``families = 0``) by default. The warps are Kornia's batched augmentations,
each image with its own parameters; both kinds of view run in the training step, on the training
device. An image drawn again from its factors may then be warped as well.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

if TYPE_CHECKING:
    from latentdial.training.outline_families import OutlineFamilies


@dataclass(frozen=True)
class AugmentConfig:
    """The ``[augment]`` table; every field's unit is in the module docstring."""

    p: float = 0.0
    degrees: float = 2.0
    translate_px: float = 0.5
    scale: float = 0.04
    elastic_px: float = 0.8
    blur_sigma: float = 0.6
    families: float = 0.0

    #: fields added after runs were recorded without them: written only when set, so those runs
    #: still resume and read back from their ledgers as the same recipe
    WRITTEN_WHEN_SET: ClassVar[tuple[str, ...]] = ("families",)

    def __post_init__(self) -> None:
        for name in ("p", "families"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"augment.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("degrees", "translate_px", "scale", "elastic_px", "blur_sigma"):
            if getattr(self, name) < 0:
                raise ValueError(f"augment.{name} must be >= 0, got {getattr(self, name)}")
        if self.scale >= 1:
            raise ValueError(f"augment.scale must be < 1 (sizes 1 +- scale), got {self.scale}")

    @property
    def enabled(self) -> bool:
        return self.p > 0 or self.families > 0

    def to_dict(self) -> dict[str, Any]:
        defaults = AugmentConfig()
        return {k: v for k, v in asdict(self).items()
                if k not in self.WRITTEN_WHEN_SET or v != getattr(defaults, k)}


#: the smoothing of the elastic field, in pixels: outlines bend, edges stay straight locally
ELASTIC_SMOOTHING_PX = 6.0


def _elastic_alpha(displacement_px: float, image_size: int) -> float:
    """Kornia's ``alpha`` that gives a mean displacement of ``displacement_px`` pixels.

    Kornia draws uniform noise in [-1, 1] per pixel (standard deviation 1 / sqrt(3)),
    smooths it with a unit-sum Gaussian of ``sigma`` pixels (the standard deviation then
    falls by 2 sqrt(pi) sigma in 2-D) and scales it by ``alpha`` in normalised coordinates,
    where the image spans 2 (a pixel is 2 / image_size). The mean absolute value of a
    normal variable is sqrt(2 / pi) times its standard deviation.
    """
    smoothed_sd = (1 / math.sqrt(3)) / (2 * math.sqrt(math.pi) * ELASTIC_SMOOTHING_PX)
    mean_abs = math.sqrt(2 / math.pi) * smoothed_sd
    return displacement_px * (2 / image_size) / mean_abs


def moments(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """images (N, C, H, W) -> (centres (N, 2), masses (N,)): the (x, y) centre of the summed
    intensity in pixels (an empty image's is the image's centre) and the summed intensity."""
    h, w = images.shape[-2:]
    mass = images.sum(dim=1)  # (N, H, W)
    total = mass.sum(dim=(1, 2))  # (N,)
    xs = (mass * torch.arange(w, device=images.device, dtype=images.dtype)).sum(dim=(1, 2))
    ys = (mass * torch.arange(h, device=images.device, dtype=images.dtype).view(h, 1)).sum(dim=(1, 2))
    middle = torch.tensor([(w - 1) / 2, (h - 1) / 2], device=images.device, dtype=images.dtype)
    centre = torch.stack([xs, ys], dim=1) / total.clamp_min(1e-6).unsqueeze(1)
    return torch.where((total > 1e-6).unsqueeze(1), centre, middle), total


class EncoderView(nn.Module):
    """(N, C, H, W) images in [0, 1] (and their (N, F) factor indices, -1 where unlabelled) -> the
    same shape: a share ``families`` of the fully labelled images drawn again from their factors
    by randomised renderers (``OutlineFamilies``), then a random label-preserving warp of a share
    ``p`` of all of them (each with its own parameters), clipped to [0, 1].

    The warp, in order: the outline warp (Kornia's elastic transform); then one affine map about the
    object's centre of mass that turns it, brings its area back to the source's and then
    ``scale`` at most from it, and puts its centre ``translate_px`` at most from where it
    was; then the blur. (A warp over a small object is nearly a shift and a change of size,
    which the affine map undoes; a turn about the image's centre would move an object off
    its position label.)
    """

    def __init__(self, cfg: AugmentConfig, image_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.families: OutlineFamilies | None = None
        if cfg.families > 0:
            from latentdial.training.outline_families import OutlineFamilies

            self.families = OutlineFamilies()
        self.warp: nn.Module | None = None
        self.blur: nn.Module | None = None
        if cfg.p == 0:
            return
        import kornia.augmentation as K  # only runs that warp need Kornia

        if cfg.elastic_px > 0:
            kernel = 2 * math.ceil(3 * ELASTIC_SMOOTHING_PX) + 1
            alpha = _elastic_alpha(cfg.elastic_px, image_size)
            self.warp = K.RandomElasticTransform(
                kernel_size=(kernel, kernel), sigma=(ELASTIC_SMOOTHING_PX, ELASTIC_SMOOTHING_PX),
                alpha=(alpha, alpha), p=1.0,
            )
        if cfg.blur_sigma > 0:
            sigma = max(cfg.blur_sigma, 0.1)
            kernel = 2 * math.ceil(3 * sigma) + 1
            self.blur = K.RandomGaussianBlur((kernel, kernel), (0.1, sigma), p=1.0)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.families is not None:
            if labels is None:
                raise ValueError("augment.families draws images from their factors, but the batch has no labels")
            chosen = (labels >= 0).all(dim=1) & (torch.rand(images.shape[0], device=images.device) < self.cfg.families)
            if bool(chosen.any()):
                images = images.clone()
                images[chosen] = self.families(labels[chosen]).to(images.dtype)
        if self.cfg.p == 0:
            return images
        chosen = torch.rand(images.shape[0], device=images.device) < self.cfg.p  # (N,)
        if not bool(chosen.any()):
            return images
        out = images.clone()
        out[chosen] = self.redraw(images[chosen])
        return out

    def redraw(self, images: torch.Tensor) -> torch.Tensor:
        """Redraw every one of ``images`` (N, C, H, W)."""
        from kornia.geometry.transform import get_rotation_matrix2d, warp_affine

        n, (h, w) = images.shape[0], images.shape[-2:]
        before, mass_before = moments(images)  # (N, 2), (N,)
        x = self.warp(images) if self.warp is not None else images
        after, mass_after = moments(x)
        restore = (mass_before / mass_after.clamp_min(1e-6)).sqrt().where(mass_after > 1e-6, 1.0)

        def uniform(bound: float, *shape: int) -> torch.Tensor:
            return (torch.rand(*shape, device=images.device) * 2 - 1) * bound

        angle = uniform(self.cfg.degrees, n)
        scale = (restore * (1 + uniform(self.cfg.scale, n))).unsqueeze(1).expand(n, 2)
        matrix = get_rotation_matrix2d(after, angle, scale)  # (N, 2, 3), about the warped centre
        matrix[:, :, 2] += before - after + uniform(self.cfg.translate_px, n, 2)
        x = warp_affine(x, matrix, (h, w))
        if self.blur is not None:
            x = self.blur(x)
        return x.clamp(0.0, 1.0)


def build_encoder_view(cfg: AugmentConfig, image_size: int, dataset: object | None = None) -> EncoderView | None:
    """The encoder's view for a run, or None when ``cfg`` redraws nothing.

    Raises ValueError when ``cfg.families`` is set but ``dataset`` does not draw dSprites' grid.
    """
    if cfg.families > 0:
        from latentdial.training.outline_families import check_dsprites_grid

        check_dsprites_grid(dataset)
    return EncoderView(cfg, image_size) if cfg.enabled else None
