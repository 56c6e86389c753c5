"""Label-aware views (training/objectives/label_views.py): a view of a labelled image keeps the
labels of the factors its moves keep and forgets the others; a shift keeps the whole object in the
frame; the encoder learns from the views under the supervised loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from latentdial.training.data import get_dataset
from latentdial.training.data.dsprites import ORIENTATIONS, render_sprites
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
    shifted, dy, dx = shift_within_frame(images)
    moved = (dy != 0) | (dx != 0)
    assert torch.equal(shifted.sum(dim=(1, 2, 3)), images.sum(dim=(1, 2, 3)))  # nothing cut off at the border
    assert set(shifted.unique().tolist()) <= {0.0, 1.0}  # whole pixels: binary stays binary
    assert moved.float().mean() > 0.8
    for i in range(64):  # each is the same sprite somewhere else
        dy_i, dx_i = (torch.nonzero(shifted[i, 0]).min(dim=0).values - torch.nonzero(images[i, 0]).min(dim=0).values).tolist()
        assert torch.equal(torch.roll(images[i], (dy_i, dx_i), dims=(1, 2)), shifted[i])
        assert (int(dy[i]), int(dx[i])) == (dy_i, dx_i)


def test_a_shift_keeps_dark_parts_in_the_frame_too():
    """An Infinite dSprites shape is half its colour and half black on a grey ground: the shift must
    keep both halves whole, not only the part lighter than the ground."""
    pytest.importorskip("idsprites")
    data = get_dataset("idsprites")
    factors = data.sample_factors(64, np.random.default_rng(0))
    factors[:, 4:] = 7  # the middle of the frame: every shape whole before it moves
    images = torch.from_numpy(data.sample_observations_from_factors(factors))
    ground = torch.tensor([169 / 255] * 3)[None, :, None, None]
    dark = lambda x: (x < 0.1).all(dim=1).sum(dim=(1, 2))  # noqa: E731  the black half's pixels
    off_ground = lambda x: ((x - ground).abs() > 0.01).any(dim=1).sum(dim=(1, 2))  # noqa: E731
    shifted, dy, dx = shift_within_frame(images)
    assert ((dy != 0) | (dx != 0)).float().mean() > 0.8
    assert (dark(images) > 0).all()
    assert torch.equal(dark(shifted), dark(images))  # the black half is never pushed off the frame
    assert torch.equal(off_ground(shifted), off_ground(images))


def test_an_empty_image_stays_where_it_is():
    blank = torch.zeros(2, 1, 64, 64)
    shifted, dy, dx = shift_within_frame(blank)
    assert torch.equal(shifted, blank) and not dy.any() and not dx.any()


def test_a_view_keeps_the_labels_its_moves_keep_and_forgets_the_others():
    images, labels = _sprites(256)
    views = LabelViews(SPRITES, NAMES)
    seen, kept, angles = views(images, labels)
    assert angles is None
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


def test_the_angle_a_turned_or_mirrored_view_reports_is_the_angle_the_renderer_draws():
    sprites = render_sprites()  # (shape, scale, orientation, 33, 33), each centred on its tile
    rng = np.random.default_rng(0)
    index = np.stack([rng.integers(3, size=200), np.full(200, 5), rng.integers(40, size=200)], axis=1)
    tiles = torch.from_numpy(sprites[index[:, 0], index[:, 1], index[:, 2]][:, None].astype(np.float32))
    labels = torch.from_numpy(np.concatenate([index, np.zeros((200, 2), np.int64)], axis=1))
    views = LabelViews({"rot90": ["shape", "scale"], "flip": ["shape", "scale"]}, NAMES, angle="orientation")
    seen, kept, angles = views(tiles, labels, torch.from_numpy(ORIENTATIONS[index[:, 2]]))
    assert (kept[:, 2] == labels[:, 2]).all()  # the angle's label survives turns and mirrors
    assert not torch.equal(angles, torch.from_numpy(ORIENTATIONS[index[:, 2]]))  # ... as a new angle
    nearest = np.abs(np.angle(np.exp(1j * (angles.numpy()[:, None] - ORIENTATIONS[None, :])))).argmin(axis=1)
    drawn = sprites[index[:, 0], index[:, 1], nearest].astype(bool)
    view = seen[:, 0].numpy().astype(bool)
    overlap = (drawn & view).sum(axis=(1, 2)) / (drawn | view).sum(axis=(1, 2))
    assert overlap.mean() > 0.95  # the 40-step grid has no exact quarter turn: 92.3 degrees is the nearest
    hearts = np.flatnonzero(index[:, 0] == 2)  # no symmetry: one angle fits
    grid = sprites[2, 5].astype(bool)  # (40, 33, 33)
    best = np.array([((grid & view[i]).sum(axis=(1, 2)) / (grid | view[i]).sum(axis=(1, 2))).argmax() for i in hearts])
    steps = np.abs(best - nearest[hearts])
    assert np.minimum(steps, 39 - steps).max() <= 1  # 0 and 2 pi are one angle on the grid
    with pytest.raises(ValueError, match="need each image's angle"):
        views(tiles, labels)


def test_the_place_a_view_reports_is_where_the_renderer_draws_the_sprite():
    # squares at orientation 0 look the same turned and mirrored, so each view must be exactly the
    # render of its own labels wherever they are known
    rng = np.random.default_rng(1)
    factors = np.stack([np.zeros(300, np.int64), rng.integers(6, size=300), np.zeros(300, np.int64),
                        rng.integers(32, size=300), rng.integers(32, size=300)], axis=1)
    images = torch.from_numpy(DSPRITES.sample_observations_from_factors(factors, rng)).float()
    views = LabelViews(SPRITES, NAMES, position=["pos_x", "pos_y"], sizes=DSPRITES.factors_num_values)
    seen, kept, _ = views(images, torch.from_numpy(factors))
    placed = (kept[:, 3] >= 0).numpy()
    assert placed.all()  # a known place stays on its grid
    moved = kept[:, 3:].numpy() != factors[:, 3:]
    assert moved[placed].any(axis=1).mean() > 0.8  # most views put the sprite somewhere else
    drawn = DSPRITES.sample_observations_from_factors(np.where(kept.numpy() >= 0, kept.numpy(), 0)[placed], rng)
    assert np.array_equal(seen.numpy()[placed], drawn)
    unplaced = torch.from_numpy(factors).clone()
    unplaced[:5, 3] = -1  # half a place is no place
    _, kept, _ = views(images[:10], unplaced[:10])
    assert (kept[:5, 3:] == -1).all() and (kept[5:, 3:] >= 0).all()


def test_views_position_must_name_two_factors():
    with pytest.raises(ValueError, match="two factors of the dataset, x then y"):
        LabelViews(SPRITES, NAMES, position=["pos_x"], sizes=DSPRITES.factors_num_values)
    with pytest.raises(ValueError, match="two factors"):
        LabelViews(SPRITES, NAMES, position=["pos_x", "pos_x"], sizes=DSPRITES.factors_num_values)


def test_a_labelled_unknown_stays_unknown():
    images, labels = _sprites(16)
    labels[:, 0] = -1
    _, kept, _ = LabelViews({"flip": ["shape", "scale"]}, NAMES)(images, labels)
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


@pytest.mark.parametrize(("config", "match"), [
    ({"views": SPRITES, "views_angle": "scale"}, "circular factor whose period is a full turn"),
    ({"views": SPRITES, "views_angle": "hue"}, "circular factor"),
    ({"views_angle": "orientation"}, "need objective.views"),
    ({"views_position": ["pos_x", "pos_y"]}, "need objective.views"),
])
def test_a_turning_factor_must_be_a_labelled_full_turn(config, match):
    objective = SemiSupervisedVAE(build_model(ModelConfig(latent_dim=6)), SemiSupervisedConfig(**config))
    with pytest.raises(ValueError, match=match):
        objective.attach_dataset(DSPRITES)


def test_the_views_loss_of_a_turned_sprite_is_least_at_its_turned_angle():
    objective = SemiSupervisedVAE(build_model(ModelConfig(latent_dim=6)),
                                  SemiSupervisedConfig(views={"rot90": ["shape", "scale"]}, views_angle="orientation"))
    objective.attach_dataset(DSPRITES)
    labels = torch.tensor([[2, 5, 0, 10, 10]])  # a heart at 0 degrees
    quarter = torch.tensor([[0.0, 0.0, 0.0, 1.0, 0.0, 0.0]])  # an encoder reading it at 90 degrees
    _, turned = objective._code_loss(quarter, labels, {"orientation": torch.tensor([math.pi / 2])})
    _, unturned = objective._code_loss(quarter, labels)
    assert float(turned["sup_orientation"]) == pytest.approx(0.0, abs=1e-6)
    assert float(unturned["sup_orientation"]) == pytest.approx(1.0, abs=1e-6)  # 1 - cos(90 degrees)


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
