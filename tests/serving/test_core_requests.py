"""What a well-formed request is, whatever the wire it came on: one target, one operation, finite numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from latentdial.serving.edits import CheckedEdit
from latentdial.serving.errors import InvalidArgument
from latentdial.serving.requests import (
    MAX_SEED,
    EncodeRequest,
    GenerateRequest,
    ReconstructRequest,
    SamplesRequest,
    Source,
    edit_of,
    finite,
    pin_of,
)


def test_an_edit_has_exactly_one_target_and_one_operation():
    assert edit_of("scale", None, {"set_value": 0.8, "shift": None}, "edits[0]") == CheckedEdit("scale", None, "set_value", 0.8)
    assert edit_of(None, 3, {"shift": -1}, "edits[0]") == CheckedEdit(None, 3, "shift", -1.0)
    with pytest.raises(InvalidArgument, match=r"edits\[2\]: give exactly one of factor or dimension"):
        edit_of("scale", 3, {"set_value": 1.0}, "edits[2]")
    with pytest.raises(InvalidArgument, match="give exactly one of factor or dimension"):
        edit_of(None, None, {"set_value": 1.0}, "edits[0]")
    with pytest.raises(InvalidArgument, match=r"exactly one of set_value, shift, set_latent, set_label; got \[\]"):
        edit_of("scale", None, {}, "edits[0]")
    with pytest.raises(InvalidArgument, match=r"got \['set_value', 'shift'\]"):
        edit_of("scale", None, {"set_value": 1.0, "shift": 2.0}, "edits[0]")


def test_a_label_stays_text_and_a_number_must_be_finite():
    assert edit_of("shape", None, {"set_label": "heart"}, "e").value == "heart"
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(InvalidArgument, match="not finite"):
            edit_of("scale", None, {"shift": bad}, "e")


def test_a_pin_is_the_set_edit_it_names():
    assert pin_of("scale", None, {"value": 0.5}, "pins[0]") == CheckedEdit("scale", None, "set_value", 0.5)
    assert pin_of(None, 2, {"latent": 1.5}, "pins[0]") == CheckedEdit(None, 2, "set_latent", 1.5)
    assert pin_of("shape", None, {"label": "heart"}, "pins[0]") == CheckedEdit("shape", None, "set_label", "heart")
    with pytest.raises(InvalidArgument, match=r"pins\[1\]: give exactly one of value, latent, label"):
        pin_of("scale", None, {"value": 1.0, "label": "big"}, "pins[1]")


def test_finite_names_what_was_not():
    assert finite(2, "temperature") == 2.0
    with pytest.raises(InvalidArgument, match="temperature: value nan"):
        finite(math.nan, "temperature")


def test_a_source_counts_its_rows_and_refuses_to_be_empty():
    assert Source(images=np.zeros((3, 1, 8, 8), np.float32)).rows == 3
    assert Source(latents=np.zeros((2, 4), np.float32)).rows == 2
    with pytest.raises(InvalidArgument, match="no source"):
        Source().rows  # noqa: B018


def test_a_seed_is_the_protos_uint64_on_every_request_that_takes_one():
    images = np.zeros((1, 1, 8, 8), np.float32)
    builds = {"encode": lambda seed: EncodeRequest(images, True, seed),
              "reconstruct": lambda seed: ReconstructRequest(images, True, seed),
              "generate": lambda seed: GenerateRequest(1, seed), "samples": lambda seed: SamplesRequest(1, seed)}
    for what, build in builds.items():
        for seed in (0, 7, MAX_SEED, np.uint64(MAX_SEED)):
            assert build(seed).seed == seed, what
        for seed in (-1, MAX_SEED + 1, -(10**20)):
            with pytest.raises(InvalidArgument, match=r"seed=.* is outside 0\.\.18446744073709551615"):
                build(seed)
        with pytest.raises(InvalidArgument, match=r"^seed is outside"):  # too many digits to print
            build(10**5000)
        for seed in (1.5, True, "3"):
            with pytest.raises(InvalidArgument, match="is not an integer"):
                build(seed)
