"""Markdown report of a shipped model: metrics, factor card, traversal grid, edit examples, edit success.

    python scripts/model_report.py models/dsprites/1 --out docs/models/dsprites.md [--edits edits.json --sheet edits.png]

Writes ``docs/models/NAME.md`` and two small PNGs under ``docs/models/images/``:

- ``NAME_traversal.png``: one source image of the model's dataset; each row sweeps one
  factor of the factor card over its calibrated range (every latent dimension over
  -2..2 for a model without a card) while the others stay fixed;
- ``NAME_edits.png``: a few source images, their reconstruction and, per factor, the
  image edited to another value of that factor (the value is printed under the tile).

The graphs run locally on ONNX Runtime (CPU) and the latent arithmetic is the
server's own (``latentdial.serving.edits``), so the pictures are what the
Traverse and EditAttributes RPCs return. ``--edits`` adds the table of a
``latentdial evaluate-edits`` report, ``--sheet`` its PNG of edits with the reader's verdicts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from latentdial.factor_card import FactorCard, FactorEntry
from latentdial.images import to_uint8
from latentdial.manifest import Manifest

TILE_PAD = 2
LABEL_WIDTH = 96
HEADER_HEIGHT = 16
CAPTION_HEIGHT = 13


class LocalModel:
    """Encoder and decoder of a model directory on ONNX Runtime (CPU, one thread)."""

    def __init__(self, model_dir: Path, manifest: Manifest) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        self._enc = ort.InferenceSession(str(model_dir / manifest.graph_file("encoder").path), opts, providers=providers)
        self._dec = ort.InferenceSession(str(model_dir / manifest.graph_file("decoder").path), opts, providers=providers)

    def encode(self, images: np.ndarray) -> np.ndarray:
        """(N, C, H, W) float32 in [0, 1] -> posterior mean (N, D)."""
        return self._enc.run(["mean"], {"images": images.astype(np.float32)})[0]

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """(N, D) -> (N, C, H, W) float32 in [0, 1]."""
        return self._dec.run(["images"], {"latents": latents.astype(np.float32)})[0]


# ------------------------------------------------------------------ images --
def _font(size: int = 11) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size bitmap font
        return ImageFont.load_default()


def _tile(image: np.ndarray) -> Image.Image:
    """(C, H, W) float in [0, 1] -> RGB PIL image."""
    a = to_uint8(image).transpose(1, 2, 0)
    return Image.fromarray(a[:, :, 0]).convert("RGB") if a.shape[2] == 1 else Image.fromarray(a[:, :, :3])


def image_grid(tiles: np.ndarray, row_labels: list[str], col_labels: list[str] | None = None,
               captions: list[list[str]] | None = None) -> Image.Image:
    """Labelled grid of tiles (R, K, C, H, W): a label column on the left, optional headers and captions."""
    rows, cols, _, h, w = tiles.shape
    font = _font()
    top = HEADER_HEIGHT if col_labels else 0
    cap = CAPTION_HEIGHT if captions else 0
    cell_w, cell_h = w + TILE_PAD, h + TILE_PAD + cap
    canvas = Image.new("RGB", (LABEL_WIDTH + cols * cell_w, top + rows * cell_h), "white")
    draw = ImageDraw.Draw(canvas)
    for k, text in enumerate(col_labels or []):
        draw.text((LABEL_WIDTH + k * cell_w + 1, 2), _fit(draw, text, w, font), fill="black", font=font)
    for r in range(rows):
        y = top + r * cell_h
        for i, line in enumerate(row_labels[r].split("\n")[:3]):
            draw.text((3, y + 4 + 13 * i), _fit(draw, line, LABEL_WIDTH - 6, font), fill="black", font=font)
        for k in range(cols):
            x = LABEL_WIDTH + k * cell_w
            canvas.paste(_tile(tiles[r, k]), (x, y))
            if captions:
                draw.text((x + 1, y + h), _fit(draw, captions[r][k], w, font), fill="dimgray", font=font)
    return canvas


def _fit(draw: ImageDraw.ImageDraw, text: str, width: int, font: Any) -> str:
    """``text``, shortened with an ellipsis until it fits ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while len(text) > 1 and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def _range_text(entry: FactorEntry) -> str:
    if entry.labels:
        return " / ".join(entry.labels)
    lo, hi = entry.value_range
    return f"{_fmt(lo)} … {_fmt(hi)}" + ("" if entry.calibrated else " (latent units)")


