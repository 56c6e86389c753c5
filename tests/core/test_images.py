"""The one float-to-uint8 image conversion every role uses (latentdial.images)."""

from __future__ import annotations

import numpy as np

from latentdial.images import to_uint8


def test_floats_in_the_unit_interval_round_to_the_nearest_uint8_level():
    x = np.array([0.0, 1 / 255, 0.4 / 255, 0.6 / 255, 0.5, 254.6 / 255, 1.0], np.float32)
    assert to_uint8(x).tolist() == [0, 1, 0, 1, 128, 255, 255]
    assert to_uint8(x).dtype == np.uint8


def test_values_outside_the_unit_interval_are_clipped_not_wrapped():
    assert to_uint8(np.array([-0.5, 1.5, 300.0])).tolist() == [0, 255, 255]


def test_every_uint8_level_survives_a_round_trip_through_float():
    levels = np.arange(256, dtype=np.uint8).reshape(2, 8, 16, 1)  # any shape, kept
    assert np.array_equal(to_uint8(levels.astype(np.float32) / 255.0), levels)
