"""Example application: change one factor of an image through a latentdial server.

    python examples/app/edit_factor.py --address localhost:50051 --factor scale --value 0.8
    python examples/app/edit_factor.py --factor shape --value heart --input my_sprite.png

Takes an image (a PNG of the model's size, or a rendered dSprites image when none is
given), asks the server to set ``--factor`` to ``--value`` (a number in the factor's
units, or a label such as "heart" for categorical factors), and writes into ``--out``:

- ``original.png`` and ``edited.png``
- ``comparison.png``: both side by side, enlarged
- ``edit.json``: the model, the edit and the latent code before and after

Every option is also an environment variable (LATENTDIAL_ADDRESS, LATENTDIAL_TOKEN,
EDIT_FACTOR, EDIT_VALUE, INPUT_IMAGE, OUTPUT_DIR), which is how docker-compose.yml runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from latentdial.client import Client, LatentDialError
from latentdial.images import to_uint8


def _value(text: str) -> float | str:
    """"0.8" -> 0.8; "heart" -> "heart" (a categorical label)."""
    try:
        return float(text)
    except ValueError:
        return text


def source_image(path: str | None, shape_chw: tuple[int, int, int], seed: int) -> np.ndarray:
    """(1, H, W, C) uint8: the PNG at ``path``, or one procedural dSprites image."""
    c, h, w = shape_chw
    if path:
        img = Image.open(path).convert("L" if c == 1 else "RGB")
        if img.size != (w, h):
            raise SystemExit(f"{path} is {img.size[0]}x{img.size[1]}; the model takes {w}x{h} images")
        a = np.asarray(img)
        return (a[:, :, None] if a.ndim == 2 else a)[None]
    from latentdial.training.data import get_dataset

    obs = get_dataset("dsprites").sample_observations(1, np.random.default_rng(seed))  # (1, 1, 64, 64)
    if obs.shape[2:] != (h, w):
        raise SystemExit(f"the model takes {w}x{h} images; give one with --input")
    obs = np.repeat(obs, c, axis=1) if c != obs.shape[1] else obs
    return to_uint8(obs.transpose(0, 2, 3, 1))


def _pil(img: np.ndarray) -> Image.Image:
    """(H, W, C) uint8 -> PIL image."""
    return Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)


def side_by_side(a: np.ndarray, b: np.ndarray, scale: int = 4) -> Image.Image:
    """Two (H, W, C) images next to each other with a 4-pixel gap, enlarged ``scale`` times."""
    h, w, c = a.shape
    canvas = np.full((h, 2 * w + 4, c), 255, np.uint8)
    canvas[:, :w], canvas[:, w + 4:] = a, b
    return _pil(canvas).resize(((2 * w + 4) * scale, h * scale), Image.NEAREST)


def main(argv: list[str] | None = None) -> int:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--address", default=env("LATENTDIAL_ADDRESS", "localhost:50051"))
    p.add_argument("--token", default=env("LATENTDIAL_TOKEN"))
    p.add_argument("--model", default=env("LATENTDIAL_MODEL"), help="default: the server's default model")
    p.add_argument("--factor", default=env("EDIT_FACTOR", "scale"), help="factor name from the factor card")
    p.add_argument("--value", default=env("EDIT_VALUE", "0.8"), help="new value (factor units) or label")
    p.add_argument("--input", default=env("INPUT_IMAGE"), help="PNG to edit (default: a dSprites image)")
    p.add_argument("--seed", type=int, default=0, help="which dSprites image to render")
    p.add_argument("--out", type=Path, default=Path(env("OUTPUT_DIR", "edit-output")))
    args = p.parse_args(argv)

    with Client(args.address, token=args.token, timeout_s=30.0) as client:
        try:
            info = client.model_info(args.model)
        except LatentDialError as e:
            print(f"cannot reach a latentdial server at {args.address}: {e}", file=sys.stderr)
            return 1
        factors = {f.name: f for f in info.factors}
        if args.factor not in factors:
            have = ", ".join(factors) or "none (the model has no factor card)"
            print(f"model {info.model.name} has no factor {args.factor!r}; factors: {have}", file=sys.stderr)
            return 2
        image = source_image(args.input, (info.channels, info.height, info.width), args.seed)
        value = _value(args.value)
        try:
            before = client.encode(image, model=args.model).mean
            result = client.edit(image, {args.factor: value}, output="uint8", model=args.model)
        except LatentDialError as e:
            print(f"edit failed: {e}", file=sys.stderr)
            return 1

    args.out.mkdir(parents=True, exist_ok=True)
    edited = np.asarray(result.images)
    _pil(image[0]).save(args.out / "original.png")
    _pil(edited[0]).save(args.out / "edited.png")
    side_by_side(image[0], edited[0]).save(args.out / "comparison.png")
    record = {
        "model": {"name": result.model[0], "version": result.model[1]},
        "edit": {"factor": args.factor, "value": value, "dimensions": list(factors[args.factor].dimensions)},
        "latents_before": before[0].astype(float).round(4).tolist(),
        "latents_after": result.latents[0].astype(float).round(4).tolist(),
    }
    (args.out / "edit.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"set {args.factor} = {value} with {result.model[0]}/{result.model[1]}; wrote {args.out}/comparison.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
