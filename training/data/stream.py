"""Deterministic batch streams for training, resume and data-parallel ranks.

Batch ``step`` of rank ``rank`` is drawn with its own generator
``np.random.default_rng([seed, rank, step])``, so

- a run resumed at step s sees exactly the batches it would have seen without
  stopping (no generator state to save in the checkpoint),
- data-parallel ranks see different data for the same step,
- any batch can be recomputed on its own (``batch_at(step)``).

Iterating runs the rendering in a background thread (``prefetch`` batches
ahead), so the training loop does not wait for data.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import numpy as np

from .base import GroundTruthData
from .pairs import sample_weak_pairs
from .rows import LabelledRows

Batch = np.ndarray | tuple[np.ndarray, np.ndarray]
#: Row seed of the labelled pool, apart from every batch's (seed, rank, step).
_POOL_STREAM = 2**31 - 2


class BatchStream:
    """Batches of observations, a pure function of (seed, rank, step).

    Args:
        dataset: any ``GroundTruthData`` (or an unlabelled ``ImageFolder``).
        batch_size: observations per batch (per rank).
        seed: non-negative run seed.
        pairs: yield weakly supervised pairs (x1, x2) instead of single batches
            (Locatello et al. 2020; see ``pairs.py``); needs labelled factors.
        k: number of differing factors per pair; None draws 1 .. F-1 per pair.
        labels: yield (images, factor indices) for semi-supervised training; needs
            labelled factors.
        num_labelled: with ``labels``, None labels every image of every batch; an
            integer L draws a fixed pool of L labelled factor vectors from ``seed`` (the
            same on every rank), and each batch is ``batch_size`` unlabelled images
            (labels -1) followed by ``batch_size`` images drawn from the pool, as in
            Locatello et al. 2020, "Disentangling Factors of Variation Using Few Labels".
            A dataset of rows (:class:`~.rows.LabelledRows`, e.g. a labelled folder) draws
            the pool from its labelled rows instead (None: all of them), with their
            labels as written (-1 in an empty cell); the unlabelled half draws any row.
            When the pool is every row, each batch is ``batch_size`` pool rows.
        rank, world_size: this process's place among data-parallel ranks.
    """

    def __init__(
        self,
        dataset: GroundTruthData,
        batch_size: int,
        seed: int,
        *,
        pairs: bool = False,
        k: int | None = None,
        labels: bool = False,
        num_labelled: int | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0 .. world_size - 1, got rank={rank}, world_size={world_size}")
        if pairs and dataset.num_factors == 0:
            raise ValueError(
                f"pairs=True needs ground-truth factors, but {getattr(dataset, 'name', 'this dataset')} "
                "is unlabelled (an image folder has none); train it with pairs=False"
            )
        if labels and dataset.num_factors == 0:
            raise ValueError(
                f"labels=True needs ground-truth factors, but {getattr(dataset, 'name', 'this dataset')} "
                "is unlabelled; train it with an unsupervised objective"
            )
        if labels and pairs:
            raise ValueError("a stream yields either pairs or labelled images, not both")
        if pairs and not getattr(dataset, "renders_from_factors", True):
            raise ValueError(
                "pairs=True renders pairs that share factors, which a dataset of fixed images "
                "cannot do; train it with an unsupervised or the semi_supervised objective"
            )
        if num_labelled is not None and num_labelled < 1:
            raise ValueError(f"num_labelled must be at least 1 (or None for all), got {num_labelled}")
        self.labels = labels
        self.pool: np.ndarray | None = None
        self.row_pool: np.ndarray | None = None
        if labels and isinstance(dataset, LabelledRows):
            self.row_pool = _row_pool(dataset, num_labelled, np.random.default_rng([int(seed), _POOL_STREAM]))
        elif labels and num_labelled is not None:
            self.pool = dataset.sample_factors(int(num_labelled), np.random.default_rng([int(seed), _POOL_STREAM]))
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.pairs = pairs
        self.k = k
        self.rank = int(rank)
        self.world_size = int(world_size)

    def rng_at(self, step: int) -> np.random.Generator:
        """The generator of batch ``step`` on this rank."""
        if step < 0:
            raise ValueError(f"step must be non-negative, got {step}")
        return np.random.default_rng([self.seed, self.rank, int(step)])

    def batch_at(self, step: int) -> Batch:
        """Batch ``step``: (B, C, H, W) float32; (x1, x2) of that shape with ``pairs=True``;
        (images (M, C, H, W), factors (M, F) int64, -1 = unlabelled) with ``labels=True``."""
        rng = self.rng_at(step)
        if self.pairs:
            x1, x2, _, _ = sample_weak_pairs(self.dataset, self.batch_size, rng, k=self.k)
            return x1, x2
        if not self.labels:
            return self.dataset.sample_observations(self.batch_size, rng)
        if self.row_pool is not None:
            return self._rows_batch(rng)
        factors = self.dataset.sample_factors(self.batch_size, rng)
        if self.pool is None:
            return self.dataset.sample_observations_from_factors(factors, rng), factors
        labelled = self.pool[rng.integers(0, len(self.pool), size=self.batch_size)]
        factors = np.concatenate([factors, labelled])
        labels = np.concatenate([np.full_like(labelled, -1), labelled])
        return self.dataset.sample_observations_from_factors(factors, rng), labels

    def _rows_batch(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(images (M, C, H, W), labels (M, F)) from a dataset of rows (see ``num_labelled``)."""
        data, pool = self.dataset, self.row_pool
        assert isinstance(data, LabelledRows) and pool is not None
        labelled = pool[rng.integers(0, len(pool), size=self.batch_size)]
        if len(pool) == len(data):
            return data.load(labelled), data.labels[labelled]
        unlabelled = rng.integers(0, len(data), size=self.batch_size)
        rows = np.concatenate([unlabelled, labelled])
        labels = np.concatenate([np.full((self.batch_size, data.num_factors), -1, np.int64), data.labels[labelled]])
        return data.load(rows), labels

    def __iter__(self) -> Iterator[Batch]:
        return self.iterate()

    def iterate(
        self, start_step: int = 0, num_steps: int | None = None, prefetch: int = 2
    ) -> Iterator[Batch]:
        """Yield ``batch_at(start_step)``, ``batch_at(start_step + 1)``, ...

        Args:
            start_step: first step (the step to resume from).
            num_steps: how many batches; None for an endless stream.
            prefetch: batches rendered ahead in a background thread; 0 renders inline.
        """
        if start_step < 0:
            raise ValueError(f"start_step must be non-negative, got {start_step}")
        stop = None if num_steps is None else start_step + num_steps
        if prefetch <= 0:
            step = start_step
            while stop is None or step < stop:
                yield self.batch_at(step)
                step += 1
            return
        yield from _Prefetcher(self, start_step, stop, prefetch)


