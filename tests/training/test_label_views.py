"""Label-aware views (training/objectives/label_views.py): a view of a labelled image keeps the
labels of the factors its moves keep and forgets the others; a shift keeps the whole object in the
frame; the encoder learns from the views under the supervised loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentdial.training.data import get_dataset
from latentdial.training.model import ModelConfig, build_model
from latentdial.training.objectives import SemiSupervisedConfig, SemiSupervisedVAE
from latentdial.training.objectives.base import Inputs
from latentdial.training.objectives.label_views import LabelViews, check_views, shift_within_frame

DSPRITES = get_dataset("dsprites")
NAMES = list(DSPRITES.factor_names)  # shape, scale, orientation, pos_x, pos_y
SPRITES = {"shift": ["shape", "scale", "orientation"], "rot90": ["shape", "scale"], "flip": ["shape", "scale"]}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _sprites(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    factors = DSPRITES.sample_factors(n, np.random.default_rng(seed))
    images = DSPRITES.sample_observations_from_factors(factors, np.random.default_rng(seed))
    return torch.from_numpy(images).float(), torch.from_numpy(factors)


def test_a_shift_moves_the_whole_sprite_within_the_frame_by_whole_pixels():
    images, _ = _sprites(64)
    shifted, moved = shift_within_frame(images)
    assert torch.equal(shifted.sum(dim=(1, 2, 3)), images.sum(dim=(1, 2, 3)))  # nothing cut off at the border
    assert set(shifted.unique().tolist()) <= {0.0, 1.0}  # whole pixels: binary stays binary
    assert moved.float().mean() > 0.8
    for i in range(64):  # each is the same sprite somewhere else
        dy, dx = (torch.nonzero(shifted[i, 0]).min(dim=0).values - torch.nonzero(images[i, 0]).min(dim=0).values).tolist()
        assert torch.equal(torch.roll(images[i], (dy, dx), dims=(1, 2)), shifted[i])
        assert bool(moved[i]) == ((dy, dx) != (0, 0))


def test_an_empty_image_stays_where_it_is():
    blank = torch.zeros(2, 1, 64, 64)
    shifted, moved = shift_within_frame(blank)
    assert torch.equal(shifted, blank) and not moved.any()


def test_a_view_keeps_the_labels_its_moves_keep_and_forgets_the_others():
    images, labels = _sprites(256)
    views = LabelViews(SPRITES, NAMES)
    seen, kept = views(images, labels)
    assert seen.shape == images.shape and kept.shape == labels.shape
    shape, scale, orientation, pos_x, pos_y = range(5)
    assert torch.equal(kept[:, [shape, scale]], labels[:, [shape, scale]])  # every move keeps them
    unmoved = (seen == images).flatten(1).all(dim=1)
    assert torch.equal(kept[unmoved], labels[unmoved])  # a view that moved nothing forgets nothing
    moved = ~unmoved
    assert moved.float().mean() > 0.9 and (kept[moved][:, [pos_x, pos_y]] == -1).all()  # every move loses position
    turned = kept[:, orientation] == -1
    assert 0.5 < float(turned.float().mean()) < 1.0  # lost where turned or mirrored, kept where only shifted
    assert torch.equal(kept[~turned, orientation], labels[~turned, orientation])


def test_a_labelled_unknown_stays_unknown():
    images, labels = _sprites(16)
    labels[:, 0] = -1
    _, kept = LabelViews({"flip": ["shape", "scale"]}, NAMES)(images, labels)
    assert (kept[:, 0] == -1).all()


@pytest.mark.parametrize(("views", "match"), [
    ({"zoom": ["shape"]}, "unknown move"),
    ({"flip": "shape"}, "must be a list of factor names"),
    ({"flip": ["colour"]}, "not factors of the dataset"),
    (["flip"], "must be a table"),
])
def test_a_wrong_views_table_is_refused_by_name(views, match):
    with pytest.raises(ValueError, match=match):
        check_views(views, NAMES)


def test_a_wrong_view_move_is_refused_when_the_config_is_read():
    with pytest.raises(ValueError, match="unknown move"):
        SemiSupervisedConfig(views={"zoom": ["shape"]})


def test_the_encoder_learns_from_views_of_the_labelled_half_and_the_decoder_never_sees_them():
    objective = SemiSupervisedVAE(build_model(ModelConfig(latent_dim=6)), SemiSupervisedConfig(views=SPRITES))
    objective.attach_dataset(DSPRITES)
    images, labels = _sprites(8)
    labels[:4] = -1  # the stream's layout: unlabelled half, then the labelled half
    mean = torch.zeros(8, 6)
    loss, logs = objective.supervised(mean, Inputs(images=images, labels=labels))
    assert float(logs["views"].detach()) > 0
    objective.model.zero_grad()
    logs["views"].backward()
    assert sum(float(p.grad.abs().sum()) for p in objective.model.encoder.parameters() if p.grad is not None) > 0
    assert all(p.grad is None for p in objective.model.decoder.parameters())
    none = SemiSupervisedVAE(objective.model, SemiSupervisedConfig())
    none.attach_dataset(DSPRITES)
    assert "views" not in none.supervised(mean, Inputs(images=images, labels=labels))[1]


def test_an_empty_views_table_is_not_written_so_older_runs_read_as_the_same_recipe():
    assert "views" not in SemiSupervisedConfig().to_dict()
    assert SemiSupervisedConfig(views=SPRITES).to_dict()["views"] == SPRITES
