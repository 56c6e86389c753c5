"""The generic attribute reader (training/reader/generic.py): heads per factor of any rendered
dataset, the tolerance by kind (wrap-around for circular factors), and edits of a model trained
on a labelled folder judged against the renderer of the folder's grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.standin import StandIn

from latentdial.training.data.base import GroundTruthData
from latentdial.training.reader import (
    EDIT_TOLERANCE,
    EDIT_TOLERANCE_BY_KIND,
    EXACT,
    FactorLayout,
    GenericReader,
    Reading,
    agreement,
    load_reader,
    store,
)
from latentdial.training.reader.fit import fit_reader, heldout_accuracy

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Tiles(GroundTruthData):
    """A tiny renderer (24 x 24 RGB, numpy): a bar of a colour, length and angle at a place.

    The bar looks the same after half a turn when it is ``plain``, and only after a full turn
    when it is ``tipped`` (a dark tip at one end): orientation has the symmetry (kind, (2, 1)).
    """

    name = "tiles"
    factor_names = ("kind", "colour", "length", "angle", "pos_x")
    factor_kinds = ("categorical", "categorical", "continuous", "circular", "continuous")
    factors_num_values = (2, 3, 3, 8, 4)
    observation_shape = (3, 24, 24)
    COLOURS = np.array([[1.0, 0.2, 0.2], [0.2, 1.0, 0.2], [0.2, 0.2, 1.0]])

    def factor_grid(self, factor: int) -> np.ndarray:
        return (np.arange(2.0), np.arange(3.0), np.array([4.0, 6.0, 8.0]), np.arange(8) * (2 * np.pi / 8),
                np.linspace(0.0, 1.0, 4))[factor].copy()

    def factor_labels(self, factor: int) -> list[str]:
        return (["plain", "tipped"], ["red", "green", "blue"], [], [], [])[factor]

    def circular_symmetry(self, factor: int):
        return (0, (2, 1)) if factor == 3 else None

    def sample_observations_from_factors(self, factors, rng=None) -> np.ndarray:
        factors = np.asarray(factors)
        yy, xx = np.mgrid[0:24, 0:24].astype(np.float64)
        out = np.full((len(factors), 3, 24, 24), 0.5, np.float32)
        for i, (kind, colour, length, angle, x) in enumerate(factors):
            half, theta = self.factor_grid(2)[length], self.factor_grid(3)[angle]
            cx, cy = 8.0 + 2.5 * x, 12.0
            u, v = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta), -(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)
            bar = (np.abs(u) <= half) & (np.abs(v) <= 1.5)
            out[i][:, bar] = self.COLOURS[colour][:, None]
            if kind == 1:
                out[i][:, bar & (u > half - 2.5)] = 0.0
        return out


@pytest.fixture(scope="module")
def tiles() -> Tiles:
    return Tiles()


# ------------------------------------------------------------------ the reader --
def test_the_heads_follow_the_datasets_factors_and_grids(tiles):
    layout = FactorLayout.of(tiles)
    assert layout.names == tiles.factor_names and layout.num_values == (2, 3, 3, 8, 4)
    assert layout.symmetry == (None, None, None, (0, (2, 1)), None)
    reader = GenericReader.build("tiles", layout, crop=15)
    assert reader.net.sizes == {"kind": 2, "colour": 3, "length": 3, "angle": 8, "pos_x": 4}
    images = tiles.sample_observations(5, np.random.default_rng(0))
    logits = reader.logits(images)
    assert {n: tuple(v.shape) for n, v in logits.items()} == {n: (5, k) for n, k in reader.net.sizes.items()}
    reading = reader.read(images)
    assert reading.factors.shape == (5, 5) and reading.layout == layout
    assert (reading.factors < np.array(layout.num_values)).all()
    assert reader.tolerance == {"kind": 0, "colour": 0, "length": 1, "angle": 2, "pos_x": 1}
    with pytest.raises(ValueError, match=r"\(N, 3, 24, 24\)"):
        reader.read(np.zeros((1, 1, 24, 24), np.float32))


def test_a_few_training_steps_run_and_the_weights_round_trip(tiles, tmp_path):
    reader = fit_reader(tiles, "tiles", steps=4, batch_size=16, progress=False)
    assert isinstance(reader, GenericReader) and 5 <= reader.net.crop <= 23 and reader.net.crop % 2 == 1
    assert float(reader.metadata["train_seconds"]) >= 0
    accuracy = heldout_accuracy(reader, tiles, num=64)
    assert set(accuracy) == set(tiles.factor_names)
    assert all(0 <= a["exact"] <= a["edit_tolerance"] <= 1 for a in accuracy.values())
    path = store.save_reader(reader, tmp_path / "tiles.safetensors", {"clean": accuracy})
    meta = store.read_metadata(path)
    assert meta["recipe"] == store.GENERIC_RECIPE and FactorLayout.from_json(meta["layout"]) == reader.layout
    loaded = store.load_file_reader(path)
    images = tiles.sample_observations(32, np.random.default_rng(1))
    np.testing.assert_array_equal(loaded.read(images).factors, reader.read(images).factors)


def test_which_datasets_get_a_generic_reader_and_the_dsprites_ones_stay():
    assert store.generic_refusal("idsprites") is None and store.generic_refusal("noisy_dsprites") is None
    assert "cannot draw" in store.generic_refusal("labelled_folder")
    assert "no factors" in store.generic_refusal("folder")
    assert "options" in store.generic_refusal("shapes3d")
    with pytest.raises(ValueError, match="readable: dsprites, color_dsprites .*idsprites"):
        load_reader("labelled_folder")
    assert store.recipe_of("dsprites") == store.RECIPE and store.recipe_of("idsprites") == store.GENERIC_RECIPE
    assert load_reader("dsprites", train=False).layout is None  # the shipped dSprites reader, as it was


def test_a_generic_reader_is_not_trained_behind_the_callers_back(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTDIAL_CACHE", str(tmp_path))
    monkeypatch.setattr(store, "SHIPPED", tmp_path / "nothing shipped")
    with pytest.raises(FileNotFoundError, match="train-reader --dataset noisy_dsprites"):
        load_reader("noisy_dsprites")


# -------------------------------------------------------- tolerance by kind --
def test_agreement_by_kind_wraps_circular_factors_around(tiles):
    layout = FactorLayout.of(tiles)
    names = layout.names
    truth = np.array([[1, 2, 2, 0, 2]] * 4)  # tipped: no symmetry, angle index 0 of 8
    read = np.array([
        [1, 2, 1, 7, 3],  # one step off in length, angle (across 0) and pos_x: all within
        [1, 2, 2, 6, 2],  # angle two steps back across 0: within
        [0, 1, 0, 5, 0],  # another kind and colour, length two steps, angle three steps, pos_x two
        [1, 2, 2, 4, 2],  # angle half a turn away
    ])
    agrees = agreement(names, Reading(read, np.zeros(4), layout), truth)
    assert agrees.tolist() == [[True] * 5, [True] * 5, [False] * 5, [True, True, True, False, True]]
    exact = agreement(names, Reading(read, np.zeros(4), layout), truth, EXACT)
    assert exact[:, 3].tolist() == [False, False, False, False] and exact[1].tolist() == [True, True, True, False, True]
    assert agreement(names, Reading(truth, np.zeros(4), layout), truth, EXACT).all()


def test_agreement_by_kind_honours_the_datasets_symmetry(tiles):
    layout = FactorLayout.of(tiles)
    plain, tipped = np.array([[0, 0, 0, 1, 0]]), np.array([[1, 0, 0, 1, 0]])
    half_turn = np.array([[0, 0, 0, 5, 0]])  # angle 1 + 4 steps: half a turn
    assert agreement(layout.names, Reading(half_turn, np.zeros(1), layout), plain)[0, 3]  # a plain bar: same image
    moved = half_turn.copy()
    moved[0, 0] = 1
    assert not agreement(layout.names, Reading(moved, np.zeros(1), layout), tipped)[0, 3]  # a tipped one: not
    # an edit from a plain bar to a tipped one: its angle was only known modulo half a turn
    assert agreement(layout.names, Reading(moved, np.zeros(1), layout), tipped, sources=plain)[0, 3]


def test_the_rule_has_one_home_and_the_dsprites_tolerance_is_unchanged():
    assert dict(EDIT_TOLERANCE_BY_KIND) == {"categorical": 0, "continuous": 1, "circular": 2}
    assert dict(EDIT_TOLERANCE) == {"shape": 0, "scale": 1, "orientation": 2, "pos_x": 1, "pos_y": 1,
                                    "object_hue": 0, "background_hue": 0}
    assert dict(EXACT) == dict.fromkeys(EDIT_TOLERANCE, 0) and EXACT["color"] == 0


def test_a_tolerance_that_does_not_name_every_factor_is_refused(tiles):
    layout = FactorLayout.of(tiles)
    f = np.zeros((1, 5), np.int64)
    with pytest.raises(ValueError, match="reader.tolerance"):
        agreement(layout.names, Reading(f, np.zeros(1), layout), f, EDIT_TOLERANCE)


# ------------------------------------------------------------------ idsprites --
@pytest.fixture(scope="module")
def idsprites():
    pytest.importorskip("idsprites")
    from latentdial.training.data import get_dataset

    data = get_dataset("idsprites")
    data.sample_observations_from_factors(np.zeros((1, 6), np.int64))  # compile the package's kernel once
    return data


@pytest.fixture(scope="module")
def idsprites_reader():
    return load_reader("idsprites", train=False)


def test_the_shipped_idsprites_reader_reads_every_factor_of_fresh_renders(idsprites, idsprites_reader):
    assert idsprites_reader.layout == FactorLayout.of(idsprites)
    assert json.loads(idsprites_reader.metadata["options"]) == {"num_shapes": 3, "shape_seed": 0, "image_size": 64}
    recorded = json.loads(idsprites_reader.metadata["accuracy"])["clean"]
    assert min(a["edit_tolerance"] for a in recorded.values()) >= 0.98, recorded
    accuracy = heldout_accuracy(idsprites_reader, idsprites, num=400, seed=11)
    for name, a in accuracy.items():
        assert a["edit_tolerance"] >= 0.95, (name, a)


# ------------------------------------------------------- labelled folder grids --
@pytest.fixture(scope="module")
def folder(idsprites, tmp_path_factory) -> Path:
    from latentdial.training.data.write_folder import write_labelled_folder

    return write_labelled_folder(idsprites, tmp_path_factory.mktemp("folder") / "idsprites", 12, 12,
                                 np.random.default_rng(0))


def folder_card(path: Path, latent_dim: int = 8):
    """The card a semi-supervised model trained on the folder gets: the schema's grids as its codes."""
    from latentdial.training.data import get_dataset
    from latentdial.training.objectives.semi_supervised import factor_codes, supervision_card

    data = get_dataset("labelled_folder", path=str(path), cache_dir=str(path.parent / "cache"))
    return supervision_card(factor_codes(data, [], latent_dim), latent_dim)


