"""Write a labelled image folder from any ground-truth dataset.

The folder follows the Hugging Face ``imagefolder`` convention that
``get_dataset("labelled_folder", path=...)`` reads (docs/datasets.md)::

    out_dir/
      metadata.csv        file_name,<factor>,<factor>,...   one row per image
      factors.toml        the factor schema: one [factors.<name>] table per factor
      images/000000.png   file_name is relative to out_dir

Cells hold physical values, not grid indices: a categorical factor's label (its index
when the dataset has no labels), a continuous or circular factor's grid value written
with ``repr`` (so it reads back as the same float). A row whose cells are all empty is
an unlabelled image. The schema describes the dataset's grids:

- categorical: ``labels``, in index order;
- continuous: ``range = [min, max]`` of the grid and ``levels``, its size (every dataset
  of this project has evenly spaced grids, which is what a reader assumes);
- circular: ``period`` (``factor_card_fit.circular_period``: 2 pi for an orientation) and
  ``levels``, the number of *distinct* grid values in [0, period): 40 for a grid of 40
  steps short of a full turn, 39 for dSprites' ``linspace(0, 2 pi, 40)``, whose last
  value 2 pi is its first again.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from latentdial.images import to_uint8
from latentdial.training.factor_card_fit import circular_period

from .base import GroundTruthData
from .checks import check_num

#: image_format -> file suffix.
FORMATS = {"png": ".png", "jpeg": ".jpg"}
#: Images rendered per call of ``sample_observations_from_factors``.
BATCH = 256
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def circular_levels(grid: np.ndarray, period: float) -> int:
    """Number of distinct values of a circular grid (K,) modulo ``period``."""
    wrapped = np.sort(np.mod(np.asarray(grid, dtype=np.float64), period))
    tol = 1e-9 * period
    distinct = 1 + int(np.sum(np.diff(wrapped) > tol))
    if distinct > 1 and wrapped[-1] - wrapped[0] > period - tol:  # the last value wraps onto the first
        distinct -= 1
    return distinct


def factor_schema(dataset: GroundTruthData) -> dict[str, dict[str, object]]:
    """The dataset's factors as schema tables: name -> {kind, labels | range, levels | period, levels}."""
    schema: dict[str, dict[str, object]] = {}
    for f, (name, kind) in enumerate(zip(dataset.factor_names, dataset.factor_kinds, strict=True)):
        grid = np.asarray(dataset.factor_grid(f), dtype=np.float64)
        if kind == "categorical":
            schema[name] = {"kind": kind, "labels": _labels(dataset, f)}
        elif kind == "circular":
            period = circular_period(grid)
            schema[name] = {"kind": kind, "period": period, "levels": circular_levels(grid, period)}
        elif kind == "continuous":
            schema[name] = {"kind": kind, "range": [float(grid.min()), float(grid.max())], "levels": len(grid)}
        else:
            raise ValueError(f"factor {name!r} has kind {kind!r}; a folder schema knows categorical, "
                             "continuous and circular")
    return schema


def schema_toml(schema: dict[str, dict[str, object]]) -> str:
    """``factor_schema`` output as the text of ``factors.toml``."""
    blocks = []
    for name, table in schema.items():
        lines = [f"[factors.{_key(name)}]"] + [f"{k} = {_value(v)}" for k, v in table.items()]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def write_labelled_folder(
    dataset: GroundTruthData,
    out_dir: Path | str,
    num_images: int,
    num_labelled: int,
    rng: np.random.Generator,
    *,
    image_format: str = "png",
    progress: Callable[[int], object] | None = None,
) -> Path:
    """Render ``num_images`` i.i.d. images of ``dataset`` into a labelled folder (module docstring).

    ``rng`` draws, in this order: the factors (``dataset.sample_factors``), the
    ``num_labelled`` rows that keep their labels (a subset without replacement), then
    whatever the rendering consumes. The images are written first and ``metadata.csv``
    last, so an interrupted run leaves no metadata behind.

    Args:
        dataset: any dataset that renders from factors; 1-channel datasets give 8-bit grey
            images (mode L), 3-channel ones RGB.
        out_dir: created if missing; an existing non-empty directory is refused.
        num_images: images to write, at least 1.
        num_labelled: rows with every cell filled, 0 .. num_images; the others are all empty.
        rng: the only source of randomness.
        image_format: "png" (lossless, default) or "jpeg".
        progress: called with the number of images just written, after each batch.
    Returns:
        ``out_dir`` as a Path.
    """
    num_images, num_labelled = check_num(num_images), check_num(num_labelled)
    if num_images < 1:
        raise ValueError("num_images must be at least 1")
    if num_labelled > num_images:
        raise ValueError(f"num_labelled ({num_labelled}) cannot exceed num_images ({num_images})")
    if image_format not in FORMATS:
        raise ValueError(f"image_format must be one of {sorted(FORMATS)}, got {image_format!r}")
    channels = dataset.observation_shape[0]
    if channels not in (1, 3):
        raise ValueError(f"images need 1 or 3 channels; {type(dataset).__name__} has {channels}")
    if not dataset.factor_names:
        raise ValueError(f"{type(dataset).__name__} has no factors to label")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty directory; choose a new --out "
                              "(a labelled folder is never written over another one)")
    schema = factor_schema(dataset)

    factors = dataset.sample_factors(num_images, rng)
    labelled = np.zeros(num_images, dtype=bool)
    labelled[rng.choice(num_images, size=num_labelled, replace=False)] = True
    cells = _cells(dataset, factors)

    (out / "images").mkdir(parents=True, exist_ok=True)
    width = max(6, len(str(num_images - 1)))
    names = [f"images/{i:0{width}d}{FORMATS[image_format]}" for i in range(num_images)]
    mode = "L" if channels == 1 else "RGB"
    for start in range(0, num_images, BATCH):
        batch = to_uint8(dataset.sample_observations_from_factors(factors[start : start + BATCH], rng))
        for i, image in enumerate(batch, start=start):
            pixels = image[0] if channels == 1 else image.transpose(1, 2, 0)
            Image.fromarray(np.ascontiguousarray(pixels), mode=mode).save(out / names[i])
        if progress is not None:
            progress(len(batch))

    (out / "factors.toml").write_text(schema_toml(schema), encoding="utf-8")
    with (out / "metadata.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["file_name", *dataset.factor_names])
        empty = [""] * dataset.num_factors
        for i, name in enumerate(names):
            writer.writerow([name, *(cells[i] if labelled[i] else empty)])
    return out


def _labels(dataset: GroundTruthData, factor: int) -> list[str]:
    """A categorical factor's labels in index order; its indices as text when it has none."""
    labels = [str(v) for v in dataset.factor_labels(factor)]
    n = int(dataset.factors_num_values[factor])
    return labels if len(labels) == n else [str(i) for i in range(n)]


def _cells(dataset: GroundTruthData, factors: np.ndarray) -> list[list[str]]:
    """(N, F) factor indices -> N rows of cell text: labels and repr'd grid values."""
    columns = []
    for f, kind in enumerate(dataset.factor_kinds):
        if kind == "categorical":
            text = _labels(dataset, f)
        else:
            text = [repr(float(v)) for v in dataset.factor_grid(f)]
        columns.append([text[i] for i in factors[:, f]])
    return [list(row) for row in zip(*columns, strict=True)]


def _key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else _string(name)


def _string(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's; DEL must be escaped too)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: object) -> str:
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # inf and nan are spelled the same in TOML
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")