def _row_pool(dataset: LabelledRows, num_labelled: int | None, rng: np.random.Generator) -> np.ndarray:
    """The labelled rows a run may use: all of them (None), or ``num_labelled`` drawn by ``rng``."""
    labelled = dataset.labelled_rows()
    if len(labelled) == 0:
        raise ValueError(f"{dataset.describe()} has no labelled image; label some rows or train unsupervised")
    if num_labelled is None:
        return labelled
    if num_labelled > len(labelled):
        raise ValueError(f"num_labelled = {num_labelled:,}, but {dataset.describe()} has only "
                         f"{len(labelled):,} labelled images; ask for at most that many, or 0 for all")
    return np.sort(rng.choice(labelled, size=num_labelled, replace=False))


class _Prefetcher:
    """Renders batches in a daemon thread into a bounded queue; errors re-raise in the consumer."""

    _DONE = object()

    def __init__(self, stream: BatchStream, start: int, stop: int | None, depth: int) -> None:
        self._stream, self._start, self._stop = stream, start, stop
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._work, name="batch-prefetch", daemon=True)

    def _put(self, item: object) -> bool:
        while not self._halt.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        step = self._start
        try:
            while self._stop is None or step < self._stop:
                if not self._put(self._stream.batch_at(step)):
                    return
                step += 1
        except Exception as e:  # noqa: BLE001 - re-raised in the consuming thread
            self._put(e)
            return
        self._put(self._DONE)

    def __iter__(self) -> Iterator[Batch]:
        self._thread.start()
        try:
            while True:
                item = self._queue.get()
                if item is self._DONE:
                    return
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self._halt.set()
            self._thread.join(timeout=5.0)
