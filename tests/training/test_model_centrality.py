"""ModelCentrality (Lin et al. 2020, section 5): models that agree are central, noise never is.

Synthetic models: 5 latent factors ~ U[-1, 1]; an "image" is a 5-vector of world coordinates.
An agreeing model writes its factors to the world in its own order and scale, and reads them
back; a noise model draws images and representations at random; a rotated model mixes two
factors in what it reads.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from latentdial.training.config import load_config
from latentdial.training.model_centrality import (
    CentralityModel,
    centrality,
    finished_runs,
    rank,
    similarity_matrix,
)
from latentdial.training.trainer import train

REPO = Path(__file__).resolve().parents[2]
K = 5
SIZES = {"num_groups": 100, "group_size": 50, "num_std": 2000}


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def uniform(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(-1.0, 1.0, size=(n, K))


def agreeing(name: str, order: list[int], scale: float = 1.0) -> CentralityModel:
    """Factor f is world coordinate order[f] (times scale); it reads them back the same way."""
    order_ = np.asarray(order)

    def generate(z: np.ndarray) -> np.ndarray:
        x = np.empty_like(z)
        x[:, order_] = z * scale
        return x

    return CentralityModel(name, uniform, list(range(K)), generate, lambda x: x[:, order_] / scale)


def noise(name: str, seed: int) -> CentralityModel:
    rng = np.random.default_rng(seed)
    return CentralityModel(name, uniform, list(range(K)), lambda z: rng.uniform(-1, 1, z.shape),
                           lambda x: rng.standard_normal((len(x), K)))


def rotated(name: str) -> CentralityModel:
    """Reads world coordinates 0 and 1 through a 45 degree rotation (two factors entangled)."""
    c = math.sqrt(0.5)
    mix = np.eye(K)
    mix[:2, :2] = [[c, c], [-c, c]]
    return CentralityModel(name, uniform, list(range(K)), lambda z: z.copy(), lambda x: x @ mix.T)


def test_models_that_agree_score_one_on_each_others_data_whatever_their_order_and_scale():
    models = [agreeing("a", [0, 1, 2, 3, 4]), agreeing("b", [3, 1, 4, 0, 2], 2.0), agreeing("c", [4, 3, 2, 1, 0], 0.5)]
    s = similarity_matrix(models, **SIZES)
    np.testing.assert_array_equal(s, np.ones((3, 3)))
    np.testing.assert_array_equal(centrality(s), np.ones(3))


@pytest.mark.parametrize("seed", range(4))
def test_a_noise_model_among_three_that_agree_is_never_central(seed):
    models = [agreeing("a", [0, 1, 2, 3, 4]), noise("noise", seed), agreeing("b", [2, 0, 1, 4, 3]),
              agreeing("c", [1, 2, 3, 4, 0], 3.0)]
    s = similarity_matrix(models, seed=seed, **SIZES)
    ranking = rank([m.name for m in models], s)
    assert ranking[-1][0] == "noise"
    assert ranking[0][0] in {"a", "b", "c"}
    scores = dict(ranking)
    assert scores["noise"] < 0.5 < min(scores["a"], scores["b"], scores["c"])
    assert s[1, 1] < 0.6, "noise does not even agree with itself"


def test_an_entangled_model_ranks_between_the_agreeing_ones_and_noise():
    models = [agreeing("a", [0, 1, 2, 3, 4]), agreeing("b", [4, 3, 2, 1, 0]), rotated("rotated"), noise("noise", 7)]
    ranking = [name for name, _ in rank([m.name for m in models], similarity_matrix(models, **SIZES))]
    assert ranking[2:] == ["rotated", "noise"]


def test_centrality_is_the_mean_off_diagonal_of_the_symmetrised_similarity():
    s = np.array([[1.0, 0.8, 0.2],
                  [0.6, 1.0, 0.4],
                  [0.2, 0.4, 1.0]])
    # symmetrised: s01 = 0.7, s02 = 0.2, s12 = 0.4
    np.testing.assert_allclose(centrality(s), [(0.7 + 0.2) / 2, (0.7 + 0.4) / 2, (0.2 + 0.4) / 2])
    assert [name for name, _ in rank(["x", "y", "z"], s)] == ["y", "x", "z"]
    with pytest.raises(ValueError, match="at least two"):
        centrality(np.ones((1, 1)))


def test_a_dim_that_never_moves_never_votes_and_gives_no_nan():
    base = agreeing("a", [0, 1, 2, 3, 4])
    padded = CentralityModel("padded", uniform, list(range(K)), base.generate,
                             lambda x: np.concatenate([x, np.zeros((len(x), 1))], axis=1))
    s = similarity_matrix([base, padded], **SIZES)
    np.testing.assert_array_equal(s, np.ones((2, 2)))


def test_the_command_ranks_the_finished_runs_of_a_directory(tmp_path, capsys):
    from latentdial.training.cli_centrality import main

    tiny = ["steps=2", "batch_size=8", "log_every=1", "checkpoint_every=2"]
    train(load_config(REPO / "configs" / "infogan_cr.toml", tiny), tmp_path / "sweep" / "gan", progress=False)
    train(load_config(REPO / "configs" / "smoke.toml", [*tiny, "model.latent_dim=10"]), tmp_path / "sweep" / "vae",
          progress=False)
    (tmp_path / "sweep" / "unfinished").mkdir()
    runs = finished_runs([tmp_path / "sweep"])
    assert [p.name for p in runs] == ["gan", "vae"]
    out = tmp_path / "centrality.json"
    rc = main([str(tmp_path / "sweep"), "--groups", "20", "--group-size", "20", "--std-images", "200",
               "--out", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert np.shape(result["similarity"]) == (2, 2)
    assert all(0.0 <= v <= 1.0 for row in result["similarity"] for v in row)
    assert {name for name, _ in result["ranking"]} == {str(p) for p in runs}
    assert "selected:" in capsys.readouterr().out
    assert main([str(tmp_path / "sweep" / "gan")]) == 2
