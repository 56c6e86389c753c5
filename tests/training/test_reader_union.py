"""A reader trained on a union of renderers of one factor grid: the union, where its weights
live, and ``latentdial train-reader --also``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from latentdial.training.data import get_dataset
from latentdial.training.reader import fit, load_reader, store
from latentdial.training.reader.fit import RenderUnion

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_union_draws_each_image_by_one_of_its_renderers():
    training, elsewhere = get_dataset("dsprites"), get_dataset("dsprites_elsewhere")
    union = RenderUnion([training, elsewhere])
    assert union.name == "dsprites+dsprites_elsewhere" and union.factor_names == tuple(training.factor_names)
    factors, images = union.sample(400, np.random.default_rng(0))
    by_training = training.sample_observations_from_factors(factors)
    by_elsewhere = elsewhere.sample_observations_from_factors(factors)
    from_training = (images == by_training).all(axis=(1, 2, 3))
    from_elsewhere = (images == by_elsewhere).all(axis=(1, 2, 3))
    assert (from_training ^ from_elsewhere).all()  # each image is exactly one renderer's
    assert 0.4 < from_training.mean() < 0.6


def test_a_union_of_renderers_of_different_grids_is_refused():
    with pytest.raises(ValueError, match="one grid"):
        RenderUnion([get_dataset("dsprites"), get_dataset("color_dsprites_elsewhere")])
    with pytest.raises(ValueError, match="at least one"):
        RenderUnion([])


def test_a_union_reader_lives_beside_the_plain_one_and_never_replaces_it(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTDIAL_CACHE", str(tmp_path))
    monkeypatch.setattr(store, "SHIPPED", tmp_path / "nothing shipped")
    assert store.cached_path("dsprites", ("dsprites_elsewhere",)).name == "dsprites+dsprites_elsewhere.safetensors"
    with pytest.raises(FileNotFoundError, match="--also dsprites_elsewhere"):
        load_reader("dsprites", also=("dsprites_elsewhere",), train=False)
    reader = fit.fit_reader(get_dataset("dsprites"), "dsprites", steps=1, batch_size=4, progress=False)
    store.save_reader(reader, store.cached_path("dsprites", ("dsprites_elsewhere",)), {}, also=("dsprites_elsewhere",))
    loaded = load_reader("dsprites", also=("dsprites_elsewhere",), train=False)
    assert store.trained_also(loaded.metadata) == ["dsprites_elsewhere"]
    with pytest.raises(FileNotFoundError):  # the plain reader is not the union's file
        load_reader("dsprites", train=False)
    store.save_reader(reader, store.cached_path("dsprites"), {})
    assert store.trained_also(load_reader("dsprites", train=False).metadata) == []


def test_train_reader_also_trains_on_the_union_and_scores_each_renderer(tmp_path, monkeypatch, capsys):
    from latentdial.cli import main

    quick = fit.heldout_accuracy
    monkeypatch.setattr(fit, "heldout_accuracy", lambda *a, **k: quick(*a, **{**k, "num": 64}))
    out = tmp_path / "both.safetensors"
    assert main(["train-reader", "--dataset", "dsprites", "--also", "dsprites_elsewhere", "--steps", "2",
                 "--out", str(out), "--quiet"]) == 0
    meta = store.read_metadata(out)
    assert meta["dataset"] == "dsprites" and json.loads(meta["also"]) == ["dsprites_elsewhere"]
    assert set(json.loads(meta["accuracy"])) == {"clean", "soft", "dsprites_elsewhere clean", "dsprites_elsewhere soft"}
    printed = capsys.readouterr().out
    assert "attribute reader for dsprites + dsprites_elsewhere" in printed and f"wrote {out}" in printed
    assert main(["train-reader", "--dataset", "dsprites", "--also", "color_dsprites", "--quiet"]) == 2
    assert "one grid" in capsys.readouterr().err
