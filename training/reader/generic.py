"""The generic attribute reader: one classification head per factor, for any dataset that renders.

The dSprites readers (:mod:`.network`) know their sprites: a crop around the centre of mass
sized for them, the shapes' symmetries, the position as a regressed offset. A dataset of
someone else's making (``idsprites``, or any ``GroundTruthData`` that draws an image for a
factor vector) gets this reader instead, which assumes nothing but the dataset's factor
layout (:class:`~.reading.FactorLayout`: names, kinds, grids, symmetry, image shape).

**What it reads.** The image in two streams, plus where its object is. Three channels are
added to the image's own: the *foreground*, each pixel's largest channel distance from the
image's median colour (its background, whatever its colour, so a dark marker on a grey canvas
counts as much as a bright body), and the pixel's column and row on the canvas in [-1, 1]
(coordinate channels). The *near* stream reads a crop around the foreground's centre of mass
at full resolution, the dSprites reader's idea made generic: the crop's side is measured on
the dataset's own renders before training (:func:`measure_crop`: twice the farthest
foreground pixel from the centre of mass, plus a margin; the whole canvas when objects fill
it), and the crop carries the coordinate channels, so it still knows where it was cut. It
reads what an object looks like (shape, orientation, colour, size), which a whole-image net
of the same cost reads poorly: on ``idsprites`` a whole-image net read shape 0.68 after 1,750
steps, the crop 0.91 after 500. The *far* stream reads the whole image pooled to 32 x 32, so
nothing outside the crop is lost (a scene, a background colour). Their features and the centre
of mass (in [-1, 1]) feed one hidden layer of 256 and one classification head per factor over
its grid (``factors_num_values``). Nothing in it names a factor: a position is read from the
coordinates and the crop, like anything else.

**Circular factors are classified over their grid**, like the others, and compared with a
wrap-around tolerance (``EDIT_TOLERANCE_BY_KIND``), rather than regressed as (cos, sin):

- the edit evaluation asks for grid values and counts in grid steps, so a class per grid
  value is read out directly, with no angle-to-grid rounding and no assumption that the
  factor is an angle at all (a hue is circular too);
- a regression of (cos theta, sin theta) needs the symmetry order of the *shape being
  read* to be unambiguous (a square at 0 and 90 degrees is one image), which the dSprites
  reader handles with one pair per shape; a classifier simply learns to spread its
  probability over the equivalent classes, and training targets say so: the target of a
  row whose factor looks the same every period / k puts equal mass on the k equivalent grid
  values (from the dataset's ``circular_symmetry``);
- every head then shares one loss and one readout (argmax), continuous and circular alike.

The ordinal structure is kept by the targets: a continuous or circular factor's target is
a narrow Gaussian over the grid (``SMOOTH`` grid steps; around the circle for a circular
one) rather than a one-hot, so that a near miss costs less than a far one; the argmax of
the target is still the true value.

Training (:func:`fit_generic`) sees only the dataset's own renders, softened like a
decoder's output (:func:`.fit.augment`: blur, contrast, noise), fresh ones at every step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .reading import AttributeReader, FactorLayout, Reading

#: Width (grid steps) of the Gaussian target of a continuous or circular factor.
SMOOTH = 0.5
#: Foreground below this distance from the background colour is ignored when locating the object.
FOREGROUND_FLOOR = 0.1
#: Training recipe of generic readers (stored as the file's ``recipe``; see :mod:`.store`).
GENERIC_RECIPE = "generic-1"
#: Default training steps of a generic reader (batch 128).
GENERIC_STEPS = 2000


def foreground(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, 1, H, W): each pixel's largest channel distance from the image's median colour."""
    median = images.flatten(2).median(dim=2).values[:, :, None, None]
    return (images - median).abs().amax(dim=1, keepdim=True)


