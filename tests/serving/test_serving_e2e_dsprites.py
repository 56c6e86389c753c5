"""End to end against the shipped repository: procedural dSprites -> Encode -> Decode reconstructs the shapes.

Needs the trained model in ``models/dsprites/<version>/``; without it the test fails and says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixtures.server import ServerThread, make_config

from latentdial.client import Client

pytestmark = pytest.mark.integration

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.mark.slow
def test_shipped_dsprites_model_reconstructs_procedural_dsprites():
    versions = sorted((MODELS / "dsprites").glob("*/manifest.json"))
    assert versions, f"no trained model in {MODELS / 'dsprites'}; export one there (latentdial export)"
    from latentdial.training.data import get_dataset

    data = get_dataset("dsprites")
    x = data.sample_observations(32, np.random.default_rng(0))  # (N, 1, 64, 64) in {0, 1}
    nhwc = (x.transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)
    with ServerThread(make_config(MODELS)) as server, Client(server.address) as c:
        info = c.model_info("dsprites")
        assert (info.channels, info.height, info.width) == (1, 64, 64)
        z = c.encode(nhwc, model="dsprites").mean
        assert z.shape == (32, info.latent_dim) and np.isfinite(z).all()
        recon = c.decode(z, model="dsprites")[..., 0]  # (N, 64, 64) float in [0, 1]
        both = c.reconstruct(nhwc, model="dsprites").images[..., 0]
    truth = x[:, 0] > 0.5
    pred = recon > 0.5
    iou = (truth & pred).sum((1, 2)) / np.maximum((truth | pred).sum((1, 2)), 1)
    mae = np.abs(recon - x[:, 0]).mean()
    assert iou.mean() > 0.5, f"mean IoU {iou.mean():.3f}"
    assert mae < 0.06, f"mean abs error {mae:.4f}"
    np.testing.assert_allclose(both, recon, atol=1e-4)  # Reconstruct == Decode(Encode)