def test_the_card_of_a_folder_written_by_make_folder_has_the_renderers_grid(folder, idsprites):
    from latentdial.training.edit_success import check_card_grid

    card = folder_card(folder)
    assert card.names == list(idsprites.factor_names)
    check_card_grid(card, idsprites, every_name=True)
    # a circular factor is compared modulo its period
    turned = folder_card(folder)
    turned["orientation"].values = [v + 2 * np.pi for v in turned["orientation"].values]
    check_card_grid(turned, idsprites, every_name=True)


def test_a_card_of_another_grid_is_refused_naming_the_factor(folder, idsprites, tmp_path):
    import shutil

    from latentdial.training.edit_success import check_card_grid

    other = tmp_path / "other"
    shutil.copytree(folder, other)
    toml = (other / "factors.toml").read_text()
    (other / "factors.toml").write_text(toml.replace("[factors.pos_x]\nkind = \"continuous\"\nrange = [0.0, 1.0]",
                                                     "[factors.pos_x]\nkind = \"continuous\"\nrange = [0.0, 1.5]"))
    with pytest.raises(ValueError, match=r"pos_x: value 15 is 1\.5 in the card, 1\.0 in 'idsprites'"):
        check_card_grid(folder_card(other), idsprites, every_name=True)
    card = folder_card(folder)
    card["color"].labels = ["green", "red", "blue", "yellow"]
    with pytest.raises(ValueError, match="color: labels"):
        check_card_grid(card, idsprites)
    card = folder_card(folder)
    card["scale"].values = card["scale"].values[:5]
    card["scale"].latent_table = card["scale"].latent_table[:5]
    with pytest.raises(ValueError, match="scale: 5 values in the card, 6"):
        check_card_grid(card, idsprites)
    card = folder_card(folder)
    card["pos_y"].name = "height"
    with pytest.raises(ValueError, match="height: 'idsprites' has no such factor"):
        check_card_grid(card, idsprites, every_name=True)
    check_card_grid(card, idsprites)  # a card of the model's own dataset may carry more


