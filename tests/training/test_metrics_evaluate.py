"""``latentdial evaluate`` and ``evaluate_run`` on real run and model directories."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fixtures.torch_run import write_run_dir

from latentdial.cli import main
from latentdial.factor_card import FactorCard
from latentdial.training.data import get_dataset
from latentdial.training.evaluate import evaluate_model_dir, evaluate_run

SMALL = ["--num-train", "300", "--num-test", "100", "--points-per-value", "2", "--quiet"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """An untrained 4-latent conv model recorded as trained on procedural dSprites."""
    return write_run_dir(tmp_path_factory.mktemp("run"), latent_dim=4, seed=0,
                         config={"dataset": {"name": "dsprites"}})


def test_evaluate_run_writes_metrics_and_a_consistent_factor_card(run_dir):
    scores, card = evaluate_run(run_dir, metrics="mig,unsupervised", num_train=300, num_test=100,
                                card_points_per_value=2, progress=False)
    on_disk = json.loads((run_dir / "metrics.json").read_text())
    assert on_disk == pytest.approx(scores)
    assert {"mig", "unsupervised.num_active_dims", "unsupervised.gaussian_total_correlation"} <= set(on_disk)
    assert card is not None and card.latent_dim == 4
    assert FactorCard.load(run_dir / "factor_card.json") == card
    dsprites = get_dataset("dsprites")
    for f in card.factors:
        k = list(dsprites.factor_names).index(f.name)
        assert np.shape(f.latent_table) == (dsprites.factors_num_values[k], len(f.dims))


def test_cli_on_a_run_directory_matches_evaluate_run_for_the_same_seed(run_dir, tmp_path, capsys):
    expected, _ = evaluate_run(run_dir, metrics="mig,unsupervised", num_train=300, num_test=100, seed=3,
                               card=False, write=False, progress=False)
    out = tmp_path / "m.json"
    rc = main(["evaluate", str(run_dir), "--metrics", "mig,unsupervised", "--seed", "3", "--out", str(out),
               "--no-card", *SMALL])
    assert rc == 0
    assert json.loads(out.read_text()) == pytest.approx(expected)
    assert "mig" in capsys.readouterr().out


def test_cli_on_a_model_directory_runs_the_onnx_encoder_like_torch(run_dir, tmp_path):
    from latentdial.export.bundle import export_run

    model_dir = tmp_path / "models" / "tiny" / "1"
    export_run(run_dir, model_dir, exporter="torchscript", torch_program=False, batches=(1, 3),
               choice_rounds=0, report=lambda _msg: None)
    by_torch, _ = evaluate_run(run_dir, metrics="mig,unsupervised", num_train=300, seed=1,
                               card=False, write=False, progress=False)
    rc = main(["evaluate", str(model_dir), "--metrics", "mig,unsupervised", "--seed", "1", *SMALL])
    assert rc == 0
    by_onnx = json.loads((model_dir / "metrics.json").read_text())
    assert by_onnx == pytest.approx(by_torch, rel=1e-3, abs=1e-3)
    again = evaluate_model_dir(model_dir, metrics="mig", num_train=300, seed=1, write=False, progress=False)
    assert again["mig"] == by_onnx["mig"]


def test_cli_explains_a_path_that_is_no_run_or_model_directory(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path), "--quiet"]) == 2
    assert "neither a run directory" in capsys.readouterr().err


def test_cli_rejects_an_unknown_metric_with_the_valid_names(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--metrics", "mig,bogus", *SMALL]) == 2
    assert "valid:" in capsys.readouterr().err


def test_unlabelled_data_gets_only_the_unsupervised_metrics(run_dir, tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray((rng.random((64, 64)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    spec = {"name": "folder", "path": str(folder)}
    try:
        get_dataset(**spec)
    except (TypeError, ValueError) as e:
        pytest.fail(f"folder dataset options changed: {e}")
    scores, card = evaluate_run(run_dir, dataset=spec, num_train=64, write=False, progress=False)
    assert card is None
    assert set(scores) == {k for k in scores if k.startswith("unsupervised.")} and scores
    with pytest.raises(ValueError, match="need ground-truth factors"):
        evaluate_run(run_dir, dataset=spec, metrics="mig", num_train=64, write=False, progress=False)
