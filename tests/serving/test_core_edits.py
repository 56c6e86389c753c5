"""Edits are compiled once against a model and applied once: every refusal happens at compile time,
before any latents exist, and applying is arithmetic that cannot refuse (but for float32 overflow)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fixtures.toy_model import TOY_CARD

from latentdial.factor_card import FactorCard, FactorEntry
from latentdial.serving.edits import (
    MAX_EDITS,
    CheckedEdit,
    apply_edits,
    compile_edits,
    plan_traversal,
)
from latentdial.serving.errors import FailedPrecondition, InvalidArgument

D = TOY_CARD.latent_dim  # 4: pos_x on 0, shape on 1, angle on 2, dimension 3 unnamed
HAND_NAMED = FactorCard(factors=[FactorEntry("tilt", "continuous", [3])], latent_dim=D)


def z(n: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)


@pytest.mark.parametrize(
    ("edit", "card", "error", "pattern"),
    [
        (CheckedEdit("colour", None, "set_value", 1.0), TOY_CARD, InvalidArgument, r"edits\[0\]: unknown factor 'colour'"),
        (CheckedEdit(None, 4, "set_value", 1.0), TOY_CARD, InvalidArgument, r"dimension 4 is outside 0\.\.3"),
        (CheckedEdit(None, 3, "set_label", "heart"), TOY_CARD, InvalidArgument, "needs a factor target"),
        (CheckedEdit("shape", None, "set_label", "star"), TOY_CARD, InvalidArgument, "no label 'star'"),
        (CheckedEdit("pos_x", None, "set_value", 2.0), TOY_CARD, InvalidArgument, r"outside \[0\.0, 1\.0\]"),
        (CheckedEdit("shape", None, "set_value", 0.5), TOY_CARD, InvalidArgument, "categorical"),
        (CheckedEdit("tilt", None, "set_label", "up"), HAND_NAMED, InvalidArgument, "hand-named and has no labels"),
        (CheckedEdit("pos_x", None, "set_value", 0.5), None, FailedPrecondition, "no factor card"),
        (CheckedEdit(None, 0, "set_value", 1e39), TOY_CARD, InvalidArgument, "outside float32's range"),
        (CheckedEdit(None, 0, "rotate", 1.0), TOY_CARD, InvalidArgument, "no operation"),
    ],
)
def test_every_refusal_happens_at_compile_time_without_latents(edit, card, error, pattern):
    with pytest.raises(error, match=pattern):
        compile_edits([edit], card, D)


def test_more_edits_than_the_limit_are_refused_by_count_and_pins_are_named_pins():
    with pytest.raises(InvalidArgument, match=f"pins: {MAX_EDITS + 1} given"):
        compile_edits([CheckedEdit(None, 0, "set_value", 0.0)] * (MAX_EDITS + 1), TOY_CARD, D, "pins")


def test_the_index_of_the_bad_edit_is_in_the_message():
    with pytest.raises(InvalidArgument, match=r"edits\[1\]"):
        compile_edits([CheckedEdit(None, 0, "shift", 1.0), CheckedEdit(None, 9, "shift", 1.0)], TOY_CARD, D)


def test_set_value_and_set_label_put_the_factor_at_its_calibration_latents():
    out = compile_edits([CheckedEdit("pos_x", None, "set_value", 0.25), CheckedEdit("shape", None, "set_label", "heart")],
                        TOY_CARD, D).apply(z())
    np.testing.assert_allclose(out[:, 0], -0.5)  # halfway between the table's -1 and 0
    np.testing.assert_allclose(out[:, 1], 1.5)


def test_a_shift_moves_along_the_calibration_curve_and_wraps_a_circular_factor():
    start = compile_edits([CheckedEdit("angle", None, "set_value", 3 * math.pi / 2)], TOY_CARD, D).apply(z())
    moved = compile_edits([CheckedEdit("angle", None, "shift", math.pi)], TOY_CARD, D).apply(start)
    np.testing.assert_allclose(moved[:, 2], 1.0, atol=1e-6)  # 3pi/2 + pi wraps to pi/2: latent 1


def test_a_shift_of_zero_changes_nothing():
    before = z()
    np.testing.assert_array_equal(compile_edits([CheckedEdit("pos_x", None, "shift", 0.0)], TOY_CARD, D).apply(before), before)


def test_dimensions_and_hand_named_factors_move_in_latent_units():
    before = z()
    out = compile_edits([CheckedEdit(None, 3, "shift", 0.5), CheckedEdit(None, 0, "set_latent", 0.25)], TOY_CARD, D).apply(before)
    np.testing.assert_allclose(out[:, 3], before[:, 3] + 0.5)
    np.testing.assert_allclose(out[:, 0], 0.25)
    tilt = compile_edits([CheckedEdit("tilt", None, "shift", -1.0)], HAND_NAMED, D).apply(before)
    np.testing.assert_allclose(tilt[:, 3], before[:, 3] - 1.0)


def test_compiled_edits_apply_to_any_number_of_rows_and_leave_the_input_alone():
    compiled = compile_edits([CheckedEdit(None, 1, "set_value", 2.0)], TOY_CARD, D)
    for n in (1, 5):
        before = z(n)
        kept = before.copy()
        assert compiled.apply(before).shape == (n, D)
        np.testing.assert_array_equal(before, kept)


def test_apply_edits_is_compile_then_apply():
    edits = [CheckedEdit("angle", None, "shift", 0.3), CheckedEdit(None, 3, "set_value", -1.0)]
    np.testing.assert_array_equal(apply_edits(z(), edits, TOY_CARD), compile_edits(edits, TOY_CARD, D).apply(z()))


def test_latents_of_another_size_are_refused():
    with pytest.raises(InvalidArgument, match=r"\(N, 4\)"):
        compile_edits([], TOY_CARD, D).apply(np.zeros((1, 3), np.float32))


def test_shifts_that_add_up_past_float32_are_refused_when_applied():
    edits = [CheckedEdit(None, 0, "shift", 3e38)] * 2
    compiled = compile_edits(edits, TOY_CARD, D)  # each value is within float32
    with pytest.raises(InvalidArgument, match="outside float32's range"):
        compiled.apply(z())


def test_a_traversal_is_planned_without_latents_and_gridded_from_any_base():
    plan = plan_traversal(D, dims=[], factors=["pos_x", "shape"], start=None, stop=None, steps=3, card=TOY_CARD)
    assert plan.targets == ["pos_x", "shape"] and plan.values.shape == (2, 3)
    grid = plan.grid(z(2))
    assert grid.shape == (2 * 2 * 3, D)
    np.testing.assert_allclose(grid[:3, 0], [-1.0, 0.0, 1.0])  # source 0, pos_x over its range
    with pytest.raises(InvalidArgument, match="unknown factor"):
        plan_traversal(D, dims=[], factors=["colour"], start=None, stop=None, steps=3, card=TOY_CARD)


@pytest.mark.parametrize("start, stop", [(math.inf, 1.0), (0.0, -math.inf), (math.nan, 1.0), (-1e308, 1e308),
                                         (0.0, 3.5e38)])
def test_a_sweep_from_or_to_a_number_outside_float32_is_refused_on_every_door(start, stop):
    # (JSON's 1e400 reads as inf; gRPC's start and stop are doubles): its values would not survive float32
    for dims, factors in (([0], []), ([], ["pos_x"])):
        with pytest.raises(InvalidArgument, match=r"^(start|stop): value .* is outside float32's range"):
            plan_traversal(D, dims=dims, factors=factors, start=start, stop=stop, steps=3, card=TOY_CARD)
    plan = plan_traversal(D, dims=[0], factors=[], start=-3e38, stop=3e38, steps=3, card=TOY_CARD)
    assert np.isfinite(plan.values).all()
