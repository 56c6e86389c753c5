"""Semi-supervised disentanglement from few labels, with named latent dimensions.

Locatello et al. 2020, "Disentangling Factors of Variation Using Few Labels" (ICLR):
a VAE whose loss adds gamma x a supervised term on the posterior means of labelled
images (disentanglement_lib, methods/semi_supervised). Here the supervised term ties
*named* dimensions to each labelled factor, with a loss that suits the factor's kind:

- categorical: one dimension with class k at ``linspace(-1, 1, K)[k]`` ("centre"), or K
  one-hot dimensions ("one_hot"); squared error to the class code;
- continuous / ordinal: one dimension, grid index k at ``linspace(-1, 1, K)[k]``; squared error;
- circular: a (cos, sin) pair. The loss is (|u| - 1)^2 + 1 - cos(m (phi - theta)), where
  phi is the pair's angle, theta the label's angle and m the image's rotational symmetry
  order (:meth:`GroundTruthData.circular_symmetry`; dSprites orientation: 4 for a square,
  2 for an ellipse, 1 for a heart). A square's encoder may answer any of its four
  equivalent angles, because the image does not tell them apart.

Named dims come first (in the order of ``factors``), the free dims after them.

Making the named dims the decoder's only source for their factor: a calibration run that
supervised the posterior means alone trained a decoder that read shape and position from
the free dims, so edits of the named dims did nothing. Here
(1) on labelled images the decoder reads the *label codes* on the named dims (the codes
the factor card dials), never the encoder's guess, and on unlabelled images the
posterior mean; nothing noisy to route around;
(2) the named dims are deterministic codes (no KL, no sampling); the free dims carry a
beta-weighted KL, so information that the labels already give costs them and buys nothing.

The factor card comes from the supervision itself (:func:`supervision_card`): each named
factor's calibration table is its code table, so an edit writes exactly the code the
decoder was trained to draw.

Edits the labelled images never showed (``edit_cycle``): with few labels the decoder reads exact
codes only on the labelled pool, a few hundred combinations of factor values, while an edit
writes an exact code next to any image's others. The edit cycle draws such edits from every
batch: the named dims of half the batch's images are snapped to their nearest codes, one factor
per image is set to a random code of its table, the decoder draws the result and the encoder,
with its weights held fixed for this term, must read back exactly those codes (the supervised
loss, per kind). Its gradient reaches the decoder only. It is the latent regression of InfoGAN
(Chen et al. 2016, the mutual-information term on generated images) and of BicycleGAN's cLR-GAN
(Zhu et al. 2017), and the domain classification of StarGAN's fakes (Choi et al. 2018), with the
encoder that the labels trained as the reader.

Views the decoder draws (``views_decode``): with few labels the decoder reads exact codes on the
labelled pool alone, and on every other image the encoder's pseudo-label. The label-aware views
(``views``) make many exactly labelled images of each labelled one: the same sprite turned,
mirrored and moved, with its labels moved alike. The decoder also draws each view from its labels'
codes (plus ``code_noise``) under the Bernoulli reconstruction, so the codes it reads exactly
cover a quarter turn's and a mirror's worth of orientations and places per labelled image rather
than one. It is the views' data augmentation (Krizhevsky et al. 2012) given to the generator
as well as to the encoder, the label-conditioned reconstruction of a conditional VAE (Sohn et al.
2015, "Learning Structured Output Representation using Deep Conditional Generative Models") on
the augmented labelled set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from latentdial.factor_card import FactorCard, FactorEntry
from latentdial.training.objectives.base import (
    Batch,
    Inputs,
    ObjectiveConfig,
    VAEObjective,
    bernoulli_reconstruction,
    gaussian_kl,
)
from latentdial.training.objectives.label_views import LabelViews, check_views

CATEGORICAL_CODES = ("centre", "one_hot")
#: What the decoder reads on the named dims of an unlabelled image (``unlabelled_codes``).
UNLABELLED_CODES = ("mean", "snap", "pseudo")
#: How a circular factor's pseudo-label is made (``pseudo_circular``).
PSEUDO_CIRCULAR = ("nearest", "read")


@dataclass
class SemiSupervisedConfig(ObjectiveConfig):
    """Hyper-parameters of the semi-supervised VAE.

    factors: labelled factors by name, laid out on dims 0, 1, ... in this order;
        [] supervises every factor of the dataset. Factors not listed stay unsupervised.
    num_labelled: labelled training images, a fixed pool drawn from the run seed (for
        example 100 or 1000); 0 labels every image.
    gamma: weight of the supervised term (summed over factors, averaged over labelled images).
    beta: weight of the KL term on the free dims.
    decode_labels: on labelled images the decoder reads the label codes on the named dims.
    code_noise: standard deviation of Gaussian noise added to those label codes, so the
        decoder also draws the encoder's slightly-off codes (latent units; 0 = exact codes).
    categorical_code: "centre" (one dim per categorical factor) or "one_hot" (K dims).
    unlabelled_codes: what the decoder reads on the named dims of an unlabelled image:
        "mean", the posterior mean as it is; or "snap", the nearest code of the factor's table
        (plus ``code_noise``), with the gradient passed straight through to the mean (Bengio
        et al. 2013, "Estimating or Propagating Gradients Through Stochastic Neurons"). With
        "snap" the decoder only ever reads codes on the named dims, labelled or not, so it
        cannot learn to read information hidden between codes that an edit, which writes an
        exact code, would then erase.
    edit_cycle: weight of the edit cycle (module docstring): the supervised loss of the encoder's
        reading of decoded edits against the edited codes; 0 turns it off (its cost: a decoder and
        an encoder pass over half the batch).
    commitment: with "snap", the weight of the commitment term ``||mean - sg(code)||^2`` on the
        named dims of unlabelled images (van den Oord et al. 2017, "Neural Discrete Representation
        Learning", beta = 0.25 there). Without it the straight-through gradient lets those means
        drift without bound: a pilot at 1,000 labels stopped with an infinite KL at step 981. With
        it at 0.25 a second pilot still stopped, at step 1,282: "snap" is not yet stable at the
        default recipe's lr 5e-4 (docs/training.md, the snap study).
        Or "pseudo": the nearest code of the posterior mean with no gradient through it (the
        encoder's reading as a pseudo-label: Lee 2013, "Pseudo-Label: The Simple and Efficient
        Semi-Supervised Learning Method for Deep Neural Networks"). The decoder again reads only
        codes, and the reconstruction of unlabelled images no longer pulls the named means off
        their codes: only the labels train them. A conv encoder under that pull read the shape of
        new dSprites images at 0.39 from 1,000 labels and 0.44 from 10,000 (6,000 steps), where
        the same encoder trained on the 10,000 labels alone reads 0.96 (3,000 steps;
        docs/models.md, "Few labels").
    views: label-aware views of the batch's labelled half (``label_views.py``): move -> the
        factors it keeps, e.g. ``{shift = ["shape", "scale", "orientation"], rot90 = ["shape",
        "scale"], flip = ["shape", "scale"]}``. Each step the encoder also reads one view of each
        labelled image, under the supervised loss on the labels the view kept (weight gamma).
        {} (the default) takes none. The stream puts the labelled pool's draws in the batch's
        second half (and labels every row when ``num_labelled`` is 0).
    views_angle: the circular factor whose angle turns with the views' quarter turns and mirrors
        (``label_views.py``; dSprites: "orientation"), so its label survives them; "" for none.
    views_position: the factors that place the object, x then y, each step one pixel on a grid
        centred in the frame (``label_views.py``; dSprites: ["pos_x", "pos_y"]): their labels move
        with every view; [] for none.
    pseudo_turns: with "pseudo", turn the pseudo-label of a circular factor whose images repeat
        within its period (dSprites orientation: a square every quarter turn, an ellipse every half)
        by a random one of the angles the image does not tell apart: period x j / m, j uniform in
        0 .. m - 1, m the symmetry order of the class the encoder reads for the factor the order
        depends on (shape). A labelled square carries any of its four equivalent angles, but the
        encoder answers one of them (the circular loss accepts any), so without the turn every
        pseudo-labelled square sits in that one quadrant and the decoder learns the other three
        from the labelled pool alone, while an edit may write any of them.
    pseudo_circular: with "pseudo", how a circular factor's pseudo-label is made: "nearest" (the
        default) is the nearest code of the grid, like every other factor's; "read" is the
        encoder's (cos, sin) reading scaled to unit length, off the grid. Snapping costs a whole
        grid step whenever the reading is more than half a step off: the 95,300-step few-label
        dSprites model's heart orientation pseudo-labels are a step (9.2 degrees) off on 23 % of
        hearts snapped, while its unsnapped readings are 3.2 degrees off on average. Yet 4,000
        steps with "read" drew its hearts no better than with "nearest" (0.69 against 0.68;
        configs/sweep/label_study_pseudo_read.toml).
    views_decode: weight of the views' reconstruction (module docstring): the decoder draws each
        view whose every named factor is known from its labels' codes (the turned angle for
        ``views_angle``, plus ``code_noise``; free dims: the encoder's mean of the view, held
        fixed), Bernoulli reconstruction summed over pixels and averaged over those views. The
        views are half the batch, so 0.5 weighs each view as one batch image; 0 (the default)
        draws none. Its gradient reaches the decoder only. Needs ``views``.
    """

    factors: list[str] = field(default_factory=list)
    num_labelled: int = 0
    gamma: float = 10.0
    beta: float = 1.0
    decode_labels: bool = True
    code_noise: float = 0.0
    categorical_code: str = "centre"
    unlabelled_codes: str = "mean"
    commitment: float = 0.25
    edit_cycle: float = 0.0
    views: dict[str, list[str]] = field(default_factory=dict)
    views_angle: str = ""
    views_position: list[str] = field(default_factory=list)
    pseudo_turns: bool = False
    pseudo_circular: str = "nearest"
    views_decode: float = 0.0

    WRITTEN_WHEN_SET: ClassVar[tuple[str, ...]] = ("edit_cycle", "views", "views_angle", "views_position",
                                                   "pseudo_turns", "pseudo_circular", "views_decode")

    def __post_init__(self) -> None:
        if self.unlabelled_codes not in UNLABELLED_CODES:
            raise ValueError(f"unlabelled_codes must be one of {UNLABELLED_CODES}, got {self.unlabelled_codes!r}")
        if self.categorical_code not in CATEGORICAL_CODES:
            raise ValueError(f"categorical_code must be one of {CATEGORICAL_CODES}, got {self.categorical_code!r}")
        if self.num_labelled < 0:
            raise ValueError(f"num_labelled must be >= 0 (0 = every image), got {self.num_labelled}")
        check_views(self.views)
        if self.pseudo_turns and self.unlabelled_codes != "pseudo":
            raise ValueError(f'pseudo_turns turns pseudo-labels: it needs unlabelled_codes = "pseudo", '
                             f"got {self.unlabelled_codes!r}")
        if self.pseudo_circular not in PSEUDO_CIRCULAR:
            raise ValueError(f"pseudo_circular must be one of {PSEUDO_CIRCULAR}, got {self.pseudo_circular!r}")
        if self.pseudo_circular != "nearest" and self.unlabelled_codes != "pseudo":
            raise ValueError(f'pseudo_circular shapes pseudo-labels: it needs unlabelled_codes = "pseudo", '
                             f"got {self.unlabelled_codes!r}")
        for name in ("gamma", "beta", "code_noise", "commitment", "edit_cycle", "views_decode"):
            if getattr(self, name) < 0:
                raise ValueError(f"objective.{name} must be >= 0, got {getattr(self, name)}")
        if self.views_decode > 0 and not self.views:
            raise ValueError("objective.views_decode draws the label-aware views: it needs objective.views")


@dataclass(frozen=True)
class FactorCode:
    """How one labelled factor is written on its named dims.

    table: (K, len(dims)) the code of each grid index; values: (K,) the grid.
    symmetry: (factor column, order per index of that factor) for a circular factor whose
    images repeat within its period, else None.
    """

    name: str
    column: int
    kind: str
    dims: tuple[int, ...]
    table: np.ndarray
    values: np.ndarray
    labels: tuple[str, ...] = ()
    period: float | None = None
    symmetry: tuple[int, tuple[int, ...]] | None = None


def factor_codes(dataset: Any, names: list[str], latent_dim: int, categorical_code: str = "centre") -> list[FactorCode]:
    """Lay out the named dims of ``names`` (all factors when empty) for ``dataset``."""
    from latentdial.training.factor_card_fit import circular_period

    all_names = list(dataset.factor_names)
    if not all_names:
        raise ValueError("the semi-supervised objective needs a dataset with ground-truth factors")
    names = list(names) or all_names
    unknown = [n for n in names if n not in all_names]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"objective.factors {names} must name distinct factors of the dataset: {all_names}")
    kinds = list(getattr(dataset, "factor_kinds", ["continuous"] * len(all_names)))
    codes: list[FactorCode] = []
    next_dim = 0
    for name in names:
        col = all_names.index(name)
        kind = kinds[col]
        grid = np.asarray(dataset.factor_grid(col), dtype=np.float64)
        k = len(grid)
        period = symmetry = None
        if kind == "circular":
            period = circular_period(grid)
            theta = 2 * np.pi * (grid - grid.min()) / period
            table = np.stack([np.cos(theta), np.sin(theta)], axis=1)
            symmetry = dataset.circular_symmetry(col)
        elif kind == "categorical" and categorical_code == "one_hot":
            table = np.eye(k)
        else:
            table = np.linspace(-1.0, 1.0, k)[:, None]
        dims = tuple(range(next_dim, next_dim + table.shape[1]))
        next_dim += len(dims)
        labels = tuple(dataset.factor_labels(col)) if kind == "categorical" else ()
        codes.append(FactorCode(name, col, kind, dims, table.astype(np.float32), grid,
                                labels if len(labels) == k else (), period, symmetry))
    if next_dim > latent_dim:
        raise ValueError(
            f"the labelled factors {names} need {next_dim} named dims but the model has "
            f"latent_dim = {latent_dim}; raise model.latent_dim or label fewer factors"
        )
    return codes


def supervision_card(codes: list[FactorCode], latent_dim: int) -> FactorCard:
    """The factor card the supervision defines: each factor's code table is its calibration."""
    return FactorCard(
        factors=[
            FactorEntry(
                name=c.name, kind=c.kind, dims=list(c.dims), values=c.values.tolist(),
                latent_table=c.table.astype(np.float64).tolist(), labels=list(c.labels),
                importance=[1.0] * len(c.dims), period=c.period,
            )
            for c in codes
        ],
        latent_dim=latent_dim,
        source="supervised",
    )