# ------------------------------------------------------ edits of a folder model --
def test_a_folder_model_that_draws_the_truth_succeeds_and_one_that_does_nothing_never_hits(
        folder, idsprites, idsprites_reader):
    from latentdial.training.edit_success import evaluate_edits

    card = folder_card(folder)
    r = evaluate_edits(StandIn(idsprites, num=60, seed=0), idsprites, card, idsprites_reader, num=60, batch=64,
                       progress=False).report
    assert r["tolerance_steps"] == {"shape": 0, "color": 0, "scale": 1, "orientation": 2, "pos_x": 1, "pos_y": 1}
    assert r["readback"]["all"] >= 0.95 and r["recon_iou"] == 1.0
    for name, f in r["factors"].items():
        assert f["editable"] and f["success"] >= 0.95 and f["iou"] == 1.0, (name, f)
    r = evaluate_edits(StandIn(idsprites, num=40, seed=1, edits=False), idsprites, card, idsprites_reader, num=40,
                       seed=1, batch=64, progress=False).report
    for name, f in r["factors"].items():
        assert f["target_hit"] <= 0.05 and f["others_kept"] >= 0.9, (name, f)


def test_iou_of_idsprites_counts_the_dark_marker(idsprites):
    from latentdial.training.edit_success import foreground

    image = idsprites.sample_observations_from_factors(np.array([[0, 0, 5, 0, 8, 8]]))
    drawn = np.any(np.rint(image[0] * 255) != 169, axis=0)
    np.testing.assert_array_equal(foreground(image, dark=True)[0], drawn)
    assert foreground(image)[0].sum() < 0.7 * drawn.sum()  # the bright rule alone misses the black half