def traversal_figure(model: LocalModel, z: np.ndarray, card: FactorCard | None, steps: int) -> Image.Image:
    """Rows = factors of the card (or every dim), columns = ``steps`` values, from latents z (1, D)."""
    from latentdial.serving.edits import traverse

    if card is not None:
        grid, plan = traverse(z, dims=[], factors=card.names, start=None, stop=None, steps=steps, card=card)
        labels = [f"{n}\n{_range_text(card[n])}" for n in plan.targets]
    else:
        grid, plan = traverse(z, dims=list(range(z.shape[1])), factors=[], start=None, stop=None, steps=steps,
                              card=None)
        labels = [f"{n}\n-2 … 2" for n in plan.targets]
    images = model.decode(grid)  # (T*S, C, H, W)
    return image_grid(images.reshape(len(plan.targets), steps, *images.shape[1:]), labels)


def _edit_target(entry: FactorEntry, current: float) -> tuple[Any, str]:
    """A value visibly different from ``current``: the next label, a quarter turn, or the far end."""
    if not entry.calibrated:
        return -2.0 if current > 0 else 2.0, _fmt(-2.0 if current > 0 else 2.0)
    values = np.asarray(entry.values, np.float64)
    if entry.kind == "categorical":
        k = (int(np.argmin(np.abs(values - current))) + 1) % len(values)
        return (entry.labels[k], entry.labels[k]) if entry.labels else (float(values[k]), _fmt(values[k]))
    lo, hi = entry.value_range
    if entry.kind == "circular":
        v = float(lo + np.mod(current + (entry.period or hi - lo) / 4 - lo, entry.period or hi - lo))
    else:
        v = hi if current < (lo + hi) / 2 else lo
    return v, _fmt(v)


def edits_figure(model: LocalModel, sources: np.ndarray, card: FactorCard | None) -> Image.Image:
    """Rows = source images (N, C, H, W); columns = source, reconstruction, one edit per factor."""
    from latentdial.edit import Edit
    from latentdial.serving.edits import apply_edits
    from latentdial.serving.requests import edit_from

    z = model.encode(sources)  # (N, D)
    factors = card.factors if card is not None else []
    cols = [sources, model.decode(z)]
    captions = [["", ""] for _ in range(len(sources))]
    for entry in factors:
        edited = np.empty_like(z)
        current = entry.value_from_latents(z) if entry.calibrated else z[:, entry.dims[0]]
        for n in range(len(z)):
            value, text = _edit_target(entry, float(current[n]))
            edit = (Edit(factor=entry.name, set_label=value) if isinstance(value, str)
                    else Edit(factor=entry.name, set_value=value))
            edited[n] = apply_edits(z[n:n + 1], [edit_from(edit, "edits[0]")], card)[0]
            captions[n].append(f"= {text}")
        cols.append(model.decode(edited))
    tiles = np.stack(cols, axis=1)  # (N, 2 + F, C, H, W)
    heads = ["source", "recon"] + [f.name for f in factors]
    return image_grid(tiles, [f"example {n + 1}" for n in range(len(sources))], heads, captions)


# ---------------------------------------------------------------- markdown --
def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *["| " + " | ".join(r) + " |" for r in rows]]


def _num(x: Any, spec: str = ".3f") -> str:
    return "—" if x is None else format(x, spec)


def edits_table(report: dict[str, Any]) -> list[str]:
    """Markdown lines of a ``latentdial evaluate-edits`` report (edit success judged by the attribute reader)."""
    rows = []
    for name, r in report["factors"].items():
        readback = _num(report["readback"][name], ".1%")
        if not r["editable"]:
            rows.append([name, "—", "—", "—", r["reason"], readback, "—"])
            continue
        least = min(r["kept_by_factor"], key=r["kept_by_factor"].get)
        rows.append([name, _num(r["success"], ".1%"), _num(r["target_hit"], ".1%"), _num(r["others_kept"], ".1%"),
                     f"{least} {_num(r['kept_by_factor'][least], '.1%')}", readback, _num(r["iou"])])
    lines = _table(["factor", "edit success", "target hit", "others kept", "least kept other factor",
                    "reconstruction read-back", "IoU of the edit"], rows)
    tol = report["tolerance_steps"]
    lines += ["", (f"{report['num']} edits per factor through a real server (seed {report['seed']}), each to a value "
              "the reader tells apart from the source's. The attribute reader, trained only on ground-truth renders, "
              "reads the edited image: **target hit** = it sees the asked value, **others kept** = it sees every "
              "other factor as in the source, **success** = both. Tolerances in grid steps: "
              + ", ".join(f"{k} {v}" for k, v in tol.items())
              + " (orientation modulo the shape's symmetry). Read-back: the reader on plain reconstructions "
              f"(every factor at once: {_num(report['readback']['all'], '.1%')}). IoU: foreground of the edit against "
              f"the ground-truth render, unnormalised (reconstructions: {_num(report['recon_iou'])}).")]
    return lines