def centres_of_mass(weight: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) foreground -> (N, 2) (column, row) centres of mass of the part above ``FOREGROUND_FLOOR``;
    the canvas centre where there is none."""
    n, _, h, w = weight.shape
    weight = torch.where(weight > FOREGROUND_FLOOR, weight, torch.zeros_like(weight))[:, 0]
    mass = weight.sum(dim=(1, 2))
    safe = mass.clamp(min=1e-6)
    cols, rows = torch.arange(w, dtype=weight.dtype), torch.arange(h, dtype=weight.dtype)
    cx = torch.where(mass > 0, (weight.sum(dim=1) * cols).sum(dim=1) / safe, torch.full_like(mass, (w - 1) / 2))
    cy = torch.where(mass > 0, (weight.sum(dim=2) * rows).sum(dim=1) / safe, torch.full_like(mass, (h - 1) / 2))
    return torch.stack([cx, cy], dim=1)


def crop_around(x: torch.Tensor, centres: torch.Tensor, side: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, side, side) crops centred on the rounded ``centres`` (N, 2) (column, row);
    the canvas is padded by edge replication."""
    n = x.shape[0]
    half = side // 2
    padded = F.pad(x, (half, side - 1 - half) * 2, mode="replicate")
    at = centres.round().long()
    offsets = torch.arange(side)
    r = (at[:, 1:2] + offsets)[:, :, None]
    q = (at[:, 0:1] + offsets)[:, None, :]
    return padded[torch.arange(n)[:, None, None], :, r, q].permute(0, 3, 1, 2).contiguous()


def measure_crop(dataset, rng: np.random.Generator, num: int = 1000) -> int:
    """The crop side that holds every object of ``num`` renders whole: twice the farthest foreground pixel
    from its image's rounded centre of mass, plus a margin of 2 px a side; odd; at most the canvas."""
    _, images = dataset.sample(num, rng)
    x = torch.from_numpy(np.asarray(images, np.float32))
    fg = foreground(x)
    at = centres_of_mass(fg).round()
    rows, cols = torch.meshgrid(torch.arange(x.shape[2]), torch.arange(x.shape[3]), indexing="ij")
    reach = torch.maximum((cols[None] - at[:, 0, None, None]).abs(), (rows[None] - at[:, 1, None, None]).abs())
    far = int(torch.where(fg[:, 0] > FOREGROUND_FLOOR, reach, torch.zeros_like(reach)).max())
    side = 2 * (far + 2) + 1
    return int(min(side, (min(x.shape[2:]) - 1) | 1))


class GenericNet(nn.Module):
    """Image -> logits per factor (module docstring). (N, C, H, W) -> {factor: (N, K_f)}.

    Two streams of the image with its foreground and coordinate channels: ``near``, a crop of
    ``crop`` px around the object's centre of mass at full resolution (shape, orientation,
    colour, size), and ``far``, the whole image pooled to 32 x 32 (anything else); their features
    and the centre of mass feed one hidden layer and the heads.
    """

    def __init__(self, channels: int, sizes: Mapping[str, int], crop: int) -> None:
        super().__init__()
        self.sizes, self.crop = dict(sizes), int(crop)
        c = channels + 3
        self.near = nn.Sequential(
            nn.Conv2d(c, 32, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(3), nn.Flatten(),  # 576
        )
        self.far = nn.Sequential(
            nn.AdaptiveAvgPool2d(32),
            nn.Conv2d(c, 16, 3, stride=2, padding=1), nn.ReLU(),  # 16
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),  # 8
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),  # 4
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),  # 1024
        )
        self.hidden = nn.Sequential(nn.Linear(64 * 9 + 64 * 16 + 2, 256), nn.ReLU())
        self.out = nn.Linear(256, sum(self.sizes.values()))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        n, _, h, w = images.shape
        rows = torch.linspace(-1, 1, h, dtype=images.dtype)[None, None, :, None].expand(n, 1, h, w)
        cols = torch.linspace(-1, 1, w, dtype=images.dtype)[None, None, None, :].expand(n, 1, h, w)
        fg = foreground(images)
        x = torch.cat([images, fg, rows, cols], dim=1)
        centres = centres_of_mass(fg)
        near = self.near(crop_around(x, centres, self.crop))
        where = centres / torch.tensor([max(w - 1, 1), max(h - 1, 1)], dtype=images.dtype) * 2 - 1
        flat = self.out(self.hidden(torch.cat([near, self.far(x), where], dim=1)))
        return dict(zip(self.sizes, flat.split(list(self.sizes.values()), dim=1), strict=True))