def supervised_factor_card(config: dict[str, Any], dataset: Any) -> FactorCard | None:
    """The card of a run from its config.json dict, or None when it is not semi-supervised."""
    objective = dict(config.get("objective", {}))
    if objective.pop("name", None) != SemiSupervisedVAE.name:
        return None
    cfg = SemiSupervisedConfig(**objective)
    latent_dim = int(config["model"]["latent_dim"])
    return supervision_card(factor_codes(dataset, cfg.factors, latent_dim, cfg.categorical_code), latent_dim)


def circular_loss(u: torch.Tensor, theta: torch.Tensor, order: torch.Tensor, max_order: int | None = None) -> torch.Tensor:
    """(|u| - 1)^2 + 1 - cos(m (phi - theta)) per row, phi = angle of u.

    u: (N, 2) the (cos, sin) pair; theta: (N,) label angles in radians; order: (N,) int
    symmetry orders m >= 1. Zero exactly when u is on the unit circle at theta + 2 pi j / m.
    max_order: an upper bound of ``order`` known on the host (the data's largest symmetry
    order); None reads it from ``order``, which waits for the device.
    """
    r = torch.sqrt(u.pow(2).sum(dim=1) + 1e-12)  # (N,)
    c, s = u[:, 0] / r, u[:, 1] / r
    # (c + i s)^m by repeated complex multiplication (m is small and per row)
    pc, ps = c, s
    out_c, out_s = torch.where(order == 1, c, 0.0), torch.where(order == 1, s, 0.0)
    top = int(order.max()) if max_order is None else int(max_order)
    for m in range(2, top + 1):
        pc, ps = pc * c - ps * s, pc * s + ps * c
        out_c = torch.where(order == m, pc, out_c)
        out_s = torch.where(order == m, ps, out_s)
    mt = order.to(u.dtype) * theta
    aligned = out_c * torch.cos(mt) + out_s * torch.sin(mt)  # cos(m phi - m theta)
    return (r - 1.0).pow(2) + 1.0 - aligned


