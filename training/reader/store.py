"""Where a trained attribute reader lives: shipped weights, then a cache, then a fresh training.

``load_reader(name)`` looks, in order, at

1. the weights shipped with the package, ``training/reader/weights/<name>.safetensors``
   (float16, a few hundred kB), so CI and users never train one;
2. the cache, ``$LATENTDIAL_CACHE/reader/<name>.safetensors`` (default
   ``$XDG_CACHE_HOME/latentdial`` or ``~/.cache/latentdial``);
3. and otherwise trains one (a few minutes on one CPU thread) and writes it to the cache.

A file is used only if it was written by the same training recipe (``RECIPE``): change the
network or the training and bump it, and stale weights are retrained instead of misread.
``latentdial train-reader`` retrains on demand. The metadata of each file records the
reader's held-out accuracy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .reading import READABLE, AttributeReader

#: Version of the network and training recipe; files written by another recipe are not loaded.
RECIPE = "1"
SHIPPED = Path(__file__).resolve().parent / "weights"
#: Training steps (batch 128) per dataset: colour has two more factors and seven hues to see.
STEPS = {"dsprites": 1500, "color_dsprites": 5000}


def cache_dir() -> Path:
    """``$LATENTDIAL_CACHE``, else ``$XDG_CACHE_HOME/latentdial``, else ``~/.cache/latentdial``."""
    if os.environ.get("LATENTDIAL_CACHE"):
        return Path(os.environ["LATENTDIAL_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "latentdial"


def cached_path(name: str) -> Path:
    return cache_dir() / "reader" / f"{name}.safetensors"


def shipped_path(name: str) -> Path:
    return SHIPPED / f"{name}.safetensors"


def save_reader(reader: AttributeReader, path: Path, accuracy: dict | None = None) -> Path:
    """Write the reader as float16 safetensors with its dataset, recipe and held-out accuracy."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in reader.net.state_dict().items()}
    metadata = {"dataset": reader.dataset, "recipe": RECIPE, "accuracy": json.dumps(accuracy or {})}
    save_file(tensors, str(path), metadata=metadata)
    return path


def read_metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_file_reader(path: Path) -> AttributeReader:
    """A reader from one file (any recipe; see :func:`load_reader` for the checked search)."""
    metadata = read_metadata(path)
    if metadata.get("dataset") not in READABLE:
        raise ValueError(f"{path} is not an attribute reader (its metadata names no readable dataset)")
    reader = AttributeReader.build(metadata["dataset"])
    state = {k: v.to(torch.float32) for k, v in load_file(str(path)).items()}
    reader.net.load_state_dict(state)
    reader.metadata = metadata
    return reader


def _current(path: Path, name: str) -> bool:
    if not path.is_file():
        return False
    meta = read_metadata(path)
    return meta.get("recipe") == RECIPE and meta.get("dataset") == name


def load_reader(name: str, *, train: bool = True, progress: bool = True) -> AttributeReader:
    """The reader for dataset ``name``: shipped, else cached, else trained and cached.

    Raises:
        ValueError: no reader exists for ``name``.
        FileNotFoundError: none is shipped or cached and ``train`` is False.
    """
    if name not in READABLE:
        raise ValueError(f"no attribute reader for dataset {name!r}; readable: {', '.join(READABLE)}")
    for path in (shipped_path(name), cached_path(name)):
        if _current(path, name):
            return load_file_reader(path)
    if not train:
        raise FileNotFoundError(f"no reader for {name} in {SHIPPED} or {cached_path(name).parent}; "
                                f"run `latentdial train-reader --dataset {name}`")
    reader, accuracy = train_reader(name, progress=progress)
    save_reader(reader, cached_path(name), accuracy)
    return load_file_reader(cached_path(name))


def train_reader(name: str, *, steps: int | None = None, seed: int = 0,
                 progress: bool = True) -> tuple[AttributeReader, dict]:
    """Train a reader for dataset ``name`` and measure it on held-out renders (clean and soft)."""
    from latentdial.training.data import get_dataset

    from .fit import fit_reader, heldout_accuracy

    if name not in READABLE:
        raise ValueError(f"no attribute reader for dataset {name!r}; readable: {', '.join(READABLE)}")
    dataset = get_dataset(name)
    reader = fit_reader(dataset, name, steps=steps or STEPS[name], seed=seed, progress=progress)
    # Score the float16 weights that will be stored, not the float32 ones in memory.
    reader.net.load_state_dict({k: v.half().float() for k, v in reader.net.state_dict().items()})
    accuracy = {"clean": heldout_accuracy(reader, dataset), "soft": heldout_accuracy(reader, dataset, soft=True)}
    return reader, accuracy
