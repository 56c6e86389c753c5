"""Edit evaluation on sources drawn elsewhere: stand-in models edit images of another renderer of
the same factor grid (``source_data=``, ``evaluate-edits --sources``) while the reader judges."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures.oracle_model import build_oracle, calibrate_card, dsprites_card
from fixtures.standin import StandIn

from latentdial.cli import main
from latentdial.manifest import Manifest
from latentdial.training.data import get_dataset
from latentdial.training.data.dsprites_elsewhere import ElsewhereDSprites
from latentdial.training.edit_success import check_same_grid, evaluate_edits
from latentdial.training.reader import load_reader
from latentdial.training.reader.store import shipped_path

pytestmark = pytest.mark.usefixtures("one_torch_thread")
NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
ALSO = ("dsprites_elsewhere",)


@pytest.fixture(scope="module")
def reader():
    return load_reader("dsprites", train=False)


@pytest.fixture(scope="module")
def both_reader():
    """The dSprites reader trained also on the elsewhere renderer (shipped beside the plain one)."""
    return load_reader("dsprites", also=ALSO, train=False)


def _run(reader, draw, *, sources, num=200, seed=0):
    model_data = get_dataset("dsprites")
    client = StandIn(sources, draw, num, seed)
    run = evaluate_edits(client, model_data, dsprites_card(), reader, source_data=sources, num=num, seed=seed,
                         batch=64, progress=False)
    return run, client


def test_a_model_that_understands_foreign_images_and_draws_its_own_style_succeeds(reader):
    # it reads every factor of an elsewhere image and draws it as the training renderer does
    elsewhere = get_dataset("dsprites_elsewhere")
    run, client = _run(reader, get_dataset("dsprites").sample_observations_from_factors, sources=elsewhere)
    r = run.report
    assert r["sources"] == "dsprites_elsewhere" and client.seen == 200 * 6  # every source came from elsewhere
    np.testing.assert_array_equal(run.sources, elsewhere.sample_observations_from_factors(run.source_factors))
    assert r["readback"]["all"] >= 0.97
    for name in NAMES:
        f = r["factors"][name]
        assert f["target_hit"] >= 0.97 and f["others_kept"] >= 0.95, (name, f)
        # the IoU's ground truth is the elsewhere render of the edited factors, not the training one
        assert 0.5 < f["iou"] < 0.95, (name, f["iou"])
    assert 0.5 < r["recon_iou"] < 0.95


def test_without_source_data_the_sources_are_the_models_dataset(reader):
    model_data = get_dataset("dsprites")
    client = StandIn(model_data, model_data.sample_observations_from_factors, 50, 0)
    r = evaluate_edits(client, model_data, dsprites_card(), reader, num=50, batch=64, progress=False).report
    assert r["sources"] == "dsprites" and r["recon_iou"] == 1.0


def test_a_model_that_ignores_its_input_reads_back_nothing_of_the_foreign_sources(reader):
    # always the same centred square: read-back measures what the model kept of each source
    def one_square(factors):
        return get_dataset("dsprites").sample_observations_from_factors(np.tile([0, 2, 0, 16, 16], (len(factors), 1)))

    run, _ = _run(reader, one_square, sources=get_dataset("dsprites_elsewhere"), num=150)
    assert run.report["readback"]["pos_x"] < 0.2 and run.report["readback"]["shape"] < 0.5


def test_the_judge_trained_on_both_renderers_reads_a_perfect_foreign_model_as_perfect(both_reader):
    elsewhere = get_dataset("dsprites_elsewhere")
    run, _ = _run(both_reader, elsewhere.sample_observations_from_factors, sources=elsewhere, num=300)
    r = run.report
    assert r["readback"]["all"] >= 0.95 and r["recon_iou"] == 1.0
    for name in NAMES:
        assert r["factors"][name]["success"] >= 0.93, (name, r["factors"][name])
        assert r["factors"][name]["iou"] == 1.0


def test_the_shipped_judge_reads_both_renderers(both_reader):
    from latentdial.training.reader.fit import heldout_accuracy

    meta = both_reader.metadata
    assert json.loads(meta["also"]) == ["dsprites_elsewhere"]
    for name in ("dsprites", "dsprites_elsewhere"):
        accuracy = heldout_accuracy(both_reader, get_dataset(name), num=1000, seed=31)
        for factor in NAMES:
            assert accuracy[factor]["edit_tolerance"] >= 0.98, (name, factor, accuracy[factor])


def test_sources_must_draw_the_same_factor_grid():
    model_data = get_dataset("dsprites")
    check_same_grid(model_data, get_dataset("dsprites_elsewhere"))
    with pytest.raises(ValueError, match="same factors"):
        check_same_grid(model_data, get_dataset("color_dsprites_elsewhere"))

    class Coarse(ElsewhereDSprites):
        name = "coarse"
        factors_num_values = (3, 6, 20, 32, 32)

        def factor_grid(self, factor):
            return np.linspace(0, 2 * np.pi, 20) if factor == 2 else super().factor_grid(factor)

    with pytest.raises(ValueError, match="another grid of orientation"):
        check_same_grid(model_data, Coarse())
    with pytest.raises(ValueError, match="same factors"):
        evaluate_edits(None, model_data, dsprites_card(), load_reader("dsprites", train=False),
                       source_data=get_dataset("color_dsprites"), num=4, progress=False)


# ------------------------------------------------------ through a server --
@pytest.fixture(scope="module")
def oracle_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("oracle_elsewhere")
    model_dir = build_oracle(root)
    m = Manifest.load(model_dir)
    m.factor_card = calibrate_card(model_dir).to_dict()
    m.save(model_dir)
    return model_dir


def test_evaluate_edits_with_sources_drawn_elsewhere(oracle_dir, tmp_path, capsys):
    out = tmp_path / "edits.json"
    assert main(["evaluate-edits", str(oracle_dir), "--num", "40", "--batch", "32", "--out", str(out),
                 "--examples", "2", "--sources", "dsprites_elsewhere", "--quiet"]) == 0
    printed = " ".join(capsys.readouterr().out.split())  # the title may wrap
    assert "sources drawn by dsprites_elsewhere" in printed
    assert "judged by the dsprites+dsprites_elsewhere attribute reader" in printed
    r = json.loads(out.read_text())
    assert r["dataset"] == {"name": "dsprites"} and r["sources"] == "dsprites_elsewhere"
    assert r["reader"]["dataset"] == "dsprites" and r["reader"]["also"] == ["dsprites_elsewhere"]
    # the oracle finds the centroid and area of any image: foreign sprites move as asked too
    for name in ("pos_x", "pos_y"):
        assert r["factors"][name]["target_hit"] >= 0.9, r["factors"][name]
    assert r["readback"]["pos_x"] >= 0.9 and out.with_suffix(".png").is_file()


def test_evaluate_edits_with_sources_and_an_explicit_reader(oracle_dir, tmp_path):
    out = tmp_path / "edits.json"
    assert main(["evaluate-edits", str(oracle_dir), "--num", "8", "--out", str(out), "--examples", "1",
                 "--sources", '{"name": "dsprites_elsewhere", "supersample": 2}',
                 "--reader", str(shipped_path("dsprites")), "--quiet"]) == 0
    r = json.loads(out.read_text())
    assert r["sources"] == "dsprites_elsewhere" and "also" not in r["reader"]


def test_evaluate_edits_refuses_sources_of_another_grid(oracle_dir, tmp_path, capsys):
    out = tmp_path / "edits.json"
    assert main(["evaluate-edits", str(oracle_dir), "--num", "4", "--out", str(out),
                 "--sources", "color_dsprites_elsewhere", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--sources 'color_dsprites_elsewhere'" in err and "same factors" in err
    assert main(["evaluate-edits", str(oracle_dir), "--num", "4", "--out", str(out),
                 "--sources", "no_such_data", "--quiet"]) == 2
    assert "unknown dataset 'no_such_data'" in capsys.readouterr().err
    assert not out.exists()
