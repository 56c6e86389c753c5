"""Edit success: does an edit through the server show the asked value and keep everything else?

Edits are judged the way image editing is judged (InterFaceGAN, Shen et al. 2020, CVPR;
StyleFlow, Abdal et al. 2021): an independent attribute reader (``training/reader/``, trained
only on ground-truth renders) reads the edited image. Protocol (``evaluate_edits``), for a
model trained on a dataset the reader reads:

1. Draw N source factor vectors and render them.
2. **Read-back**: reconstruct the sources (Reconstruct RPC; for an editor, which has no latent
   space, EditAttributes with no edit: the image redrawn with the codes its classifier read)
   and read them. A factor reads back if the reader sees the source's value in the reconstruction (the tolerances of
   ``EDIT_TOLERANCE``). A model that cannot draw a factor cannot edit it either.
3. For every factor of the dataset that the model's factor card can edit, draw for each source
   a target value the reader would *not* confuse with the source's value (so an edit that
   does nothing never hits), send ``EditAttributes`` (``set_label`` for a labelled
   categorical factor, ``set_value`` otherwise) and read the edited image:

   - **target hit**: the edited factor reads as the target (categorical factors and hues
     exactly, scale and position within one grid step, orientation within two grid steps
     modulo the target shape's symmetry);
   - **others kept**: every other factor reads as in the source (same tolerances; after a
     shape edit, orientation modulo the symmetry of both shapes: a square's orientation is
     only defined modulo 90 degrees, so a heart drawn from it may point any of four ways);
   - **success**: both.
4. Beside it, the absolute IoU of the edited image's foreground with the ground-truth render
   of the edited factors, and of the reconstruction with its source; no normalisation.

**Sources drawn elsewhere** (``source_data=``, ``latentdial evaluate-edits --sources``): the
source images of step 1 and the ground-truth renders of step 4 come from another dataset
that draws the same factor grid by other conventions (e.g. ``dsprites_elsewhere``: grey
levels, other sizes, another heart), while the reader still judges; the read-back of step 2
is then the model's reconstruction of those foreign images, read against their factors. The
reader must read that renderer too (the dSprites reader trained also on it:
``latentdial train-reader --also dsprites_elsewhere``).

A factor the card does not carry (or carries without a calibration table) cannot be
edited by value: it is reported as such, and it still counts in "others kept" of every
other edit. Foreground for IoU: the per-pixel maximum over channels above the midpoint
between the image's median (its background) and 1, i.e. 0.5 for binary dSprites.

**Any rendered dataset.** A dataset without a dSprites reader is judged by its generic
reader (``training/reader/generic.py``; ``load_reader("idsprites")``), with the tolerance of
each factor's kind (``EDIT_TOLERANCE_BY_KIND``: categorical exactly, continuous within one
grid step, circular within two around the circle). Its IoU foreground also counts the pixels
darker than the background (below half its darkest channel: the black orientation marker of
``idsprites`` on its grey canvas); the dSprites family keeps the rule above, the one its
figures were measured with. A model trained on a labelled folder (no renderer) is evaluated
against a dataset that renders the folder's factor grid (``evaluate-edits --dataset
idsprites`` for a folder written by ``make-folder --dataset idsprites``): the card's grid must
be the renderer's (:func:`check_card_grid`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from latentdial.factor_card import FactorCard, FactorEntry
from latentdial.training.reader import (  # noqa: F401  EDIT_TOLERANCE: imported from here by callers
    EDIT_TOLERANCE,
    AttributeReader,
    FactorLayout,
    Reading,
    agreement,
)
from latentdial.training.reader.reading import ORIENTATIONS


def foreground(images: np.ndarray, dark: bool = False) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> (N, H, W) bool: max over channels above (median + 1) / 2.

    ``dark``: also the pixels whose smallest channel lies below half the median of that
    smallest channel (darker than the background; never on a black one).
    """
    x = np.asarray(images, np.float64)
    value = x.max(axis=1)
    level = (np.median(value.reshape(len(value), -1), axis=1) + 1.0) / 2.0
    out = value > level[:, None, None]
    if dark:
        low = x.min(axis=1)
        out |= low < (np.median(low.reshape(len(low), -1), axis=1) / 2.0)[:, None, None]
    return out


