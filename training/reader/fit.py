"""Training the attribute reader on ground-truth renders, and its held-out accuracy.

The reader only ever sees the procedural dataset's own renders, never a model's output.
Each training image is softened the way a decoder softens: a Gaussian blur of random width
(sigma up to ``MAX_BLUR`` px, 0 for a quarter of the images), a contrast between 0.7 and 1
and a little pixel noise. The blur stays small so that a slightly soft sprite keeps its
shape while a blob, which no render looks like, is not read as a heart.

Losses per head: cross-entropy for shape, scale and hues; mean squared error for the
orientation pair (cos k theta, sin k theta) of the true shape's symmetry k and for the
offset (pixels) between the centre of mass and the sprite centre.

A reader can also be trained on a union of renderers of one factor grid (``RenderUnion``:
each image drawn by one of them, chosen uniformly), so that it reads images drawn by other
conventions (``dsprites_elsewhere``) as well as the training renderer's.

Any other dataset that renders from factors gets the generic reader (:mod:`.generic`: the whole
image, one classification head per factor), trained by :func:`fit_reader` too.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from latentdial.training.data.base import GroundTruthData
from latentdial.training.data.dsprites import ORIENTATIONS

from .network import SYMMETRY, centre_crop
from .reading import EXACT, READABLE, AttributeReader, agreement

MAX_BLUR = 1.0


class RenderUnion(GroundTruthData):
    """One factor grid drawn by several renderers: each image comes from one of ``datasets``,
    chosen uniformly per image. The datasets must share factor names and grids; the union has
    the first one's (its observations are (N, C, H, W) like theirs)."""

    def __init__(self, datasets: list[GroundTruthData]) -> None:
        if not datasets:
            raise ValueError("a union of renderers needs at least one dataset")
        first = datasets[0]
        for other in datasets[1:]:
            same = (tuple(other.factor_names) == tuple(first.factor_names)
                    and tuple(other.factors_num_values) == tuple(first.factors_num_values)
                    and tuple(other.observation_shape) == tuple(first.observation_shape)
                    and all(np.allclose(other.factor_grid(f), first.factor_grid(f)) for f in range(first.num_factors)))
            if not same:
                raise ValueError(f"{getattr(other, 'name', other)!r} does not draw the factor grid and image shape "
                                 f"of {getattr(first, 'name', first)!r}; a reader can only be trained on renderers "
                                 "of one grid")
        self.datasets = list(datasets)
        self.name = "+".join(str(getattr(d, "name", type(d).__name__)) for d in datasets)
        self.factor_names = tuple(first.factor_names)
        self.factors_num_values = tuple(first.factors_num_values)
        self.factor_kinds = tuple(first.factor_kinds)
        self.observation_shape = tuple(first.observation_shape)

    def factor_grid(self, factor: int) -> np.ndarray:
        return self.datasets[0].factor_grid(factor)

    def factor_labels(self, factor: int) -> list[str]:
        return self.datasets[0].factor_labels(factor)

    def circular_symmetry(self, factor: int) -> tuple[int, tuple[int, ...]] | None:
        return self.datasets[0].circular_symmetry(factor)

    def sample_factors(self, num: int, rng: np.random.Generator) -> np.ndarray:
        return self.datasets[0].sample_factors(num, rng)

    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        factors = np.asarray(factors)
        which = rng.integers(0, len(self.datasets), size=len(factors))
        out = np.empty((len(factors), *self.observation_shape), np.float32)
        for j, data in enumerate(self.datasets):
            if (which == j).any():
                out[which == j] = data.sample_observations_from_factors(factors[which == j], rng)
        return out


def blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian blur with a per-image width; sigma 0 leaves an image as it is.

    Args:
        images: (N, C, H, W); sigma: (N,) pixels.
    """
    n, c, h, w = images.shape
    radius = 3
    t = torch.arange(-radius, radius + 1, dtype=images.dtype)
    s = sigma.clamp(min=1e-3)[:, None]
    g = torch.exp(-0.5 * (t[None] / s) ** 2)
    g = g / g.sum(dim=1, keepdim=True)  # (N, 7); sigma -> 0 gives a delta
    k = (g[:, :, None] * g[:, None, :]).repeat_interleave(c, dim=0)[:, None]  # (N*C, 1, 7, 7)
    padded = F.pad(images.reshape(1, n * c, h, w), (radius,) * 4, mode="replicate")
    return F.conv2d(padded, k, groups=n * c).reshape(n, c, h, w)


def augment(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Soften renders like a decoder output: blur, contrast, noise (see the module docstring)."""
    n = images.shape[0]
    sigma = torch.rand(n, generator=gen) * MAX_BLUR
    sigma = torch.where(torch.rand(n, generator=gen) < 0.25, torch.zeros_like(sigma), sigma)
    x = blur(images, sigma)
    contrast = 0.7 + 0.3 * torch.rand(n, 1, 1, 1, generator=gen)
    x = x * contrast + 0.02 * torch.randn(x.shape, generator=gen)
    return x.clamp(0, 1)