class SemiSupervisedVAE(VAEObjective):
    """Semi-supervised VAE on named dims (module docstring).

    Batches are (images (M, C, H, W), factor indices (M, F) int64, -1 where unlabelled).
    loss = recon + beta * KL(free dims) + gamma * sum over labelled factors of the
    per-kind loss, averaged over the images that carry that factor's label.
    """

    name = "semi_supervised"
    Config = SemiSupervisedConfig
    config: SemiSupervisedConfig
    requires_labels = True

    def __init__(self, model, config: SemiSupervisedConfig | None = None) -> None:
        super().__init__(model, config)
        self.codes: list[FactorCode] = []
        self._device_tables: dict[tuple[str, torch.device], torch.Tensor] = {}
        self.views: LabelViews | None = None

    def attach_dataset(self, dataset: Any) -> None:
        self.codes = factor_codes(dataset, self.config.factors, self.model.config.latent_dim,
                                  self.config.categorical_code)
        self.num_named = sum(len(c.dims) for c in self.codes)
        self.views = None
        if self.config.views:
            angle = self.config.views_angle or None
            if angle is not None:
                turning = next((c for c in self.codes if c.name == angle), None)
                if turning is None or turning.kind != "circular" or not np.isclose(turning.period or 0.0, 2 * np.pi):
                    raise ValueError(f"objective.views_angle {angle!r} must name a labelled circular factor whose "
                                     "period is a full turn (2 pi)")
            self.views = LabelViews(self.config.views, list(dataset.factor_names), angle, self.config.views_position,
                                    list(dataset.factors_num_values))
        elif self.config.views_angle or self.config.views_position:
            raise ValueError("objective.views_angle and views_position need objective.views")
        if self.config.pseudo_turns:
            named = {c.column for c in self.codes}
            turned = [c for c in self.codes if c.symmetry is not None]
            if not turned or any(c.symmetry[0] not in named for c in turned):
                raise ValueError("objective.pseudo_turns needs a labelled circular factor with a rotational symmetry "
                                 "whose order depends on a labelled factor (dSprites: orientation and shape)")

    def factor_card(self) -> FactorCard:
        self._require_codes()
        return supervision_card(self.codes, self.model.config.latent_dim)

    def _require_codes(self) -> None:
        if not self.codes:
            raise RuntimeError("call attach_dataset(dataset) before training the semi-supervised objective")

    # -- hooks -------------------------------------------------------------------------
    def inputs(self, batch: Batch) -> Inputs:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2 or batch[1].dtype != torch.int64:
            raise TypeError("semi_supervised needs (images, factor indices); build the stream with labels=True")
        self._require_codes()
        return Inputs(images=batch[0], labels=batch[1])

    def _on_device(self, key: str, array: np.ndarray | tuple[int, ...], device: torch.device) -> torch.Tensor:
        """``array`` as a tensor on ``device``, copied there once (a CUDA graph may not copy host data)."""
        cached = self._device_tables.get((key, device))
        if cached is None:
            cached = self._device_tables[(key, device)] = torch.as_tensor(np.asarray(array), device=device)
        return cached

    def _targets(self, code: FactorCode, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(labelled mask (M,) bool, target codes (M, len(dims)))."""
        idx = labels[:, code.column]
        table = self._on_device(f"table:{code.name}", code.table, labels.device)
        return idx >= 0, table[idx.clamp(min=0)]

    @staticmethod
    def _named(values: torch.Tensor, code: FactorCode) -> torch.Tensor:
        """The code's named dims of (M, D) ``values``: (M, len(dims)), a slice (dims are contiguous)."""
        return values[:, code.dims[0] : code.dims[-1] + 1]

    def hook_latents(self, z: torch.Tensor, mean: torch.Tensor, inputs: Inputs) -> torch.Tensor:
        """Named dims: label codes (plus ``code_noise``) on labelled images (``decode_labels``),
        else the posterior mean, or its nearest code (``unlabelled_codes = "snap"``); free dims:
        the sample z. (M, D) -> (M, D)."""
        assert inputs.labels is not None
        named = []
        for code in self.codes:
            value = self._named(mean, code)
            if self.config.unlabelled_codes == "snap":
                value = self._noisy(value + (self._nearest_code(code, value) - value).detach())
            elif self.config.unlabelled_codes == "pseudo":
                if code.kind == "circular" and self.config.pseudo_circular == "read":
                    value = torch.nn.functional.normalize(value.detach(), dim=1)
                else:
                    value = self._nearest_code(code, value.detach())
                if self.config.pseudo_turns and code.symmetry is not None:
                    value = self._turned(code, value, mean.detach())
                value = self._noisy(value)
            if self.config.decode_labels:
                known, target = self._targets(code, inputs.labels)
                value = torch.where(known[:, None], self._noisy(target), value)
            named.append(value)
        return torch.cat([*named, z[:, self.num_named:]], dim=1)

    def _turned(self, code: FactorCode, values: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """``values`` (M, 2), (cos, sin) codes of ``code``, each turned by 2 pi j / m with j uniform in
        0 .. m - 1 and m the symmetry order of the class ``mean`` (M, D) reads for the factor the
        order depends on (``pseudo_turns``): an angle the image does not tell apart. (M, 2)."""
        col, orders = code.symmetry
        by = next(c for c in self.codes if c.column == col)
        order = self._on_device(f"symmetry:{code.name}", tuple(orders), values.device)
        m = order[self._nearest_index(by, self._named(mean, by))].to(values.dtype)  # (M,)
        turn = 2 * math.pi * torch.floor(torch.rand_like(m) * m) / m  # (M,)
        c, s = torch.cos(turn), torch.sin(turn)
        return torch.stack([values[:, 0] * c - values[:, 1] * s, values[:, 0] * s + values[:, 1] * c], dim=1)

    def _noisy(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes`` plus Gaussian ``code_noise`` (M, k) -> (M, k)."""
        return codes + self.config.code_noise * torch.randn_like(codes) if self.config.code_noise > 0 else codes

    def _nearest_code(self, code: FactorCode, values: torch.Tensor) -> torch.Tensor:
        """The row of ``code.table`` nearest to each row of ``values`` (M, k) -> (M, k)."""
        table = self._on_device(f"table:{code.name}", code.table, values.device)  # (K, k)
        return table[self._nearest_index(code, values)]

    def _nearest_index(self, code: FactorCode, values: torch.Tensor) -> torch.Tensor:
        """The index of the row of ``code.table`` nearest to each row of ``values`` (M, k) -> (M,) int64."""
        table = self._on_device(f"table:{code.name}", code.table, values.device)  # (K, k)
        return torch.cdist(values, table).argmin(dim=1)

    def edited_codes(self, mean: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Random single-factor edits of ``mean`` (M, D), as the edit cycle decodes them.

        Every named factor is snapped to its nearest code, then one factor per row, drawn at
        random, is set to a random code of its table; the free dims are kept. Returns (the edited
        latents (M, D), their grid indices (M, F) in the layout of ``labels``: -1 for factors
        that are not named). Nothing here waits for the device.
        """
        m = mean.shape[0]
        which = torch.randint(len(self.codes), (m,), device=mean.device)
        indices = torch.full_like(labels, -1)
        parts = []
        for f, code in enumerate(self.codes):
            drawn = torch.randint(len(code.table), (m,), device=mean.device)
            idx = torch.where(which == f, drawn, self._nearest_index(code, self._named(mean, code)))
            indices[:, code.column] = idx
            parts.append(self._on_device(f"table:{code.name}", code.table, mean.device)[idx])
        return torch.cat([*parts, mean[:, self.num_named:]], dim=1), indices

    def _edit_cycle(self, mean: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The edit cycle's loss (module docstring) on the first half of the batch: ()."""
        half = max(1, mean.shape[0] // 2)
        z, indices = self.edited_codes(mean[:half].detach(), labels[:half])
        drawn = torch.sigmoid(self.model.decoder(z))  # (M/2, C, H, W)
        fixed = {k: v.detach() for k, v in self.model.encoder.named_parameters()}
        read, _ = torch.func.functional_call(self.model.encoder, fixed, (drawn,))
        total, _ = self._code_loss(read, indices)
        return total

    def supervised(self, mean: torch.Tensor, inputs: Inputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        assert inputs.labels is not None
        total, logs = self._code_loss(mean, inputs.labels)
        loss = self.config.gamma * total
        if self.config.unlabelled_codes == "snap" and self.config.commitment > 0:
            commit = self._commitment(mean, inputs.labels)
            logs["commit"] = commit
            loss = loss + self.config.commitment * commit
        if self.views is not None:
            seen, drawn = self._views_loss(inputs.images, inputs.labels)
            logs["views"] = seen
            loss = loss + self.config.gamma * seen
            if drawn is not None:
                logs["views_recon"] = drawn
                loss = loss + self.config.views_decode * drawn
        if self.config.edit_cycle > 0:
            cycle = self._edit_cycle(mean, inputs.labels)
            logs["edit_cycle"] = cycle
            loss = loss + self.config.edit_cycle * cycle
        return loss, logs

    def _views_loss(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The supervised loss of the encoder's reading of one view of each image of the batch's
        second half (its labelled half; ``views``): (), and with ``views_decode`` the decoder's
        reconstruction of those views from their labels' codes: () (else None)."""
        assert self.views is not None
        half = images.shape[0] // 2
        y = labels[half:]
        angles = None
        if self.views.angle is not None:
            code = next(c for c in self.codes if c.name == self.views.angle)
            target = self._targets(code, y)[1]  # (M/2, 2) the label's (cos, sin)
            angles = torch.atan2(target[:, 1], target[:, 0])
        x, y, turned = self.views(images[half:], y, angles)
        read, _ = self.model.encoder(x)
        total, _ = self._code_loss(read, y, None if turned is None else {self.views.angle: turned})
        if self.config.views_decode <= 0:
            return total, None
        z, known = self.view_codes(y, turned, read.detach())
        per_view = bernoulli_reconstruction(self.model.decoder(z), x)  # (M/2,)
        return total, (per_view * known).sum() / known.sum().clamp(min=1)

    def view_codes(self, labels: torch.Tensor, angles: torch.Tensor | None,
                   mean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the decoder reads to draw views (``views_decode``): each named factor's label code
        (the angle ``angles`` (M,) in radians for ``views_angle``) plus ``code_noise``, and the
        free dims of ``mean`` (M, D). Returns (codes (M, D), known (M,) bool: every named factor
        of the row is labelled)."""
        known = torch.ones(labels.shape[0], dtype=torch.bool, device=labels.device)
        named = []
        for code in self.codes:
            has, target = self._targets(code, labels)
            if angles is not None and self.views is not None and code.name == self.views.angle:
                target = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1).to(target.dtype)
            known = known & has
            named.append(self._noisy(target))
        return torch.cat([*named, mean[:, self.num_named:]], dim=1), known

    def _code_loss(self, mean: torch.Tensor, labels: torch.Tensor,
                   angles: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Sum over factors of the per-kind loss of ``mean``'s named dims against the codes of
        ``labels`` (M, F), each averaged over the rows that carry that factor: ((), per factor).
        ``angles``: a circular factor's target angles (M,) in radians, in place of its label's."""
        total = mean.new_zeros(())
        logs: dict[str, torch.Tensor] = {}
        for code in self.codes:
            known, target = self._targets(code, labels)
            u = self._named(mean, code)
            if code.kind == "circular":
                theta = angles[code.name] if angles and code.name in angles else torch.atan2(target[:, 1], target[:, 0])
                order = torch.ones_like(known, dtype=torch.int64)
                max_order = 1
                if code.symmetry is not None:
                    col, orders = code.symmetry
                    table = self._on_device(f"symmetry:{code.name}", tuple(orders), mean.device)
                    order = table[labels[:, col].clamp(min=0)]
                    max_order = max(orders)
                per_row = circular_loss(u, theta, order, max_order)
            else:
                per_row = (u - target).pow(2).sum(dim=1)
            term = (per_row * known).sum() / known.sum().clamp(min=1)
            logs[f"sup_{code.name}"] = term
            total = total + term
        return total, logs

    def _commitment(self, mean: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Sum over factors of the mean over unlabelled rows of ||named mean - sg(nearest code)||^2: ()."""
        total = mean.new_zeros(())
        for code in self.codes:
            unknown = labels[:, code.column] < 0  # (M,)
            u = self._named(mean, code)
            per_row = (u - self._nearest_code(code, u).detach()).pow(2).sum(dim=1)
            total = total + (per_row * unknown).sum() / unknown.sum().clamp(min=1)
        return total

    def regularizer(self, kl, mean, log_var, z, step):
        free = gaussian_kl(mean[:, self.num_named:], log_var[:, self.num_named:]).sum(dim=1).mean()
        return self.config.beta * free, {"kl_free": free}
