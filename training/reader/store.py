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

A reader trained on a union of renderers of one factor grid (``also``: e.g. the dSprites
reader also trained on ``dsprites_elsewhere``) lives beside the others as
``<name>+<also>.safetensors`` (shipped or cached, same search) and records the datasets in
its metadata (``also``); ``load_reader(name)`` never picks it up in place of the plain one.

**Generic readers.** A registered dataset without a dSprites reader (``READABLE``) that renders
images from its factors and builds without options gets the generic reader (:mod:`.generic`),
stored the same way under its name (``idsprites.safetensors``). Its file also records the
factor layout it reads (``layout``, so it loads without building the dataset) and its crop
side (``crop``, measured on the dataset's renders), the dataset's
options it was trained on (``options``: the registered defaults), and how long the training
took and the load average at its end (``train_seconds``, ``load_average``); its recipe is
``GENERIC_RECIPE``. A generic reader takes minutes to train on one thread (``idsprites``: 302 s on
the busy 2-core machine) plus the renders of its held-out accuracy, and a caller that only wants to
judge should not pay that unawares, so ``load_reader`` trains one only when asked (``train=True``);
a dSprites reader, by default, as before.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .generic import GENERIC_RECIPE, GENERIC_STEPS, GenericReader
from .reading import READABLE, AttributeReader, FactorLayout

#: Version of the network and training recipe; files written by another recipe are not loaded.
RECIPE = "1"
SHIPPED = Path(__file__).resolve().parent / "weights"
#: Training steps (batch 128) per dataset: colour has two more factors and seven hues to see.
STEPS = {"dsprites": 1500, "color_dsprites": 5000}
#: A reader of a union of renderers trains twice STEPS per renderer: with 3,000 steps the dSprites
#: + elsewhere reader read blurred training renders' scale exactly in 0.944 of cases, with 6,000
#: in 0.986 (the plain reader: 1.000); within the edit tolerance both read every factor.
UNION_STEPS_PER_RENDERER = 2


def generic_refusal(name: str) -> str | None:
    """Why dataset ``name`` cannot have a generic reader, or None if it can (see the module docstring)."""
    from latentdial.training.data import DATASETS

    factory = DATASETS.get(name)
    if factory is None:
        return "it is not a registered dataset"
    if not getattr(factory, "renders_from_factors", True):
        return "it holds images but cannot draw one for chosen factors, so no reader can be trained on it"
    if getattr(factory, "factor_names", None) == ():
        return "it has no factors to read"
    try:
        inspect.signature(factory).bind()
    except TypeError:
        return "it needs options to build (a reader is trained on a dataset as registered)"
    return None


def readable_datasets() -> list[str]:
    """Every dataset a reader exists for or can be trained for: the dSprites readers', then the generic ones."""
    from latentdial.training.data import DATASETS

    return list(READABLE) + [n for n in DATASETS if n not in READABLE and generic_refusal(n) is None]


def check_readable(name: str) -> None:
    """Raise ``ValueError`` naming what can be read unless dataset ``name`` has or can have a reader."""
    if name in READABLE:
        return
    why = generic_refusal(name)
    if why is not None:
        generic = [n for n in readable_datasets() if n not in READABLE]
        raise ValueError(f"no attribute reader for dataset {name!r} ({why}); readable: {', '.join(READABLE)} "
                         f"(dSprites readers) and, by the generic reader, {', '.join(generic)}")


def dataset_options(name: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The options dataset ``name`` is built with: ``options`` completed by the registered defaults."""
    from latentdial.training.data import DATASETS

    bound = inspect.signature(DATASETS[name]).bind(**dict(options or {}))
    bound.apply_defaults()
    return json.loads(json.dumps(dict(bound.arguments), default=str))


def recipe_of(name: str) -> str:
    """The training recipe of dataset ``name``'s reader: ``RECIPE``, or ``GENERIC_RECIPE``."""
    return RECIPE if name in READABLE else GENERIC_RECIPE


def cache_dir() -> Path:
    """``$LATENTDIAL_CACHE``, else ``$XDG_CACHE_HOME/latentdial``, else ``~/.cache/latentdial``."""
    if os.environ.get("LATENTDIAL_CACHE"):
        return Path(os.environ["LATENTDIAL_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "latentdial"


def reader_key(name: str, also: Sequence[str] = ()) -> str:
    """File stem of the reader of ``name`` trained also on ``also``: ``dsprites+dsprites_elsewhere``."""
    return "+".join((name, *also))


def cached_path(name: str, also: Sequence[str] = ()) -> Path:
    return cache_dir() / "reader" / f"{reader_key(name, also)}.safetensors"


def shipped_path(name: str, also: Sequence[str] = ()) -> Path:
    return SHIPPED / f"{reader_key(name, also)}.safetensors"


def save_reader(reader: AttributeReader, path: Path, accuracy: dict | None = None,
                also: Sequence[str] = ()) -> Path:
    """Write the reader as float16 safetensors with its dataset, recipe, held-out accuracy and
    the other renderers it was trained on (``also``, a JSON list; absent when none)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in reader.net.state_dict().items()}
    metadata = {"dataset": reader.dataset, "recipe": RECIPE, "accuracy": json.dumps(accuracy or {})}
    if also:
        metadata["also"] = json.dumps(list(also))
    if reader.layout is not None:  # a generic reader: what it reads, and how it was trained
        metadata |= {"recipe": GENERIC_RECIPE, "layout": reader.layout.to_json(), "crop": str(reader.net.crop)}
        metadata |= {k: reader.metadata[k] for k in ("options", "train_seconds", "load_average", "steps")
                     if k in reader.metadata}
    save_file(tensors, str(path), metadata=metadata)
    return path


def read_metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_file_reader(path: Path) -> AttributeReader:
    """A reader from one file (any recipe; see :func:`load_reader` for the checked search)."""
    metadata = read_metadata(path)
    reader: AttributeReader
    if "layout" in metadata and metadata.get("dataset"):
        reader = GenericReader.build(metadata["dataset"], FactorLayout.from_json(metadata["layout"]),
                                     int(metadata["crop"]))
    elif metadata.get("dataset") in READABLE:
        reader = AttributeReader.build(metadata["dataset"])
    else:
        raise ValueError(f"{path} is not an attribute reader (its metadata names no readable dataset)")
    state = {k: v.to(torch.float32) for k, v in load_file(str(path)).items()}
    reader.net.load_state_dict(state)
    reader.metadata = metadata
    return reader


def trained_also(metadata: dict[str, str]) -> list[str]:
    """The other renderers a reader file was trained on ([] for a plain reader)."""
    return list(json.loads(metadata.get("also") or "[]"))


def _current(path: Path, name: str, also: Sequence[str] = ()) -> bool:
    if not path.is_file():
        return False
    meta = read_metadata(path)
    return (meta.get("recipe") == recipe_of(name) and meta.get("dataset") == name
            and trained_also(meta) == list(also))


def load_reader(name: str, *, also: Sequence[str] = (), train: bool | None = None,
                progress: bool = True) -> AttributeReader:
    """The reader for dataset ``name`` (trained also on the renderers ``also``): shipped, else
    cached, else trained and cached.

    ``train``: whether to train one when none is shipped or cached; by default (None) a dSprites
    reader is trained and a generic one is not (ask for it, or run ``latentdial train-reader``).

    Raises:
        ValueError: no reader exists for ``name``, or an ``also`` dataset does not draw its grid.
        FileNotFoundError: none is shipped or cached and it is not to be trained.
    """
    check_readable(name)
    also = tuple(also)
    for path in (shipped_path(name, also), cached_path(name, also)):
        if _current(path, name, also):
            return load_file_reader(path)
    if not (name in READABLE if train is None else train):
        flags = "".join(f" --also {a}" for a in also)
        raise FileNotFoundError(f"no attribute reader for {reader_key(name, also)} in {SHIPPED} or "
                                f"{cached_path(name, also).parent}; run `latentdial train-reader --dataset {name}{flags}`")
    reader, accuracy = train_reader(name, also=also, progress=progress)
    save_reader(reader, cached_path(name, also), accuracy, also=also)
    return load_file_reader(cached_path(name, also))


def train_reader(name: str, *, also: Sequence[str] = (), steps: int | None = None, seed: int = 0,
                 progress: bool = True, options: Mapping[str, Any] | None = None) -> tuple[AttributeReader, dict]:
    """Train a reader for dataset ``name`` and measure it on held-out renders (clean and soft).

    With ``also`` (registered datasets drawing the same factor grid by other conventions), it is
    trained on the union of ``name``'s renders and theirs (each image from one renderer, chosen
    uniformly; ``UNION_STEPS_PER_RENDERER * STEPS[name]`` per renderer by default) and measured on each renderer apart:
    ``{"clean", "soft"}`` for ``name``, ``{"<other> clean", "<other> soft"}`` for each other.

    A dataset without a dSprites reader gets the generic reader (``GENERIC_STEPS`` by default),
    which records the dataset's options (``options``, completed by the registered defaults), its
    training time and the load average at its end. A dSprites reader takes no options.
    """
    from latentdial.training.data import get_dataset

    from .fit import RenderUnion, fit_reader, heldout_accuracy

    check_readable(name)
    if options and name in READABLE:
        raise ValueError(f"the {name} reader takes no dataset options; got {dict(options)}")
    dataset = get_dataset(name, **dict(options or {}))
    others = {a: get_dataset(a) for a in also}
    data = RenderUnion([dataset, *others.values()]) if others else dataset
    default = STEPS.get(name, GENERIC_STEPS) * (UNION_STEPS_PER_RENDERER * (1 + len(others)) if others else 1)
    reader = fit_reader(data, name, steps=steps or default, seed=seed, progress=progress)
    if reader.layout is not None:
        reader.metadata |= {"options": json.dumps(dataset_options(name, options)), "steps": str(steps or default),
                            "load_average": " ".join(f"{v:.2f}" for v in os.getloadavg())}
    # Score the float16 weights that will be stored, not the float32 ones in memory.
    reader.net.load_state_dict({k: v.half().float() for k, v in reader.net.state_dict().items()})
    accuracy = {"clean": heldout_accuracy(reader, dataset), "soft": heldout_accuracy(reader, dataset, soft=True)}
    for a, other in others.items():
        accuracy[f"{a} clean"] = heldout_accuracy(reader, other)
        accuracy[f"{a} soft"] = heldout_accuracy(reader, other, soft=True)
    return reader, accuracy
