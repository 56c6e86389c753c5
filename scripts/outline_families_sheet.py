"""A picture of what ``[augment] families`` shows the encoder, beside the two renderers it sits between.

    python scripts/outline_families_sheet.py [--out docs/images/outline_families.png] [--rows 9]

One row per factor tuple (three of each shape, random scale, orientation and place): first the
training renderer's image (what the decoder reconstructs), then five drawings of the same factors
by the randomised renderers of ``training/outline_families.py`` (what the encoder may see), then
the held-out renderer's image (``dsprites_elsewhere``: never trained on, the test of models.md's
"Images drawn elsewhere").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DRAWS = 5
ZOOM = 3
GAP = 4
HEADER = 18


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("docs/images/outline_families.png"))
    p.add_argument("--rows", type=int, default=9, help="factor tuples, shapes in turn (default 9)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import torch
    from PIL import Image, ImageDraw

    from latentdial.training.data import get_dataset
    from latentdial.training.outline_families import OutlineFamilies

    torch.manual_seed(args.seed)
    training, elsewhere = get_dataset("dsprites"), get_dataset("dsprites_elsewhere")
    factors = training.sample_factors(args.rows, np.random.default_rng(args.seed))
    factors[:, 0] = np.arange(args.rows) % 3
    families = OutlineFamilies()
    columns = [training.sample_observations_from_factors(factors)[:, 0]]
    for _ in range(DRAWS):
        columns.append(families(torch.from_numpy(factors)).numpy()[:, 0])
    columns.append(elsewhere.sample_observations_from_factors(factors)[:, 0])

    side = 64 * ZOOM
    sheet = Image.new("L", (len(columns) * (side + GAP), HEADER + args.rows * (side + GAP)), 96)
    pen = ImageDraw.Draw(sheet)
    titles = ["training (decoded)", *[f"families {k + 1}" for k in range(DRAWS)], "elsewhere (held out)"]
    for c, title in enumerate(titles):
        pen.text((c * (side + GAP) + 4, 3), title, fill=255)
    for r in range(args.rows):
        for c, column in enumerate(columns):
            tile = Image.fromarray((np.clip(column[r], 0, 1) * 255).astype(np.uint8)).resize((side, side), Image.NEAREST)
            sheet.paste(tile, (c * (side + GAP), HEADER + r * (side + GAP)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out} ({args.rows} factor tuples x {len(columns)} drawings)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
