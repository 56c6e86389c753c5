"""dSprites drawn again from their factors by randomised renderers (``[augment] families``).

With nothing randomised the renderer draws the training images; randomised, it draws the same
factors with other outlines, sizes, placements and grey levels, and never a factor's other value:
the sprite stays where its position says, as big as its scale says, turned as its orientation says,
and inside the canvas. A run's encoder sees these drawings of its labelled images only.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from latentdial.training.augment import AugmentConfig, EncoderView, build_encoder_view
from latentdial.training.config import ConfigError, load_config
from latentdial.training.data import get_dataset
from latentdial.training.data.dsprites import ORIENTATIONS
from latentdial.training.outline_families import (
    OFFSET_PX,
    SIZE_RANGE,
    VARIANTS,
    OutlineFamilies,
    build_bank,
)
from latentdial.training.trainer import Trainer, TrainingError, train

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke.toml"
FAMILIES = REPO / "configs" / "experiments" / "dsprites_families.toml"


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def renderer() -> OutlineFamilies:
    return OutlineFamilies()


def _training(n: int, seed: int = 0, shapes: tuple[int, ...] = (0, 1, 2)) -> tuple[torch.Tensor, torch.Tensor]:
    """(factors (n, 5) int64, the training renderer's images (n, 1, 64, 64)) of the given shapes."""
    data = get_dataset("dsprites")
    factors = data.sample_factors(n, np.random.default_rng(seed))
    factors[:, 0] = np.asarray(shapes)[np.arange(n) % len(shapes)]
    images = np.asarray(data.sample_observations_from_factors(factors), np.float32)
    return torch.from_numpy(factors), torch.from_numpy(images)


def _plain(renderer: OutlineFamilies, factors: torch.Tensor) -> torch.Tensor:
    """``factors`` drawn with nothing randomised: the training outlines, size, placement, binary pixels."""
    n = factors.shape[0]
    return renderer.draw(factors, torch.zeros(n, dtype=torch.long), torch.ones(n), torch.zeros(n, 2),
                         torch.zeros(n), torch.ones(n, dtype=torch.bool))


def _moments(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """images (N, 1, H, W) -> (centres (N, 2) px (x, y), areas (N,) px, long-axis angles (N,) in
    radians counter-clockwise on screen, modulo pi)."""
    h, w = images.shape[-2:]
    mass = images[:, 0]
    area = mass.sum(dim=(1, 2))
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    ys = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    cx = (mass * xs).sum(dim=(1, 2)) / area
    cy = (mass * ys).sum(dim=(1, 2)) / area
    dx, dy = xs - cx.view(-1, 1, 1), -(ys - cy.view(-1, 1, 1))  # y up
    sxx, syy, sxy = ((mass * dx * dx).sum(dim=(1, 2)), (mass * dy * dy).sum(dim=(1, 2)),
                     (mass * dx * dy).sum(dim=(1, 2)))
    angle = 0.5 * torch.atan2(2 * sxy, sxx - syy)
    return torch.stack([cx, cy], dim=1), area, torch.remainder(angle, math.pi)


def test_with_nothing_randomised_it_draws_the_training_images(renderer):
    factors, truth = _training(600)
    drawn = _plain(renderer, factors)
    both, either = (drawn * truth).sum(dim=(1, 2, 3)), ((drawn + truth) > 0).sum(dim=(1, 2, 3))
    iou = both / either
    for shape in range(3):
        mine = iou[factors[:, 0] == shape]
        assert float(mine.mean()) > 0.95 and float(mine.min()) > 0.8, shape
    (c0, a0, _), (c1, a1, _) = _moments(truth), _moments(drawn)
    assert float((c1 - c0).abs().max()) < 0.35
    # outlines on a pixel centre count as inside for the training renderer (its 22 px square covers
    # 23 x 23 pixels): a row of pixels more or less, a fifth of the smallest sprites' area
    ratio = a1 / a0
    assert 0.97 < float(ratio.mean()) < 1.05
    assert 0.75 < float(ratio.min()) and float(ratio.max()) < 1.25


def test_the_first_outline_of_each_shape_is_the_training_one_and_the_family_is_fixed():
    bank = build_bank(4)
    assert bank.shape[:2] == (3, 4)
    assert np.array_equal(bank, build_bank(4)), "the family is drawn from a fixed seed"
    assert not np.array_equal(bank[:, 1:], build_bank(4, seed=1)[:, 1:])
    _, truth = _training(1, shapes=(2,))
    assert bank[2, 0].sum() > bank[2, 0].size * 0.05  # a real heart, not an empty mask


def test_every_outline_is_one_piece_without_holes():
    bank = build_bank(VARIANTS)
    for shape in range(3):
        for k in range(VARIANTS):
            mask = bank[shape, k] > 0.5
            _, pieces = ndimage.label(mask)
            assert pieces == 1, (shape, k)
            assert np.array_equal(ndimage.binary_fill_holes(mask), mask), (shape, k)


def test_randomised_drawings_keep_position_size_and_orientation(renderer):
    factors, truth = _training(900, seed=1, shapes=(0, 1))  # symmetric outlines: centroid = centre
    drawn = renderer(factors)
    assert drawn.shape == truth.shape and float(drawn.min()) >= 0 and float(drawn.max()) <= 1
    (c0, _, _), (c1, _, angle) = _moments(truth), _moments(drawn)
    # a position step is one pixel: the centre moves by at most OFFSET_PX (and a pixel's rounding)
    assert float((c1 - c0).abs().max()) < OFFSET_PX + 0.3
    # size, from the coverage (exact areas, no pixel rounding) against the plain drawing's: at most
    # SIZE_RANGE smaller, outlines of other corners, exponents and axis ratios within 10 %
    n = factors.shape[0]
    variant, size = torch.randint(VARIANTS, (n,)), SIZE_RANGE[0] + (1 - SIZE_RANGE[0]) * torch.rand(n)
    coverage = torch.zeros(n, dtype=torch.bool)
    plain = renderer.draw(factors, torch.zeros(n, dtype=torch.long), torch.ones(n), torch.zeros(n, 2),
                          torch.zeros(n), coverage)
    other = renderer.draw(factors, variant, size, torch.zeros(n, 2), torch.zeros(n), coverage)
    linear = (other.sum(dim=(1, 2, 3)) / plain.sum(dim=(1, 2, 3))).sqrt()  # a length ratio
    assert float(linear.min()) > SIZE_RANGE[0] * 0.9 and float(linear.max()) < 1.1
    assert abs(float((linear / size).mean()) - 1) < 0.03
    # an ellipse's long axis turns with orientation; a step is 9 degrees, the jitter at most 2
    ellipses = (factors[:, 0] == 1) & (factors[:, 1] >= 2)
    want = torch.remainder(torch.as_tensor(ORIENTATIONS, dtype=torch.float32)[factors[ellipses, 2]], math.pi)
    off = torch.remainder(angle[ellipses] - want + math.pi / 2, math.pi) - math.pi / 2
    assert float(off.abs().max()) < math.radians(4.5)


def test_randomised_drawings_differ_from_the_training_images(renderer):
    factors, truth = _training(300, seed=2)
    drawn = renderer(factors)
    changed = (drawn - truth).abs().flatten(1).sum(dim=1) > 1.0
    assert float(changed.float().mean()) > 0.95
    grey = ((drawn > 0) & (drawn < 1)).flatten(1).any(dim=1).float().mean()
    assert 0.3 < float(grey) < 0.7, "about half drawn in grey coverage, half binary"


def test_sprites_stay_inside_the_canvas_at_every_position(renderer):
    factors, _ = _training(400, seed=3)
    factors[:, 1] = 5  # the largest
    centre = factors.clone()
    centre[:, 3:] = 16
    corner = factors.clone()
    corner[:, 3] = torch.where(torch.arange(400) % 2 == 0, 0, 31)
    corner[:, 4] = torch.where(torch.arange(400) % 4 < 2, 0, 31)
    torch.manual_seed(7)
    at_centre = renderer(centre)
    torch.manual_seed(7)  # the same conventions at the corners
    at_corner = renderer(corner)
    ratio = at_corner.sum(dim=(1, 2, 3)) / at_centre.sum(dim=(1, 2, 3))
    assert float((ratio - 1).abs().max()) < 0.02


# -- in the encoder's view and the trainer -------------------------------------------------
def test_families_redraws_a_share_of_the_fully_labelled_images_only():
    factors, images = _training(400, seed=4)
    labels = factors.clone()
    labels[:100, 2] = -1  # orientation not labelled: these stay as they are
    out = EncoderView(AugmentConfig(families=0.5), 64)(images, labels)
    changed = (out != images).flatten(1).any(dim=1)
    assert not bool(changed[:100].any())
    assert 0.4 < float(changed[100:].float().mean()) < 0.6
    with pytest.raises(ValueError, match="no labels"):
        EncoderView(AugmentConfig(families=0.5), 64)(images)


def test_families_is_written_only_when_set_so_older_runs_still_resume():
    assert "families" not in AugmentConfig(p=0.5).to_dict()
    assert AugmentConfig(families=0.25).to_dict()["families"] == 0.25
    with pytest.raises(ConfigError, match="augment.families"):
        load_config(SMOKE, ["augment.families=1.5"])


def test_families_needs_labels_and_the_dsprites_grid(tmp_path):
    with pytest.raises(TrainingError, match="families.*without labels"):
        Trainer(load_config(SMOKE, ["augment.families=0.5"]), tmp_path / "a")
    with pytest.raises(TrainingError, match="dSprites' factor grid.*color_dsprites"):
        Trainer(load_config(FAMILIES, ['dataset.name="color_dsprites"', "model.channels=3", 'init_from=""']),
                tmp_path / "b")
    assert build_encoder_view(AugmentConfig(families=0.5), 64, get_dataset("dsprites")) is not None


def test_a_run_with_families_trains_records_them_and_resumes_only_with_them(tmp_path):
    out = tmp_path / "run"
    cfg = load_config(FAMILIES, ["steps=2", "checkpoint_every=1", "init_from=\"\"", "num_threads=1"])
    train(cfg, out, progress=False)
    assert json.loads((out / "config.json").read_text())["augment"]["families"] == 0.75
    with pytest.raises(ConfigError, match="augment"):
        train(load_config(FAMILIES, ["steps=3", "checkpoint_every=1", "init_from=\"\"", "num_threads=1",
                                     "augment.families=0.5"]), out, resume=True, progress=False)


def _train_out(path: Path) -> str:
    """The run directory a stage's own command (in its header) trains into."""
    return next(line.split("--out ")[1].strip() for line in path.read_text().splitlines()
                if "latentdial train" in line)


def test_each_stage_continues_the_last_stages_run_with_fewer_images_drawn_again():
    paths = [FAMILIES.with_name(f"dsprites_families{tail}.toml") for tail in ("", "_continued", "_third", "_fourth")]
    stages = [load_config(p) for p in paths]
    assert stages[0].init_from == "models/dsprites/5"
    for before, path, stage in zip(paths[:-1], paths[1:], stages[1:], strict=True):
        assert stage.init_from == _train_out(before), path.name
    assert [s.augment.families for s in stages] == [0.75, 0.5, 0.25, 0.125]
    for cfg in stages:  # each stage ends its own cooldown, on the same model and objective
        assert 0 < cfg.optimizer.cooldown_steps <= cfg.steps
        assert (cfg.model, cfg.objective, cfg.dataset) == (stages[0].model, stages[0].objective, stages[0].dataset)


def test_the_plain_cooldown_continues_the_third_stage_with_the_defaults_recipe_and_no_image_drawn_again():
    third = FAMILIES.with_name("dsprites_families_third.toml")
    path = FAMILIES.with_name("dsprites_families_plain_cooldown.toml")
    plain, shipped = load_config(path), load_config(REPO / "configs" / "shipped" / "dsprites.toml")
    assert plain.init_from == _train_out(third)
    assert plain.augment.families == 0.0  # the training renderer's images only
    assert plain.optimizer.cooldown_steps == plain.steps  # the lr cools down over every step
    assert (plain.model, plain.objective, plain.dataset) == (shipped.model, shipped.objective, shipped.dataset)