@pytest.fixture(scope="module")
def folder_model(folder, tmp_path_factory) -> Path:
    from fixtures.toy_model import build_toy_model

    from latentdial.manifest import Manifest

    root = tmp_path_factory.mktemp("repo")
    model = build_toy_model(root, "folder_model", "1", image_shape=(3, 64, 64), latent_dim=8, with_card=False)
    m = Manifest.load(model.path)
    m.factor_card = folder_card(folder).to_dict()
    m.provenance = {"dataset": {"name": "labelled_folder", "path": str(folder), "channels": 3, "image_size": 64}}
    m.save(model.path)
    return model.path


def test_evaluate_edits_of_a_folder_model_draws_from_the_renderer_and_judges_with_its_reader(
        folder_model, idsprites, tmp_path, capsys):
    from PIL import Image

    from latentdial.cli import main

    out = tmp_path / "edits.json"
    assert main(["evaluate-edits", str(folder_model), "--dataset", "idsprites", "--num", "12", "--batch", "16",
                 "--examples", "2", "--out", str(out), "--quiet"]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "judged by the idsprites generic attribute reader" in printed and "trained on labelled_folder" in printed
    r = json.loads(out.read_text())
    assert r["dataset"] == {"name": "idsprites"} and r["sources"] == "idsprites"
    assert r["model"]["trained_on"]["name"] == "labelled_folder"
    assert r["reader"]["dataset"] == "idsprites" and r["reader"]["recipe"] == store.GENERIC_RECIPE
    assert set(r["factors"]) == set(idsprites.factor_names)
    assert all(f["editable"] and f["num"] == 12 and 0 <= f["success"] <= 1 for f in r["factors"].values())
    sheet = Image.open(out.with_suffix(".png"))
    assert sheet.size[1] > 6 * 96  # a row per edited factor


def test_evaluate_edits_of_a_folder_model_asks_for_a_renderer_and_refuses_another_grid(
        folder_model, tmp_path, capsys):
    from latentdial.cli import main
    from latentdial.manifest import Manifest

    out = tmp_path / "edits.json"
    assert main(["evaluate-edits", str(folder_model), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "'labelled_folder'" in err and "--dataset idsprites" in err
    assert main(["evaluate-edits", str(folder_model), "--dataset", "dsprites", "--out", str(out), "--quiet"]) == 2
    assert "does not have the grid of 'dsprites'" in capsys.readouterr().err
    five = '{"name": "idsprites", "num_shapes": 5}'
    assert main(["evaluate-edits", str(folder_model), "--dataset", five, "--out", str(out), "--quiet"]) == 2
    assert "shape: 3 values in the card, 5 in 'idsprites'" in capsys.readouterr().err
    m = Manifest.load(folder_model)
    card = json.loads(json.dumps(m.factor_card))
    m.factor_card["factors"] = [f for f in card["factors"] if f["name"] != "pos_y"] + [
        {**next(f for f in card["factors"] if f["name"] == "pos_y"), "name": "height"}]
    m.save(folder_model)
    try:
        assert main(["evaluate-edits", str(folder_model), "--dataset", "idsprites", "--out", str(out), "--quiet"]) == 2
        assert "height: 'idsprites' has no such factor" in capsys.readouterr().err
    finally:
        m.factor_card = card
        m.save(folder_model)
    assert not out.exists()


def test_a_folder_model_of_another_image_shape_is_refused(folder, tmp_path, capsys):
    from fixtures.toy_model import build_toy_model

    from latentdial.cli import main
    from latentdial.manifest import Manifest

    model = build_toy_model(tmp_path / "repo", "grey", "1", image_shape=(1, 64, 64), latent_dim=8, with_card=False)
    m = Manifest.load(model.path)
    m.factor_card = folder_card(folder).to_dict()
    m.provenance = {"dataset": {"name": "labelled_folder", "path": str(folder), "channels": 1}}
    m.save(model.path)
    assert main(["evaluate-edits", str(model.path), "--dataset", "idsprites", "--out", str(tmp_path / "e.json"),
                 "--quiet"]) == 2
    assert "takes (1, 64, 64) images, 'idsprites' draws (3, 64, 64)" in capsys.readouterr().err


def test_a_reader_trained_on_other_options_is_refused(folder_model, idsprites_reader, tmp_path, capsys):
    from latentdial.cli import main

    other = tmp_path / "seed1.safetensors"
    idsprites_reader.metadata["options"] = json.dumps({"num_shapes": 3, "shape_seed": 1, "image_size": 64})
    try:
        store.save_reader(idsprites_reader, other, json.loads(idsprites_reader.metadata["accuracy"]))
    finally:
        idsprites_reader.metadata["options"] = json.dumps({"num_shapes": 3, "shape_seed": 0, "image_size": 64})
    assert main(["evaluate-edits", str(folder_model), "--dataset", "idsprites", "--reader", str(other),
                 "--out", str(tmp_path / "e.json"), "--quiet"]) == 2
    assert "trained on idsprites with options" in capsys.readouterr().err


def test_train_reader_trains_the_generic_reader_of_a_dataset_without_a_dsprites_one(tmp_path, monkeypatch, capsys):
    from latentdial.cli import main
    from latentdial.training.reader import fit

    real = fit.heldout_accuracy
    monkeypatch.setattr(fit, "heldout_accuracy", lambda *a, **k: real(*a, **{**k, "num": 64}))
    out = tmp_path / "noisy.safetensors"
    assert main(["train-reader", "--dataset", "noisy_dsprites", "--steps", "2", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "held-out accuracy" in printed and "trained in" in printed and "load average" in printed
    meta = store.read_metadata(out)
    assert meta["dataset"] == "noisy_dsprites" and meta["recipe"] == store.GENERIC_RECIPE and meta["steps"] == "2"
    assert torch.is_tensor(next(iter(store.load_file_reader(out).net.state_dict().values())))
    assert main(["train-reader", "--dataset", "idsprites", "--dataset-option", "num_shapes=5", "--quiet"]) == 2
    assert "--out" in capsys.readouterr().err
