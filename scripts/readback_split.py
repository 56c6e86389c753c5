"""Where a model's read-back errors come from: its encoder, its decoder, or both in turn.

    python scripts/readback_split.py models/dsprites/5 [--num 3000] [--out split.json]
    python scripts/readback_split.py models/idsprites/3 --dataset idsprites   # a folder model: its renderer
    python scripts/readback_split.py models/dsprites/5 --sources dsprites_elsewhere   # another renderer's images

Read-back (``latentdial evaluate-edits``) reconstructs rendered sources and asks the
attribute reader whether each factor survived. A miss can be the encoder's (it wrote the
wrong code) or the decoder's (it drew the right code wrongly). For a model whose factor
card has a calibration table for every factor (a semi-supervised model), this splits the
two through the exported ONNX networks:

- **encoder**: the encoder's mean, read per factor as the nearest row of the card's table;
- **drawn**: the decoder fed the card's code of the true factors (what an edit writes), read
  by the reader;
- **recon**: the decoder fed the encoder's mean, read by the reader (read-back itself);
- **snapped**: the decoder fed the encoder's mean snapped to the card's table per factor (what
  recon would be if the decoder drew codes off the table as surely as the table's own);
- **reader**: the reader on the sources (its own ceiling).

With ``--sources`` the images come from another renderer of the same factor grid (as
``latentdial evaluate-edits --sources``) and the judge is the reader trained on both renderers;
"drawn" is then against the model's own training renderer's factors, as before.

Each is the fraction of images on which a factor reads as the source's within
``EDIT_TOLERANCE``, overall and per shape and per scale. A diagnostic, not a protocol: the
reported figures are always ``latentdial evaluate-edits``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_dir", type=Path, help="model directory models/<name>/<version>")
    p.add_argument("--num", type=int, default=3000, help="rendered sources (default 3000)")
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--dataset", default=None,
                   help="the renderer of the sources and its reader (default: the model's training data; "
                        "a folder model needs one, e.g. idsprites)")
    p.add_argument("--sources", default=None, metavar="DATASET",
                   help="draw the images by another renderer of the same grid, e.g. dsprites_elsewhere; the "
                        "judge is then the reader trained on both renderers")
    p.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = p.parse_args(argv)

    from latentdial.factor_card import FactorCard
    from latentdial.manifest import Manifest
    from latentdial.training.data.dsprites import ORIENTATIONS
    from latentdial.training.evaluate import onnx_graph_fn, resolve_dataset
    from latentdial.training.reader import agreement
    from latentdial.training.reader.reading import Reading
    from latentdial.training.reader.store import load_reader

    manifest = Manifest.load(args.model_dir)
    card = FactorCard.from_dict(manifest.factor_card) if manifest.factor_card else None
    data = resolve_dataset(args.dataset or manifest.provenance["dataset"])
    names = tuple(data.factor_names)
    entries = {e.name: e for e in card.factors} if card else {}
    missing = [n for n in names if not entries.get(n) or not entries[n].latent_table]
    if missing:
        print(f"{args.model_dir}: the factor card has no calibration table for {missing}; "
              "the split needs one for every factor (a semi-supervised model)", file=sys.stderr)
        return 2
    also: tuple[str, ...] = ()
    if args.sources:
        source_data = resolve_dataset(args.sources)
        if tuple(source_data.factors_num_values) != tuple(data.factors_num_values):
            print(f"{args.sources} draws another grid than {data.name}", file=sys.stderr)
            return 2
        also = (str(source_data.name),)
    else:
        source_data = data
    reader = load_reader(data.name, also=also, train=False, progress=False)
    encode = onnx_graph_fn(args.model_dir, manifest, "encoder", "mean")
    decode = onnx_graph_fn(args.model_dir, manifest, "decoder", "images")

    factors = data.sample_factors(args.num, np.random.default_rng(args.seed))
    sources = source_data.sample_observations_from_factors(factors)
    mean = encode(sources)
    true_code = np.zeros_like(mean)
    snapped = mean.copy()
    encoded = factors.copy()
    for f, name in enumerate(names):
        entry = entries[name]
        table = np.asarray(entry.latent_table, np.float32)  # (K, len(dims))
        true_code[:, entry.dims] = table[factors[:, f]]
        encoded[:, f] = ((mean[:, entry.dims][:, None, :] - table[None]) ** 2).sum(-1).argmin(1)
        snapped[:, entry.dims] = table[encoded[:, f]]
    on_sources = reader.read(sources)
    if on_sources.layout is not None:  # a generic reader compares grid indices, circular ones included
        encoder = Reading(encoded, np.zeros(len(factors)), on_sources.layout)
    else:  # a dSprites reader compares orientation as an angle
        angle = ORIENTATIONS[encoded[:, names.index("orientation")]] if "orientation" in names else np.zeros(len(factors))
        encoder = Reading(encoded, angle)
    readings = {
        "encoder": encoder,
        "drawn": reader.read(decode(true_code)),
        "recon": reader.read(decode(mean)),
        "snapped": reader.read(decode(snapped)),
        "reader": on_sources,
    }
    agree = {k: agreement(names, r, factors) for k, r in readings.items()}

    def row(mask: np.ndarray) -> dict[str, dict[str, float]]:
        return {k: {**{n: round(float(a[mask, i].mean()), 4) for i, n in enumerate(names)},
                    "all": round(float(a[mask].all(1).mean()), 4)} for k, a in agree.items()}

    result: dict[str, object] = {"model": str(args.model_dir), "num": args.num, "seed": args.seed,
                                 "sources": str(source_data.name), "overall": row(np.ones(len(factors), bool))}
    for group in ("shape", "scale"):
        if group in names:
            col = names.index(group)
            labels = data.factor_labels(col) or [str(i) for i in range(data.factors_num_values[col])]
            result[f"by_{group}"] = {labels[v]: row(factors[:, col] == v) for v in range(data.factors_num_values[col])}

    width = max(len(n) for n in names)
    print(f"{args.model_dir}: {args.num} sources drawn by {source_data.name}; "
          "fraction read as the source within the edit tolerance")
    print(f"{'':8s} " + " ".join(f"{n:>{width}s}" for n in (*names, "all")))
    for k, r in result["overall"].items():  # type: ignore[union-attr]
        print(f"{k:8s} " + " ".join(f"{r[n]:>{width}.3f}" for n in (*names, "all")))
    for group in ("shape", "scale"):
        for label, r in result.get(f"by_{group}", {}).items():  # type: ignore[union-attr]
            print(f"{group} {label:>8s}: " + ", ".join(f"{k} all {v['all']:.3f}" for k, v in r.items()))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
