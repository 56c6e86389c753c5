"""A PNG sheet of edits with the attribute reader's verdict under each edited image.

One row per edited factor; each example is the source beside its edit, and under the edit
three lines: the asked value, what the reader sees (green if it hit), and whether the other
factors were kept (else the ones that moved).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from latentdial.images import to_uint8
from latentdial.training.edit_success import EditRun

TILE = 96  # 64 px images drawn at 1.5x
GAP = 6
CAPTION = 46
GREEN, RED, GREY = (40, 160, 60), (200, 40, 40), (90, 90, 90)


def value_text(dataset: Any, factor: int, index: int, angle: float | None = None) -> str:
    """A grid value as a person reads it: a label, degrees for orientation, else the value."""
    name = dataset.factor_names[factor]
    labels = dataset.factor_labels(factor)
    if labels:
        return labels[int(index)]
    if name == "orientation":
        degrees = np.degrees(angle if angle is not None else dataset.factor_grid(factor)[index])
        return f"{degrees:.0f} deg"
    return f"{dataset.factor_grid(factor)[index]:.2f}"


def _image(x: np.ndarray) -> Image.Image:
    """(C, H, W) float in [0, 1] -> a TILE x TILE RGB image."""
    arr = to_uint8(np.asarray(x).transpose(1, 2, 0))
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return Image.fromarray(arr).resize((TILE, TILE), Image.NEAREST)


def edit_sheet(run: EditRun, dataset: Any, path: Path, *, examples: int = 5, seed: int = 0) -> Path:
    """Draw ``examples`` edits of every edited factor of ``run`` into ``path`` (PNG)."""
    names = tuple(dataset.factor_names)
    rows = list(run.edits)
    if not rows:
        raise ValueError("no factor was edited: nothing to draw")
    font = ImageFont.load_default(size=11)
    label_w = 112
    cell_w = 2 * TILE + GAP
    width = label_w + examples * (cell_w + 2 * GAP)
    height = len(rows) * (TILE + CAPTION + 2 * GAP) + GAP
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    rng = np.random.default_rng(seed)
    for r, name in enumerate(rows):
        f = names.index(name)
        e = run.edits[name]
        y = GAP + r * (TILE + CAPTION + 2 * GAP)
        draw.text((6, y + TILE // 2 - 6), name, fill="black", font=font)
        picks = rng.choice(len(e.targets), size=min(examples, len(e.targets)), replace=False)
        for j, i in enumerate(picks):
            x = label_w + j * (cell_w + 2 * GAP)
            sheet.paste(_image(run.sources[i]), (x, y))
            sheet.paste(_image(e.images[i]), (x + TILE + GAP, y))
            hit = bool(e.agrees[i, f])
            moved = [n for k, n in enumerate(names) if k != f and not e.agrees[i, k]]
            moved_text = ", ".join(moved[:2]) + (f" +{len(moved) - 2}" if len(moved) > 2 else "")
            # a dSprites reader reads orientation as an angle (modulo symmetry); the generic one, a grid index
            read_angle = e.reading.angle[i] if name == "orientation" and e.reading.layout is None else None
            lines = [
                (f"asked {value_text(dataset, f, e.targets[i])}", GREY),
                (f"reads {value_text(dataset, f, e.reading.factors[i, f], read_angle)}", GREEN if hit else RED),
                ("others kept" if not moved else f"moved: {moved_text}", GREEN if not moved else RED),
            ]
            for k, (text, colour) in enumerate(lines):
                draw.text((x, y + TILE + 3 + 14 * k), text, fill=colour, font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path

