"""Specification of the dataset registry and the deterministic batch stream."""

from __future__ import annotations

import numpy as np
import pytest

from latentdial.training.data import DATASETS, BatchStream, ProceduralDSprites, get_dataset
from latentdial.training.data.base import GroundTruthData

NAMES = {"dsprites", "color_dsprites", "noisy_dsprites", "dsprites_npz", "shapes3d", "folder", "idsprites",
         "dsprites_elsewhere", "color_dsprites_elsewhere",
         "labelled_folder"}


def test_registry_names_every_dataset():
    assert set(DATASETS) == NAMES
    for name in ("dsprites", "color_dsprites", "noisy_dsprites"):
        data = get_dataset(name)
        assert isinstance(data, GroundTruthData)
        x = data.sample_observations(2, np.random.default_rng(0))
        assert x.shape == (2, *data.observation_shape)


def test_unknown_dataset_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown dataset 'mnist'") as info:
        get_dataset("mnist")
    for name in NAMES:
        assert name in str(info.value)


def test_file_datasets_say_they_need_a_path():
    for name in ("dsprites_npz", "shapes3d", "folder", "labelled_folder"):
        with pytest.raises(ValueError, match="path="):
            get_dataset(name)
    with pytest.raises(ValueError, match="no options"):
        get_dataset("dsprites", path="x")


@pytest.fixture(scope="module")
def stream() -> BatchStream:
    return BatchStream(ProceduralDSprites(), batch_size=16, seed=3)


def test_batch_at_is_a_pure_function_of_seed_rank_and_step(stream):
    a = stream.batch_at(7)
    assert a.shape == (16, 1, 64, 64) and a.dtype == np.float32
    np.testing.assert_array_equal(a, BatchStream(ProceduralDSprites(), 16, 3).batch_at(7))
    assert not np.array_equal(a, stream.batch_at(8))
    assert not np.array_equal(a, BatchStream(ProceduralDSprites(), 16, 4).batch_at(7))


def test_resumed_iteration_sees_the_same_batches(stream):
    full = list(stream.iterate(num_steps=6))
    resumed = list(stream.iterate(start_step=3, num_steps=3))
    inline = list(stream.iterate(start_step=3, num_steps=3, prefetch=0))
    assert len(full) == 6 and len(resumed) == 3
    for a, b, c in zip(full[3:], resumed, inline, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_data_parallel_ranks_see_different_data():
    ranks = [BatchStream(ProceduralDSprites(), 16, 3, rank=r, world_size=2) for r in range(2)]
    assert not np.array_equal(ranks[0].batch_at(0), ranks[1].batch_at(0))
    with pytest.raises(ValueError, match="rank"):
        BatchStream(ProceduralDSprites(), 16, 3, rank=2, world_size=2)


def test_pair_stream_yields_two_batches_differing_in_k_factors():
    data = ProceduralDSprites()
    stream = BatchStream(data, 8, 1, pairs=True, k=1)
    x1, x2 = stream.batch_at(0)
    assert x1.shape == x2.shape == (8, 1, 64, 64)
    assert not np.array_equal(x1, x2)
    first = next(iter(stream))
    np.testing.assert_array_equal(first[0], x1)
    np.testing.assert_array_equal(first[1], x2)


class _Failing(ProceduralDSprites):
    """Fails on its third batch."""

    def __init__(self) -> None:
        self.calls = 0

    def sample_observations_from_factors(self, factors, rng=None):
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("disk on fire")
        return super().sample_observations_from_factors(factors, rng)


def test_errors_in_the_prefetch_thread_reach_the_training_loop():
    stream = BatchStream(_Failing(), 4, 0)
    seen = 0
    with pytest.raises(RuntimeError, match="disk on fire"):
        for batch in stream.iterate(prefetch=2):
            assert batch.shape == (4, 1, 64, 64)
            seen += 1
    assert seen == 2


def test_stopping_early_ends_the_prefetch_thread(stream):
    import threading

    it = stream.iterate(prefetch=2)
    next(it)
    it.close()
    assert not any(t.name == "batch-prefetch" and t.is_alive() for t in threading.enumerate())
