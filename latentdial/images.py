"""Image conversions shared by every role (serving, the client, training figures, tools). Pure numpy."""

from __future__ import annotations

import numpy as np


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] (any shape) -> uint8 of the same shape: round(255 x), half to even.

    Values outside [0, 1] are clipped first, so a decoder's output or a blended grid
    never wraps around.
    """
    return np.rint(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)