def write_report(model_dir: Path, out: Path, *, edits: Path | None = None, steps: int = 10, examples: int = 4,
                 seed: int = 0, dataset: Any = None, reference: Path | None = None,
                 sheet: Path | None = None) -> Path:
    """Write ``out`` (markdown) and its PNGs under ``out.parent / "images"``; returns ``out``.

    ``reference``: a metrics JSON of ``latentdial evaluate MODEL_DIR --preset reference``, tabled
    beside the manifest's (default-preset) metrics. ``sheet``: the PNG sheet of the same
    ``latentdial evaluate-edits`` run, linked under its table.
    """
    manifest = Manifest.load(model_dir)
    manifest.verify_files(model_dir)
    card = FactorCard.from_dict(manifest.factor_card) if manifest.factor_card else None
    model = LocalModel(model_dir, manifest)
    rng = np.random.default_rng(seed)
    spec = dataset if dataset is not None else manifest.provenance.get("dataset")
    sources = _sources(spec, examples, rng, model, manifest)
    images_dir = out.parent / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    stem = out.stem
    traversal_png, edits_png = images_dir / f"{stem}_traversal.png", images_dir / f"{stem}_edits.png"
    traversal_figure(model, model.encode(sources[:1]), card, steps).save(traversal_png, optimize=True)
    edits_figure(model, sources, card).save(edits_png, optimize=True)

    rel = os.path.relpath(images_dir, out.parent)
    prov = manifest.provenance
    objective = prov.get("objective")
    lines = [f"# Model `{manifest.name}` version {manifest.version}", "",
             f"- objective: **{supervision_kind(objective)}**",
             (f"- images: {'x'.join(map(str, manifest.image_shape))} (C x H x W), values in "
             f"{list(manifest.value_range)}; latent size {manifest.latent_dim}"),
             f"- dataset: `{json.dumps(spec)}`; objective: `{json.dumps(objective)}`",
             f"- files: {', '.join(f'{f.path} ({f.precision})' for f in manifest.files)}",
             f"- code version {prov.get('code_version', '?')}, exported {prov.get('created', '?')}", ""]
    lines += ["## Metrics", ""]
    lines += _table(["metric", "value"], [[k, _num(v, ".4f")] for k, v in sorted(manifest.metrics.items())]) \
        if manifest.metrics else ["No metrics recorded."]
    if reference is not None:
        ref = json.loads(Path(reference).read_text())
        names = ",".join(sorted({k.split(".")[0] for k in ref}))
        lines += ["", (f"At disentanglement_lib's reference sizes (`latentdial evaluate {model_dir} --metrics {names} "
                       f"--preset reference`, from {Path(reference).name}):"), ""]
        lines += _table(["metric", "value"], [[k, _num(v, ".4f")] for k, v in sorted(ref.items())])
    lines += ["", "## Factor card", ""]
    if card is None:
        lines += ["This model has no factor card: edit it by latent dimension."]
    else:
        lines += _table(["factor", "kind", "latent dims", "range", "grid values", "calibrated"],
                        [[f.name, f.kind, ", ".join(map(str, f.dims)), _range_text(f), str(len(f.values) or "—"),
                          "yes" if f.calibrated else "no (hand-named)"] for f in card.factors])
        lines += ["", f"Card source: {card.source}."]
    lines += ["", "## Traversals", "",
              "One source image; each row sweeps one factor over its range while every other latent stays fixed.",
              "", f"![traversal grid]({rel}/{traversal_png.name})", "", "## Edits", "",
              ("Each row: a source image, its reconstruction, and one edit per factor (the target value is printed "
              "under the image)."), "", f"![edit examples]({rel}/{edits_png.name})", ""]
    if edits is not None:
        lines += ["## Edit success", "", *edits_table(json.loads(Path(edits).read_text())), ""]
        if sheet is not None:
            lines += ["The reader's verdict on a few of these edits (source left, edit right; green: as asked):", "",
                      f"![edits with the reader's verdicts]({os.path.relpath(sheet, out.parent)})", ""]
    lines += ["## Reproduce", "", *_training_line(manifest), (
              f"`make ship SHIP={manifest.name} SHIP_VERSION={manifest.version} SHIP_STEPS=<steps>` "
              "trains, evaluates, exports and measures a model of this config end to end (docs/models.md gives "
              "the commands that trained this one); for this directory alone:"), "", "```",
              f"latentdial evaluate-edits {model_dir} --num 1000 --out edits.json",
              f"python scripts/model_report.py {model_dir} --out {out} --edits edits.json --sheet edits.png",
              "```", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    return out


def _training_line(manifest: Manifest) -> list[str]:
    """"Trained N steps at batch B, Adam lr X[, decaying ...]." from the run's recorded config, or []."""
    from latentdial.training.config import OptimizerConfig

    config = (manifest.provenance or {}).get("config") or {}
    if "steps" not in config:
        return []
    steps = (manifest.provenance or {}).get("weights_metadata", {}).get("step", config["steps"])
    schedule = OptimizerConfig(**config.get("optimizer", {})).describe()
    return [f"Trained {int(steps):,} steps at batch {config.get('batch_size')}, {schedule}.", ""]


def _sources(spec: Any, n: int, rng: np.random.Generator, model: LocalModel, manifest: Manifest) -> np.ndarray:
    """n images (n, C, H, W) of the model's dataset, or decoded prior samples if it has none we can render."""
    if spec is not None:
        try:
            from latentdial.training.evaluate import resolve_dataset

            data = resolve_dataset(spec)
            if tuple(data.observation_shape) == tuple(manifest.image_shape):
                return data.sample_observations(n, rng).astype(np.float32)
        except (ValueError, ImportError, OSError) as e:
            print(f"model_report: dataset {spec!r} unavailable ({e}); using decoded prior samples", file=sys.stderr)
    return model.decode(rng.standard_normal((n, manifest.latent_dim)).astype(np.float32))


#: How much each objective learns from: what a reader of the report must know first.
SUPERVISION = {
    "semi_supervised": "semi-supervised (labels tie named latent dims to factors; Locatello et al. 2020, few labels)",
    "ada_gvae": "weakly supervised (pairs that share all but some factors; Locatello et al. 2020)",
}


def supervision_kind(objective: Any) -> str:
    """'semi-supervised (...)', 'weakly supervised (...)' or 'unsupervised (<name>)' for a provenance entry."""
    name = objective.get("name") if isinstance(objective, dict) else objective
    return SUPERVISION.get(str(name), f"unsupervised ({name})") if name else "unknown"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_dir", type=Path, help="model directory models/<name>/<version>")
    p.add_argument("--out", type=Path, required=True, help="markdown file, e.g. docs/models/dsprites.md")
    p.add_argument("--edits", type=Path, default=None, help="report JSON of latentdial evaluate-edits")
    p.add_argument("--sheet", type=Path, default=None, help="PNG sheet of the same latentdial evaluate-edits run")
    p.add_argument("--steps", type=int, default=10, help="traversal steps per factor (default 10)")
    p.add_argument("--examples", type=int, default=4, help="source images in the edit examples (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the source images (default 0)")
    p.add_argument("--dataset", default=None, help="dataset name or JSON (default: the manifest's provenance)")
    p.add_argument("--reference", type=Path, default=None,
                   help="metrics JSON of `latentdial evaluate MODEL_DIR --preset reference` to table as well")
    args = p.parse_args(argv)
    out = write_report(args.model_dir, args.out, edits=args.edits, steps=args.steps, examples=args.examples,
                       seed=args.seed, dataset=args.dataset, reference=args.reference, sheet=args.sheet)
    print(f"wrote {out} and {out.parent / 'images'}/{out.stem}_*.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
