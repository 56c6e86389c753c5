"""Ground-truth datasets: procedural dSprites variants, official-file loaders, image folders.

``get_dataset(name, **kwargs)`` builds one by name; ``DATASETS`` maps each name to
its class. All follow ``base.GroundTruthData`` (factor indices in, (N, C, H, W)
float32 in [0, 1] out, randomness only from an explicit ``np.random.Generator``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from .base import GroundTruthData
from .color_dsprites import ColorDSprites
from .dsprites import ProceduralDSprites
from .dsprites_elsewhere import ElsewhereColorDSprites, ElsewhereDSprites
from .folder import ImageFolder
from .idsprites import InfiniteDSpritesData
from .labelled_folder import LabelledImageFolder
from .noisy_dsprites import NoisyDSprites
from .official import DSpritesNPZ, Shapes3D
from .pairs import sample_weak_pairs
from .stream import BatchStream

#: name -> dataset class (the constructor's keyword arguments are the dataset's options).
DATASETS: dict[str, Callable[..., GroundTruthData]] = {
    "dsprites": ProceduralDSprites,
    "color_dsprites": ColorDSprites,
    "noisy_dsprites": NoisyDSprites,
    "dsprites_npz": DSpritesNPZ,
    "shapes3d": Shapes3D,
    "folder": ImageFolder,
    "dsprites_elsewhere": ElsewhereDSprites,  # held-out renderer of the dSprites grid, not for training
    "color_dsprites_elsewhere": ElsewhereColorDSprites,
    "idsprites": InfiniteDSpritesData,  # numpy-only module; the idsprites package is imported on construction
    "labelled_folder": LabelledImageFolder,
}


def get_dataset(name: str, **kwargs: object) -> GroundTruthData:
    """Build the dataset registered as ``name`` with its options, e.g.
    ``get_dataset("folder", path="images/", channels=3)``.

    Raises:
        ValueError: unknown name (the message lists the valid ones) or options the
            dataset does not take (the message lists the ones it does).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid datasets: {', '.join(sorted(DATASETS))}")
    factory = DATASETS[name]
    signature = inspect.signature(factory)
    try:
        signature.bind(**kwargs)
    except TypeError as e:
        params = [p for p in signature.parameters if p != "self"]
        takes = ", ".join(f"{p}=" for p in params) or "no options"
        raise ValueError(f"dataset {name!r} takes {takes}; got {sorted(kwargs)} ({e})") from e
    return factory(**kwargs)


__all__ = [
    "DATASETS",
    "BatchStream",
    "ColorDSprites",
    "DSpritesNPZ",
    "GroundTruthData",
    "ImageFolder",
    "InfiniteDSpritesData",
    "LabelledImageFolder",
    "NoisyDSprites",
    "ProceduralDSprites",
    "Shapes3D",
    "get_dataset",
    "sample_weak_pairs",
]