def iou(pred: np.ndarray, truth: np.ndarray, dark: bool = False) -> np.ndarray:
    """Intersection over union of the foregrounds of two image batches (N, C, H, W), per image.

    Two empty foregrounds count as identical (1.0). ``dark``: see :func:`foreground`.
    """
    if np.shape(pred) != np.shape(truth):
        raise ValueError(f"images to compare have shapes {np.shape(pred)} and {np.shape(truth)}; they must match")
    p, t = foreground(pred, dark), foreground(truth, dark)
    inter = (p & t).sum(axis=(1, 2))
    union = (p | t).sum(axis=(1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def reading_of(names: tuple[str, ...], factors: np.ndarray, layout: FactorLayout | None = None) -> Reading:
    """The reading a perfect reader would give for ground-truth ``factors`` (N, F): a dSprites
    reader's, or with ``layout`` the generic reader's of those factors."""
    factors = np.asarray(factors, np.int64)
    if layout is not None:
        return Reading(factors, np.zeros(len(factors)), layout)
    angle = ORIENTATIONS[factors[:, names.index("orientation")]] if "orientation" in names else np.zeros(len(factors))
    return Reading(factors, angle)


def draw_targets(names: tuple[str, ...], num_values: int, factor: int, sources: np.ndarray,
                 rng: np.random.Generator, layout: FactorLayout | None = None) -> np.ndarray:
    """Per source, a target grid index of ``factor`` drawn uniformly among the values that do not
    read as the source's value (the reader's edit tolerance: ``EDIT_TOLERANCE``, or by kind with
    the generic reader's ``layout``): an edit that changes nothing never hits.

    Args:
        sources: (N, F) int grid indices. Returns: (N,) int64.
    """
    far = np.zeros((len(sources), num_values), dtype=bool)
    for v in range(num_values):
        candidate = sources.copy()
        candidate[:, factor] = v
        far[:, v] = ~agreement(names, reading_of(names, candidate, layout), sources)[:, factor]
    if not far.any(axis=1).all():
        raise ValueError(f"factor {names[factor]} has no value far enough from some source to edit to")
    return np.argmax(rng.random(far.shape) * far, axis=1).astype(np.int64)


@dataclass
class FactorEdits:
    """The edits of one factor, aligned on the N sources: targets (N,), read (N, F), hits (N, F), iou (N,)."""

    targets: np.ndarray
    expected: np.ndarray
    reading: Reading
    agrees: np.ndarray
    iou: np.ndarray
    images: np.ndarray = field(repr=False)


def summarise(names: tuple[str, ...], factor: int, edits: FactorEdits) -> dict[str, Any]:
    """Target hit, others kept, success, each other factor's kept rate and the mean IoU of one factor's edits."""
    hit = edits.agrees[:, factor]
    others = np.delete(edits.agrees, factor, axis=1)
    kept = others.all(axis=1)
    return {
        "editable": True,
        "num": int(len(hit)),
        "target_hit": float(hit.mean()),
        "others_kept": float(kept.mean()),
        "success": float((hit & kept).mean()),
        "kept_by_factor": {n: float(edits.agrees[:, i].mean()) for i, n in enumerate(names) if i != factor},
        "iou": float(edits.iou.mean()),
    }


def _nhwc(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N, H, W, C) float32, the layout the API takes and returns."""
    return np.ascontiguousarray(np.asarray(x).transpose(0, 2, 3, 1), dtype=np.float32)


def _nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 3, 1, 2))


def _chunks(index: np.ndarray, size: int) -> list[np.ndarray]:
    return [index[i:i + size] for i in range(0, len(index), size)]


def edit_op(entry: FactorEntry, value: float) -> Any:
    """The ``Edit`` that sets ``entry`` to the grid value ``value`` (by label for a labelled categorical)."""
    from latentdial.client import Edit

    if entry.kind == "categorical" and entry.labels:
        nearest = int(np.argmin(np.abs(np.asarray(entry.values, np.float64) - value)))
        return Edit(factor=entry.name, set_label=entry.labels[nearest])
    return Edit(factor=entry.name, set_value=float(value))


def not_editable(entry: FactorEntry | None) -> str | None:
    """Why a card entry cannot be edited by value, or None if it can."""
    if entry is None:
        return "not in the model's factor card"
    if not entry.calibrated:
        return "in the card by name only (no calibration table): no value to edit to"
    return None


@dataclass
class EditRun:
    """Everything ``evaluate_edits`` measured: the JSON report and, per factor, the arrays."""

    report: dict[str, Any]
    sources: np.ndarray  # (N, C, H, W)
    source_factors: np.ndarray  # (N, F)
    edits: dict[str, FactorEdits]


def check_same_grid(dataset: Any, other: Any) -> None:
    """Raise ``ValueError`` unless ``other`` draws ``dataset``'s factors (names, grids) at its image shape."""
    name = getattr(other, "name", type(other).__name__)
    model_name = getattr(dataset, "name", type(dataset).__name__)
    if tuple(other.factor_names) != tuple(dataset.factor_names):
        raise ValueError(f"sources {name!r} have factors {tuple(other.factor_names)}, the model's dataset "
                         f"{model_name!r} has {tuple(dataset.factor_names)}: sources must draw the same factors")
    for f, factor in enumerate(dataset.factor_names):
        mine, theirs = np.asarray(dataset.factor_grid(f)), np.asarray(other.factor_grid(f))
        if mine.shape != theirs.shape or not np.allclose(mine, theirs):
            raise ValueError(f"sources {name!r} have another grid of {factor} than {model_name!r} "
                             f"({len(theirs)} values, {len(mine)} expected): sources must draw the same grid")
    if tuple(other.observation_shape) != tuple(dataset.observation_shape):
        raise ValueError(f"sources {name!r} draw {tuple(other.observation_shape)} images, the model takes "
                         f"{tuple(dataset.observation_shape)}")


def check_card_grid(card: FactorCard, dataset: Any, *, every_name: bool = False) -> None:
    """Raise ``ValueError`` unless ``dataset`` draws the grid of every calibrated factor of ``card``.

    For each such factor that ``dataset`` has: the same kind, the same number of values, the same
    values within 1e-9 index by index (a circular factor's modulo its period, which must agree
    too), and for a labelled categorical factor the same labels in the same order (edits ask for
    a label by the renderer's index). ``every_name``: the card may not name a calibrated factor
    the dataset lacks either (a model trained elsewhere, e.g. on a labelled folder, judged by a
    renderer). Factors of the dataset that the card lacks are allowed: they are not edited, and
    still count in "others kept".
    """
    from latentdial.training.factor_card_fit import circular_period

    name = getattr(dataset, "name", type(dataset).__name__)
    names = tuple(dataset.factor_names)
    kinds = tuple(getattr(dataset, "factor_kinds", ("continuous",) * len(names)))
    problems = []
    for entry in card.factors:
        if not entry.calibrated:
            continue
        if entry.name not in names:
            if every_name:
                problems.append(f"{entry.name}: {name!r} has no such factor (its factors: {', '.join(names)})")
            continue
        f = names.index(entry.name)
        grid = np.asarray(dataset.factor_grid(f), np.float64)
        values = np.asarray(entry.values, np.float64)
        if entry.kind != kinds[f]:
            problems.append(f"{entry.name}: {entry.kind} in the card, {kinds[f]} in {name!r}")
            continue
        if len(values) != len(grid):
            problems.append(f"{entry.name}: {len(values)} values in the card, {len(grid)} in {name!r}")
            continue
        if entry.kind == "circular":
            period = circular_period(grid)
            if entry.period is not None and abs(entry.period - period) > 1e-9:
                problems.append(f"{entry.name}: period {float(entry.period)!r} in the card, {float(period)!r} "
                                f"in {name!r}")
                continue
            gap = np.abs(np.mod(values - grid + period / 2, period) - period / 2)
        else:
            gap = np.abs(values - grid)
        if gap.max() > 1e-9:
            k = int(np.argmax(gap))
            problems.append(f"{entry.name}: value {k} is {float(values[k])!r} in the card, {float(grid[k])!r} "
                            f"in {name!r}")
            continue
        labels = list(dataset.factor_labels(f))
        if entry.kind == "categorical" and entry.labels and labels and list(entry.labels) != labels:
            problems.append(f"{entry.name}: labels {list(entry.labels)} in the card, {labels} in {name!r}")
    if problems:
        raise ValueError(f"the model's factor card does not have the grid of {name!r}: " + "; ".join(problems)
                         + ". Edits can only be judged by a renderer of the grid the model learned")


def evaluate_edits(client: Any, dataset: Any, card: FactorCard, reader: AttributeReader, *,
                   source_data: Any = None, model: str | None = None, version: str | None = None,
                   num: int = 1000, seed: int = 0, batch: int = 128, progress: bool = True) -> EditRun:
    """Run the protocol of the module docstring against a server.

    Args:
        client: a ``latentdial.client.Client`` (anything with ``model_info``, ``reconstruct`` and ``edit``).
        dataset: the model's ``GroundTruthData`` (or, for a model trained on a labelled folder, a
            renderer of the folder's grid), the one ``reader`` was trained on.
        card: the served model's factor card (which factors can be edited by value); its factors
            must have ``dataset``'s grids (:func:`check_card_grid`).
        source_data: a ``GroundTruthData`` drawing ``dataset``'s factor grid by other conventions;
            it draws the sources and the ground truth of the IoU instead of ``dataset``
            (default: ``dataset`` itself).
        num: N sources; every editable factor is edited once per source.
        batch: images per RPC (edits are grouped by target value, one EditAttributes each).
    """
    from tqdm import tqdm

    names = tuple(dataset.factor_names)
    if names != reader.factor_names:
        raise ValueError(f"the reader reads {reader.factor_names}, the dataset has {names}: "
                         f"use the reader of the model's dataset")
    layout = reader.layout
    if layout is not None and (why := layout.mismatch(dataset)) is not None:
        raise ValueError(f"the {reader.dataset} reader does not read this dataset: it has {why}")
    if num < 1 or batch < 1:
        raise ValueError(f"num={num} and batch={batch} must be >= 1")
    check_card_grid(card, dataset)
    tolerance = reader.tolerance
    dark = layout is not None  # the generic reader's IoU counts dark foreground too (module docstring)
    drawn_by = dataset if source_data is None else source_data
    if source_data is not None:
        check_same_grid(dataset, source_data)
    rng = np.random.default_rng(seed)
    factors = drawn_by.sample_factors(num, rng)  # (N, F)
    sources = drawn_by.sample_observations_from_factors(factors, rng)  # (N, C, H, W)
    ref = {"model": model, "version": version}
    everything = np.arange(num)
    entries = {e.name: e for e in card.factors}
    todo = [(f, n) for f, n in enumerate(names) if not_editable(entries.get(n)) is None]
    bar = tqdm(total=num * (1 + len(todo)), desc="edits", unit="img", disable=not progress)

    # a VAE reconstructs through its latents; an editor (no latent space) redraws the image with
    # the codes its classifier read, unedited: EditAttributes with no edit
    editor = getattr(client.model_info(model, version=version), "kind", "vae") == "editor"
    recon = np.zeros_like(sources)
    for c in _chunks(everything, batch):
        x = _nhwc(sources[c])
        recon[c] = _nchw((client.edit(x, [], **ref) if editor else client.reconstruct(x, **ref)).images)
        bar.update(len(c))
    readback = agreement(names, reader.read(recon), factors, tolerance)

    results: dict[str, Any] = {}
    edits: dict[str, FactorEdits] = {}
    for f, name in enumerate(names):
        reason = not_editable(entries.get(name))
        if reason is not None:
            results[name] = {"editable": False, "reason": reason}
            continue
        grid = np.asarray(dataset.factor_grid(f), np.float64)
        targets = draw_targets(names, len(grid), f, factors, rng, layout)
        expected = factors.copy()
        expected[:, f] = targets
        edited = np.zeros_like(sources)
        for k in np.unique(targets):
            op = edit_op(entries[name], grid[k])
            for c in _chunks(np.flatnonzero(targets == k), batch):
                edited[c] = _nchw(client.edit(_nhwc(sources[c]), [op], **ref).images)
                bar.update(len(c))
        reading = reader.read(edited)
        truth = drawn_by.sample_observations_from_factors(expected, rng)
        agrees = agreement(names, reading, expected, tolerance, sources=factors)
        edits[name] = FactorEdits(targets, expected, reading, agrees, iou(edited, truth, dark), edited)
        results[name] = summarise(names, f, edits[name])
    bar.close()
    report = {
        "num": num, "seed": seed,
        "sources": str(getattr(drawn_by, "name", type(drawn_by).__name__)),
        "tolerance_steps": {n: tolerance[n] for n in names},
        "reader": {"dataset": reader.dataset, **{k: _maybe_json(v) for k, v in reader.metadata.items()
                                                 if k != "dataset"}},
        "readback": {**{n: float(readback[:, i].mean()) for i, n in enumerate(names)},
                     "all": float(readback.all(axis=1).mean())},
        "recon_iou": float(iou(recon, sources, dark).mean()),
        "factors": results,
    }
    return EditRun(report, sources, factors, edits)


def _maybe_json(value: str) -> Any:
    """A metadata string as the JSON it holds (the reader's accuracy), else as it is."""
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value
