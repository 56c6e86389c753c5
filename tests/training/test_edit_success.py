"""Edit success: the reader judges edits of stand-in models with known behaviour, then
``latentdial evaluate-edits`` runs through a real server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures.oracle_model import build_oracle, calibrate_card, dsprites_card
from fixtures.server import ServerThread, make_config
from fixtures.standin import StandIn
from fixtures.toy_model import build_toy_model

from latentdial.cli import main
from latentdial.factor_card import FactorCard
from latentdial.manifest import Manifest
from latentdial.training.data import get_dataset
from latentdial.training.edit_success import (
    EDIT_TOLERANCE,
    agreement,
    draw_targets,
    evaluate_edits,
    foreground,
    iou,
    reading_of,
)
from latentdial.training.reader import load_reader

pytestmark = pytest.mark.usefixtures("one_torch_thread")
NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")


@pytest.fixture(scope="module")
def reader():
    return load_reader("dsprites", train=False)


# ---------------------------------------------------- stand-in models --
def discs(factors: np.ndarray) -> np.ndarray:
    """Soft discs where the sprites are, growing with scale: a model that draws every shape as a blob."""
    yy, xx = np.mgrid[0:64, 0:64]
    radius = 5.0 + 6.0 * factors[:, 1] / 5.0
    d = np.hypot(xx[None] - (16 + factors[:, 3, None, None]), yy[None] - (16 + factors[:, 4, None, None]))
    return (1 / (1 + np.exp((d - radius[:, None, None]) / 0.7)))[:, None].astype(np.float32)


def _run(reader, draw, num=300, seed=0, edits=True, card=None):
    ds = get_dataset("dsprites")
    client = StandIn(ds, draw, num, seed, edits=edits)
    return evaluate_edits(client, ds, card or dsprites_card(), reader, num=num, seed=seed, batch=64, progress=False)


def test_a_model_that_draws_the_ground_truth_succeeds_on_every_edit(reader):
    ds = get_dataset("dsprites")
    run = _run(reader, ds.sample_observations_from_factors)
    r = run.report
    assert r["readback"]["all"] >= 0.99 and r["recon_iou"] == 1.0
    for name in NAMES:
        f = r["factors"][name]
        assert f["editable"] and f["num"] == 300
        assert f["target_hit"] >= 0.99 and f["others_kept"] >= 0.98 and f["success"] >= 0.98, (name, f)
        assert f["iou"] == 1.0


def test_an_editor_without_latents_reads_back_through_an_edit_with_no_edit(reader):
    ds = get_dataset("dsprites")
    client = StandIn(ds, num=40, seed=0, kind="editor")  # its reconstruct raises
    run = evaluate_edits(client, ds, dsprites_card(), reader, num=40, seed=0, batch=64, progress=False)
    assert run.report["readback"]["all"] >= 0.99 and run.report["recon_iou"] == 1.0
    assert client.seen == 40 * 6  # the round trip, then one edit per factor of the card


def test_an_edit_that_changes_nothing_never_hits_its_target_and_keeps_everything(reader):
    ds = get_dataset("dsprites")
    r = _run(reader, ds.sample_observations_from_factors, num=200, edits=False).report
    for name in NAMES:
        assert r["factors"][name]["target_hit"] <= 0.02, name  # targets always differ from the source
        assert r["factors"][name]["others_kept"] >= 0.98, name


def test_a_model_that_draws_blobs_edits_shape_at_chance_and_position_well(reader):
    r = _run(reader, discs, num=300).report
    shape = r["factors"]["shape"]
    # the reader reads a blob as one fixed shape at best, so an edit to a random other shape hits ~1/3
    assert 0.15 <= shape["target_hit"] <= 0.5, shape
    assert r["readback"]["shape"] <= 0.5
    for name in ("pos_x", "pos_y"):
        assert r["factors"][name]["target_hit"] >= 0.95, (name, r["factors"][name])
        assert r["factors"][name]["others_kept"] <= 0.5  # the shape and orientation of the source are gone


def test_factors_outside_the_card_are_not_edited_but_must_still_be_kept(reader):
    ds = get_dataset("dsprites")
    card = FactorCard([dsprites_card()["pos_x"]], latent_dim=6)
    r = _run(reader, ds.sample_observations_from_factors, num=50, card=card).report
    assert r["factors"]["shape"] == {"editable": False, "reason": "not in the model's factor card"}
    assert set(r["factors"]["pos_x"]["kept_by_factor"]) == {"shape", "scale", "orientation", "pos_y"}


def test_targets_never_read_as_the_source_and_cover_every_other_value():
    ds = get_dataset("dsprites")
    rng = np.random.default_rng(0)
    sources = ds.sample_factors(4000, rng)
    for f, name in enumerate(NAMES):
        targets = draw_targets(NAMES, ds.factors_num_values[f], f, sources, rng)
        moved = sources.copy()
        moved[:, f] = targets
        assert not agreement(NAMES, reading_of(NAMES, moved), sources, EDIT_TOLERANCE)[:, f].any(), name
    shape_targets = draw_targets(NAMES, 3, 0, sources, rng)
    assert (shape_targets != sources[:, 0]).all() and set(shape_targets) == {0, 1, 2}


def test_foreground_and_iou_are_absolute_and_work_for_colour_renders():
    ds = get_dataset("color_dsprites")
    factors = ds.sample_factors(8, np.random.default_rng(1))
    images = ds.sample_observations_from_factors(factors)
    masks = get_dataset("dsprites").sample_observations_from_factors(factors[:, :5])[:, 0] > 0.5
    np.testing.assert_array_equal(foreground(images), masks)
    np.testing.assert_array_equal(iou(images, images), np.ones(8))
    shifted = factors.copy()
    shifted[:, 3] = (shifted[:, 3] + 16) % 32
    assert iou(ds.sample_observations_from_factors(shifted), images).max() < 0.5
    with pytest.raises(ValueError, match="shapes"):
        iou(images, images[:, :1])


# ------------------------------------------------------ through a server --
@pytest.fixture(scope="module")
def oracle_repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("oracle")
    model_dir = build_oracle(root)
    m = Manifest.load(model_dir)
    m.factor_card = calibrate_card(model_dir).to_dict()
    m.metrics = {"mig": 0.9}
    m.save(model_dir)
    return root


@pytest.fixture(scope="module")
def oracle_report(oracle_repo, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("oracle_edits") / "edits.json"
    assert main(["evaluate-edits", str(oracle_repo / "oracle" / "1"), "--num", "60", "--batch", "32",
                 "--out", str(out), "--examples", "3", "--quiet"]) == 0
    return out


def test_a_square_drawing_model_moves_sprites_as_asked_but_reads_back_shape_only_for_squares(oracle_report):
    r = json.loads(oracle_report.read_text())
    assert r["model"]["name"] == "oracle" and r["model"]["version"] == "1"
    assert r["dataset"] == {"name": "dsprites"} and r["num"] == 60 and r["reader"]["dataset"] == "dsprites"
    assert r["reader"]["recipe"] and r["reader"]["accuracy"]["clean"]["shape"]["exact"] >= 0.99
    assert {n for n, f in r["factors"].items() if f["editable"]} == {"scale", "pos_x", "pos_y"}
    assert r["factors"]["shape"]["reason"] == "not in the model's factor card"
    for name in ("pos_x", "pos_y"):
        assert r["factors"][name]["target_hit"] >= 0.9, (name, r["factors"][name])
        assert 0.0 <= r["factors"][name]["success"] <= r["factors"][name]["target_hit"]
    assert 0.15 <= r["readback"]["shape"] <= 0.55  # it draws squares: only square sources read back
    assert r["readback"]["pos_x"] >= 0.9 and 0.0 < r["recon_iou"] < 1.0


def test_the_sheet_shows_every_edited_factor_with_a_verdict(oracle_report):
    from PIL import Image

    sheet = Image.open(oracle_report.with_suffix(".png"))
    assert sheet.size[0] > 3 * 2 * 96 and sheet.size[1] > 3 * 96  # 3 examples, 3 edited factors
    pixels = np.asarray(sheet.convert("RGB")).reshape(-1, 3).astype(int)
    green = (pixels[:, 1] > 120) & (pixels[:, 0] < 100) & (pixels[:, 2] < 100)
    assert green.sum() > 50  # verdict text in green where the reader saw the asked value


def test_a_model_of_a_dataset_without_a_reader_is_refused(tmp_path, capsys):
    model = build_toy_model(tmp_path, "folder", "1", image_shape=(1, 64, 64), latent_dim=6, with_card=False)
    m = Manifest.load(model.path)
    m.factor_card = dsprites_card().to_dict()
    m.provenance = {"dataset": {"name": "noisy_dsprites"}}
    m.save(model.path)
    assert main(["evaluate-edits", str(model.path), "--out", str(tmp_path / "e.json"), "--quiet"]) == 2
    assert "no attribute reader" in capsys.readouterr().err


def test_a_server_that_does_not_serve_the_model_gives_a_clear_error(oracle_repo, tmp_path, capsys):
    other = tmp_path / "other"
    build_toy_model(other, "toy", "1")
    with ServerThread(make_config(other)) as server:
        code = main(["evaluate-edits", str(oracle_repo / "oracle" / "1"), "--address", server.address,
                     "--num", "4", "--out", str(tmp_path / "e.json"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "NotFoundError" in err and "oracle" in err and server.address in err


def test_a_model_without_a_factor_card_is_refused_with_what_to_do(tmp_path, capsys):
    model = build_toy_model(tmp_path, "plain", "1", with_card=False)
    assert main(["evaluate-edits", str(model.path), "--out", str(tmp_path / "e.json"), "--quiet"]) == 2
    assert "no factor card" in capsys.readouterr().err
    assert not (tmp_path / "e.json").exists()


def test_a_model_without_a_known_dataset_asks_for_one(tmp_path, capsys):
    model = build_toy_model(tmp_path, "toy", "1")  # provenance dataset "toy" is not registered
    assert main(["evaluate-edits", str(model.path), "--out", str(tmp_path / "e.json"), "--quiet"]) == 2
    assert "--dataset" in capsys.readouterr().err


# --------------------------------------------------------- model report --
def _script_module(name: str):
    """Import ``scripts/<name>.py`` (scripts are not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_report_writes_markdown_with_tables_and_labelled_pngs(oracle_repo, oracle_report, tmp_path):
    from PIL import Image

    out = tmp_path / "docs" / "models" / "oracle.md"
    reference = tmp_path / "oracle_factor_vae_reference.json"
    reference.write_text(json.dumps({"factor_vae.eval_accuracy": 0.8765}))
    assert _script_module("model_report").main([str(oracle_repo / "oracle" / "1"), "--out", str(out),
                                        "--edits", str(oracle_report), "--steps", "6", "--examples", "3",
                                        "--reference", str(reference),
                                        "--sheet", str(oracle_report.with_suffix(".png"))]) == 0
    text = out.read_text()
    assert "| mig | 0.9000 |" in text
    assert "reference sizes" in text and "| factor_vae.eval_accuracy | 0.8765 |" in text
    assert "| pos_x | continuous | 0 | 0 … 1 | 32 | yes |" in text
    assert "![traversal grid](images/oracle_traversal.png)" in text
    assert "## Edit success" in text and "| shape | — | — | — | not in the model's factor card |" in text
    assert "![edits with the reader's verdicts](" in text
    traversal = Image.open(out.parent / "images" / "oracle_traversal.png")
    edits = Image.open(out.parent / "images" / "oracle_edits.png")
    # label column + 6 steps of 64 px tiles; 3 factor rows
    assert traversal.size[0] > 6 * 64 and 3 * 64 <= traversal.size[1] < 4 * 64
    # 3 examples x (source, recon, 3 factors)
    assert edits.size[0] > 5 * 64 and edits.size[1] > 3 * 64
    grid = np.asarray(traversal.convert("L"), np.float32)
    assert grid[:, 100:].std() > 50  # white squares on black tiles, not an empty canvas


def test_dci_diagnostic_shows_unlearned_factors_holding_disentanglement_down(oracle_repo, capsys):
    assert _script_module("dci_diagnostic").main([str(oracle_repo / "oracle" / "1"), "--num-train", "600", "--num-test", "300"]) == 0
    out = capsys.readouterr().out
    full = float(out.split("DCI disentanglement ")[1].split(",")[0])
    without = {line.split()[1]: float(line.split()[2]) for line in out.splitlines() if "  without " in line}
    assert set(without) == {"shape", "scale", "orientation", "pos_x", "pos_y"}
    # the oracle carries scale and position exactly, shape and orientation not at all
    assert without["orientation"] > full and without["shape"] > full
    assert without["pos_x"] < full


def test_model_report_of_a_model_without_card_traverses_every_dimension(tmp_path):
    from PIL import Image

    model = build_toy_model(tmp_path / "repo", "plain", "1", image_shape=(3, 64, 64), latent_dim=3, with_card=False)
    out = tmp_path / "docs" / "plain.md"
    assert _script_module("model_report").main([str(model.path), "--out", str(out), "--steps", "4", "--examples", "2"]) == 0
    text = out.read_text()
    assert "no factor card" in text and "## Edit success" not in text
    traversal = Image.open(out.parent / "images" / "plain_traversal.png")
    assert 3 * 64 <= traversal.size[1] < 4 * 64  # one row per latent dimension


def test_readback_split_needs_a_calibration_table_for_every_factor(oracle_repo, capsys):
    # the oracle's card carries scale and position only
    assert _script_module("readback_split").main([str(oracle_repo / "oracle" / "1"), "--num", "20"]) == 2
    assert "['shape', 'orientation']" in capsys.readouterr().err


def test_readback_split_of_the_shipped_default_separates_encoder_and_decoder(tmp_path):
    repo = Path(__file__).resolve().parents[2] / "models" / "dsprites"
    model_dir = max(repo.iterdir(), key=lambda p: int(p.name))
    out = tmp_path / "split.json"
    assert _script_module("readback_split").main([str(model_dir), "--num", "200", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert set(r["overall"]) == {"encoder", "drawn", "recon", "snapped", "reader"}
    assert set(r["by_shape"]) == {"square", "ellipse", "heart"} and len(r["by_scale"]) == 6
    assert r["overall"]["reader"]["all"] >= 0.97  # clean renders: the reader's own ceiling
    # the shipped semi-supervised model writes and draws position and scale within a grid step
    for row in ("encoder", "drawn"):
        assert min(r["overall"][row][n] for n in ("scale", "pos_x", "pos_y")) >= 0.95, r["overall"][row]
    assert all(0.0 <= v <= 1.0 for row in r["overall"].values() for v in row.values())


def test_readback_split_of_another_renderers_images_is_judged_by_the_reader_of_both(tmp_path, capsys):
    repo = Path(__file__).resolve().parents[2] / "models" / "dsprites"
    model_dir = max(repo.iterdir(), key=lambda p: int(p.name))
    out = tmp_path / "split.json"
    assert _script_module("readback_split").main([str(model_dir), "--sources", "dsprites_elsewhere", "--num", "200",
                                                  "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["sources"] == "dsprites_elsewhere"
    assert r["overall"]["reader"]["all"] >= 0.97  # the judge reads the other renderer's images too
    assert min(r["overall"]["encoder"][n] for n in ("scale", "pos_x", "pos_y")) >= 0.95, r["overall"]["encoder"]
    # a renderer of another grid is refused, not misread
    assert _script_module("readback_split").main([str(model_dir), "--sources", "color_dsprites_elsewhere",
                                                  "--num", "20"]) == 2
    assert "another grid" in capsys.readouterr().err


def test_readback_split_of_a_folder_model_reads_with_its_renderer_and_the_generic_reader(tmp_path):
    """A folder model knows no renderer of its own: --dataset names one of its grid, and the generic
    reader's comparison by kind applies to the encoder's readings too."""
    pytest.importorskip("idsprites")
    repo = Path(__file__).resolve().parents[2] / "models" / "idsprites"
    model_dir = max(repo.iterdir(), key=lambda p: int(p.name))
    out = tmp_path / "split.json"
    assert _script_module("readback_split").main([str(model_dir), "--dataset", "idsprites", "--num", "200",
                                                  "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert set(r["overall"]["encoder"]) == {"shape", "color", "scale", "orientation", "pos_x", "pos_y", "all"}
    assert set(r["by_shape"]) == {"shape_0", "shape_1", "shape_2"} and len(r["by_scale"]) == 6
    assert r["overall"]["reader"]["all"] >= 0.97
    # the shipped walkthrough model reads every factor of new renders, orientation as a grid index
    assert r["overall"]["encoder"]["all"] >= 0.9, r["overall"]["encoder"]


def test_model_report_names_the_training_schedule_from_the_manifest():
    line = _script_module("model_report")._training_line
    shipped = Manifest.load(Path(__file__).resolve().parents[2] / "models" / "dsprites" / "5")
    assert line(shipped)[0] == ("Trained 95,300 steps at batch 64, Adam lr 0.0005, decaying linearly to 0 "
                                "over the last 36,000 steps.")
    shipped.provenance = {**shipped.provenance, "config": {**shipped.provenance["config"],
                                                           "optimizer": {"lr": 1e-4}}}
    assert line(shipped)[0].endswith("Adam lr 0.0001.")  # no cooldown, no decay named
    shipped.provenance = {}
    assert line(shipped) == []