def _loss(reader: AttributeReader, crops: torch.Tensor, centres: torch.Tensor,
          factors: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    names = reader.factor_names
    col = {name: factors[:, i] for i, name in enumerate(names)}
    out = reader.net(crops)
    shape = col["shape"]
    k = torch.as_tensor(SYMMETRY, dtype=torch.float32)[shape]
    theta = torch.as_tensor(ORIENTATIONS, dtype=torch.float32)[col["orientation"]]
    pair = out["orientation"].view(-1, reader.net.heads.num_shapes, 2)[torch.arange(len(shape)), shape]
    target_pair = torch.stack([torch.cos(k * theta), torch.sin(k * theta)], dim=1)
    centre = torch.stack([col["pos_x"], col["pos_y"]], dim=1).float() + 16.0
    target_offset = centre - centres
    terms = {
        "shape": F.cross_entropy(out["shape"], shape),
        "scale": F.cross_entropy(out["scale"], col["scale"]),
        "orientation": F.mse_loss(pair, target_pair),
        "offset": F.mse_loss(out["offset"], target_offset),
    }
    for hue in ("object_hue", "background_hue"):
        if hue in col:
            terms[hue] = F.cross_entropy(out[hue], col[hue])
    total = sum(terms.values())
    return total, {name: float(v.detach()) for name, v in terms.items()}


def fit_reader(dataset: GroundTruthData, name: str, *, steps: int = 1500, batch_size: int = 128,
               lr: float = 2e-3, seed: int = 0, progress: bool = True) -> AttributeReader:
    """Train a reader for ``dataset`` (registered as ``name``) on its own renders.

    Adam at ``lr``, cosine-decayed to zero over ``steps``; a few minutes at the defaults on one
    CPU thread. A dataset without a dSprites reader (``READABLE``) gets the generic reader
    (:func:`.generic.fit_generic`).
    """
    if name not in READABLE:
        from .generic import fit_generic

        return fit_generic(dataset, name, steps=steps, batch_size=batch_size, lr=lr, seed=seed, progress=progress)
    torch.manual_seed(seed)
    reader = AttributeReader.build(name)
    reader.net.train()
    rng = np.random.default_rng([seed, 17])
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(reader.net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    bar = tqdm(range(steps), desc=f"reader {name}", disable=not progress, unit="step")
    for _ in bar:
        factors, images = dataset.sample(batch_size, rng)
        crops, centres = centre_crop(augment(torch.from_numpy(images), gen))
        loss, logs = _loss(reader, crops, centres, torch.from_numpy(factors))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
    reader.net.eval()
    return reader


def heldout_accuracy(reader: AttributeReader, dataset: GroundTruthData, *, num: int = 5000,
                     seed: int = 1, soft: bool = False) -> dict[str, dict[str, float]]:
    """The reader's accuracy per factor on ``num`` fresh renders (a seed training never used).

    ``soft=True`` blurs them first (sigma 0.7 px), like a slightly soft decoder output.
    Returns ``{factor: {"exact": ..., "edit_tolerance": ...}}``, the tolerance being the reader's
    own (``EDIT_TOLERANCE``; by kind for the generic reader).
    """
    rng = np.random.default_rng([seed, 99])
    factors, images = dataset.sample(num, rng)
    if soft:
        images = blur(torch.from_numpy(images), torch.full((num,), 0.7)).numpy()
    reading = reader.read(images)
    exact = agreement(reader.factor_names, reading, factors, EXACT).mean(axis=0)
    loose = agreement(reader.factor_names, reading, factors, reader.tolerance).mean(axis=0)
    return {n: {"exact": float(exact[i]), "edit_tolerance": float(loose[i])}
            for i, n in enumerate(reader.factor_names)}
