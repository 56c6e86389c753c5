"""Datasets that hold images rather than render them: a fixed set of rows with partial labels.

A procedural dataset (dSprites) draws an image for any factor vector; a user's folder holds
the images it has, each with the labels someone wrote down (or none). :class:`LabelledRows`
is that second kind under the ``GroundTruthData`` contract:

- ``labels``: (N, F) int64 grid indices, ``-1`` where a cell was empty;
- ``load(rows)``: (n, C, H, W) float32 in [0, 1] for row indices;
- ``sample(n, rng)``: (factors, images) drawn from the *completely* labelled rows, with
  replacement: what the metrics on i.i.d. points (MIG, SAP, DCI, modularity) consume;
- ``sample_observations(n, rng)``: any row, labelled or not;
- ``sample_observations_from_factors``: refused, since nothing can draw an image for a
  factor vector it does not hold. Metrics that intervene on factors (BetaVAE, FactorVAE)
  and evaluations that render a target image need a renderer; ``renders_from_factors``
  is False so that callers can tell.

Metrics fit on train points and score on test points; drawn from the same few hundred rows,
the two would overlap and a probe would score on images it was fitted on. ``held_out_split``
therefore splits the completely labelled rows once, a third held out (fixed permutation), and
the metrics' sampler draws train points from one part and test points from the other.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from .base import GroundTruthData
from .checks import check_num


class LabelledRows(GroundTruthData):
    """A fixed set of images with labels per row, -1 where unlabelled (module docstring)."""

    renders_from_factors = False
    #: (N, F) int64 grid indices, -1 = not labelled.
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @abstractmethod
    def load(self, rows: np.ndarray) -> np.ndarray:
        """Row indices (n,) -> images (n, C, H, W) float32 in [0, 1]."""

    def labelled_rows(self) -> np.ndarray:
        """Indices (k,) of the rows with at least one label, ascending."""
        return np.flatnonzero((self.labels >= 0).any(axis=1))

    def complete_rows(self) -> np.ndarray:
        """Indices (k,) of the rows with every factor labelled, ascending."""
        return np.flatnonzero((self.labels >= 0).all(axis=1))

    def sample(self, num: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(factors (num, F), images (num, C, H, W)) from completely labelled rows, with replacement."""
        complete = self.complete_rows()
        if len(complete) == 0:
            raise ValueError(
                f"{self.describe()} has no image with every factor labelled; metrics on labelled "
                "points need some (label every column of some rows)"
            )
        rows = complete[rng.integers(0, len(complete), size=check_num(num))]
        return self.labels[rows].copy(), self.load(rows)

    def sample_observations(self, num: int, rng: np.random.Generator) -> np.ndarray:
        """(num, C, H, W) float32: any rows, uniformly with replacement."""
        return self.load(rng.integers(0, len(self), size=check_num(num)))

    def sample_factors(self, num: int, rng: np.random.Generator) -> np.ndarray:
        raise ValueError(
            f"{self.describe()} holds images, it cannot draw new factor vectors to render; "
            "use sample(n, rng) for labelled (factors, images) pairs"
        )

    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise ValueError(
            f"{self.describe()} holds images, it cannot draw an image for chosen factors: metrics "
            "that intervene on factors (BetaVAE, FactorVAE) and rendered edit targets need a renderer"
        )

    def describe(self) -> str:
        """How the dataset names itself in messages."""
        return type(self).__name__


#: Share of the completely labelled rows held out for the metrics' test points.
TEST_SHARE = 1 / 3


class _Part(LabelledRows):
    """The rows ``rows`` of ``parent``, as the only completely labelled ones (for one split)."""

    def __init__(self, parent: LabelledRows, rows: np.ndarray, part: str) -> None:
        self._parent, self._rows, self._part = parent, rows, part
        self.labels = parent.labels
        self.factor_names, self.factors_num_values = parent.factor_names, parent.factors_num_values
        self.factor_kinds, self.observation_shape = parent.factor_kinds, parent.observation_shape

    def complete_rows(self) -> np.ndarray:
        return self._rows

    def load(self, rows: np.ndarray) -> np.ndarray:
        return self._parent.load(rows)

    def factor_grid(self, factor: int) -> np.ndarray:
        return self._parent.factor_grid(factor)

    def factor_labels(self, factor: int) -> list[str]:
        return self._parent.factor_labels(factor)

    def describe(self) -> str:
        return f"the {self._part} part of {self._parent.describe()}"


def held_out_split(dataset: GroundTruthData) -> tuple[GroundTruthData, GroundTruthData]:
    """(train, test) sources of i.i.d. points: ``dataset`` twice for a renderer; for rows, the
    completely labelled rows split once by a fixed permutation, ``TEST_SHARE`` held out."""
    if not isinstance(dataset, LabelledRows):
        return dataset, dataset
    complete = dataset.complete_rows()
    if len(complete) < 2:
        raise ValueError(f"{dataset.describe()} has {len(complete)} image(s) with every factor labelled; "
                         "metrics need at least 2 (some to fit on, some held out)")
    shuffled = np.random.default_rng(0).permutation(complete)
    n_test = max(1, int(round(len(complete) * TEST_SHARE)))
    return (_Part(dataset, np.sort(shuffled[n_test:]), "train"), _Part(dataset, np.sort(shuffled[:n_test]), "test"))