class GenericReader(AttributeReader):
    """The reader of any dataset that renders from factors: ``read(images) -> Reading`` (grid indices)."""

    def __init__(self, dataset: str, layout: FactorLayout, net: GenericNet,
                 metadata: Mapping[str, str] | None = None) -> None:
        self.dataset, self.layout, self.net = dataset, layout, net.eval()
        self.factor_names = layout.names
        self.metadata = dict(metadata or {})

    @staticmethod
    def build(dataset: str, layout: FactorLayout | None = None, crop: int | None = None) -> GenericReader:  # type: ignore[override]
        """An untrained reader for the factors of ``layout`` (registered as ``dataset``) with crops of
        ``crop`` px (default: the whole canvas)."""
        if layout is None:
            raise ValueError("a generic reader is built from its dataset's factor layout")
        sizes = dict(zip(layout.names, layout.num_values, strict=True))
        side = crop or ((min(layout.image_shape[1:]) - 1) | 1)
        return GenericReader(dataset, layout, GenericNet(layout.image_shape[0], sizes, side))

    @property
    def tolerance(self) -> dict[str, int]:
        """The edit tolerance of this reader's factors by kind (``EDIT_TOLERANCE_BY_KIND``)."""
        assert self.layout is not None
        return self.layout.tolerance()

    @torch.no_grad()
    def logits(self, images: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw logits per factor for (N, C, H, W) float images in [0, 1]."""
        return self.net(torch.as_tensor(np.asarray(images, dtype=np.float32)))

    def read(self, images: np.ndarray, batch_size: int = 256) -> Reading:
        """(N, C, H, W) float32 in [0, 1] (the dataset's layout) -> :class:`Reading` of grid indices."""
        assert self.layout is not None
        images = np.asarray(images)
        expected = self.layout.image_shape
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"the {self.dataset} reader reads (N, {', '.join(map(str, expected))}) images; "
                             f"got {images.shape}")
        parts = []
        for i in range(0, len(images), batch_size):
            out = self.logits(images[i : i + batch_size])
            parts.append(np.stack([out[n].argmax(1).numpy() for n in self.factor_names], axis=1))
        factors = np.concatenate(parts).astype(np.int64) if parts else np.zeros((0, len(self.factor_names)), np.int64)
        return Reading(factors, np.zeros(len(factors)), self.layout)


def targets(layout: FactorLayout, factors: np.ndarray) -> dict[str, torch.Tensor]:
    """Soft training targets per factor, (N, K_f) rows summing to 1 (module docstring).

    Categorical: one-hot. Continuous: a Gaussian of width ``SMOOTH`` steps over the grid index.
    Circular: the same around the circle, modulo the row's symmetry (equal mass on equivalent values).
    """
    factors = np.asarray(factors)
    n = len(factors)
    out = {}
    for f, (name, kind) in enumerate(zip(layout.names, layout.kinds, strict=True)):
        k = layout.num_values[f]
        values = np.arange(k)
        if kind == "categorical":
            t = np.zeros((n, k))
            t[np.arange(n), factors[:, f]] = 1.0
        else:
            if kind == "circular":
                orders = np.repeat(layout.orders(f, factors), k)
                d = layout.circular_distance(f, np.tile(values, n), np.repeat(factors[:, f], k), orders).reshape(n, k)
            else:
                d = np.abs(values[None, :] - factors[:, f, None]).astype(np.float64)
            t = np.exp(-0.5 * (d / SMOOTH) ** 2)
            t /= t.sum(axis=1, keepdims=True)
        out[name] = torch.as_tensor(t, dtype=torch.float32)
    return out


def loss(reader: GenericReader, images: torch.Tensor, factors: np.ndarray) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum over factors of the cross-entropy between the logits and the soft targets."""
    assert reader.layout is not None
    out = reader.net(images)
    terms = {name: -(t * F.log_softmax(out[name], dim=1)).sum(dim=1).mean()
             for name, t in targets(reader.layout, factors).items()}
    return sum(terms.values()), {n: float(v.detach()) for n, v in terms.items()}  # type: ignore[return-value]


def fit_generic(dataset, name: str, *, steps: int = GENERIC_STEPS, batch_size: int = 128, lr: float = 2e-3,
                seed: int = 0, progress: bool = True) -> GenericReader:
    """Train a generic reader for ``dataset`` (registered as ``name``) on its own renders.

    Adam at ``lr``, cosine-decayed to zero over ``steps``; fresh renders every step, softened by
    :func:`.fit.augment`. Records the wall-clock seconds in ``reader.metadata["train_seconds"]``.
    """
    from tqdm import tqdm

    from .fit import augment

    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 17])
    reader = GenericReader.build(name, FactorLayout.of(dataset), measure_crop(dataset, rng))
    reader.net.train()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(reader.net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    bar = tqdm(range(steps), desc=f"reader {name}", disable=not progress, unit="step")
    start = time.perf_counter()
    for _ in bar:
        factors, images = dataset.sample(batch_size, rng)
        total, _ = loss(reader, augment(torch.from_numpy(images), gen), factors)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{float(total.detach()):.3f}")
    reader.metadata["train_seconds"] = f"{time.perf_counter() - start:.0f}"
    reader.net.eval()
    return reader
