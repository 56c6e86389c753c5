"""The sample sheet of a StarGAN run: source images, then each factor edited.

Rows: the sources; "own codes" (G with the codes the classifier reads from each source, which
should redraw it); then one row per factor in which that factor's code is set along its grid
from left to right while the others keep the codes read from the source. This is the path a
server takes for an edit by name: codes = classifier(image), change one factor's code,
image' = editor(image, codes).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from latentdial.factor_card import FactorCard
from latentdial.training.figures import image_grid
from latentdial.training.stargan.codes import CodeLayout
from latentdial.training.stargan.networks import Discriminator, Generator


@torch.no_grad()
def sample_sheet(generator: Generator, discriminator: Discriminator, layout: CodeLayout, card: FactorCard,
                 images: np.ndarray) -> Image.Image:
    """The sheet (module docstring) for sources ``images`` (N, C, H, W) in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    n = len(x)
    codes = layout.codes_from_head(discriminator(x)[1])  # (N, D)
    rows, labels = [images, generator(x, codes).numpy()], ["source", "own codes"]
    for factor in card.factors:
        table = np.asarray(factor.latent_table, dtype=np.float32)  # (K, len(dims))
        picks = np.round(np.linspace(0, len(table) - 1, n)).astype(int)
        edited = codes.clone()
        edited[:, factor.dims] = torch.from_numpy(table[picks])
        rows.append(generator(x, edited).numpy())
        labels.append(factor.name)
    return image_grid(np.stack(rows), labels)
