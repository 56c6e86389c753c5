"""``latentdial client``: call a server from the shell; PNG/npy in, PNG grids/npy out.

Examples::

    latentdial client list
    latentdial client info --model dsprites
    latentdial client encode a.png b.png --out z.npy
    latentdial client decode z.npy --out recon.png
    latentdial client traverse a.png --factors scale pos_x --steps 8 --out traversal.png
    latentdial client edit a.png --set scale=0.8 --set shape=heart --shift pos_x=0.2 --out edited.png
    latentdial client generate --count 16 --pin shape=heart --out samples.png
    latentdial client --model dsprites --version 3 load     # server with --model-control explicit
    latentdial client --model dsprites --version 2 unload

Images given as ``.npy`` are (N, H, W, C) or (H, W, C) arrays; ``.png`` files
are stacked in order. ``--out`` ending in ``.npy`` saves the array; ``.png``
saves a grid (one row per source, or per traversal target).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default="localhost:50051", help="server host:port (default %(default)s)")
    parser.add_argument("--model", default=None, help="model name (default: the server's default model)")
    parser.add_argument("--version", dest="model_version", default=None, help="model version (default: newest)")
    parser.add_argument("--token", default=None, help="bearer token (or env LATENTDIAL_TOKEN)")
    parser.add_argument("--tls-ca", default=None, help="PEM CA of the server's certificate: use TLS")
    parser.add_argument("--tls-cert", default=None, help="client certificate for mutual TLS")
    parser.add_argument("--tls-key", default=None, help="client key for mutual TLS")
    parser.add_argument("--timeout-s", type=float, default=30.0,
                        help="deadline of each command's call in seconds, retries included (> 0; default 30)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="list models and versions")
    sub.add_parser("info", help="describe a model: shapes, factors, metrics, runtime")
    sub.add_parser("load", help="admin: verify, warm and serve --model [--version] (--model-control explicit)")
    sub.add_parser("unload", help="admin: drain and unload --model [--version] (--model-control explicit)")

    p = sub.add_parser("encode", help="images -> latents (.npy)")
    p.add_argument("inputs", nargs="+", help="PNG files or one .npy")
    p.add_argument("--out", required=True, help=".npy for the (N, D) means")
    p.add_argument("--sample", action="store_true", help="save a posterior sample instead of the mean")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("decode", help="latents (.npy) -> images")
    p.add_argument("latents", help=".npy of (N, D) latents")
    p.add_argument("--out", required=True, help=".png grid or .npy")

    p = sub.add_parser("reconstruct", help="images -> images through the model")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--out", required=True)

    p = sub.add_parser("traverse", help="sweep dimensions or factors into a grid")
    p.add_argument("inputs", nargs="*", help="PNG files or .npy images (or use --latents)")
    p.add_argument("--latents", default=None, help=".npy of (N, D) latents as the source")
    p.add_argument("--dims", type=int, nargs="*", default=None)
    p.add_argument("--factors", nargs="*", default=None)
    p.add_argument("--start", type=float, default=None)
    p.add_argument("--stop", type=float, default=None)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--out", required=True, help=".png grid (rows: source x target) or .npy")

    p = sub.add_parser("edit", help="change named factors or dimensions")
    p.add_argument("inputs", nargs="*")
    p.add_argument("--latents", default=None)
    p.add_argument("--set", action="append", default=[], metavar="FACTOR=VALUE|LABEL",
                   help="set a factor (name or dimension index) to a value or a label; repeatable")
    p.add_argument("--shift", action="append", default=[], metavar="FACTOR=DELTA")
    p.add_argument("--set-latent", action="append", default=[], metavar="FACTOR=Z")
    p.add_argument("--out", required=True, help=".png (originals row, edited row) or .npy")

    p = sub.add_parser("generate", help="sample images with factors pinned")
    p.add_argument("--count", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--pin", action="append", default=[], metavar="FACTOR=VALUE|LABEL")
    p.add_argument("--out", required=True)


def _load_images(paths: list[str]):
    import numpy as np
    from PIL import Image

    if len(paths) == 1 and paths[0].endswith(".npy"):
        return np.load(paths[0])
    arrays = []
    for p in paths:
        with Image.open(p) as im:
            a = np.asarray(im.convert("L") if im.mode in ("L", "1", "I", "I;16") else im.convert("RGB"))
        arrays.append(a[:, :, None] if a.ndim == 2 else a)
    return np.stack(arrays)


def _save_images(images, path: str, *, rows: int | None = None) -> None:
    """(N, H, W, C) -> .npy, or a PNG grid with ``rows`` rows (default: one row)."""
    import numpy as np
    from PIL import Image

    from latentdial.images import to_uint8

    a = np.asarray(images)
    if path.endswith(".npy"):
        np.save(path, a)
        return
    if a.dtype != np.uint8:
        a = to_uint8(a)
    n, h, w, c = a.shape
    rows = rows or 1
    cols = -(-n // rows)
    grid = np.full((rows * (h + 2), cols * (w + 2), c), 255, np.uint8)
    for i, img in enumerate(a):
        r, k = divmod(i, cols)
        grid[r * (h + 2) + 1 : r * (h + 2) + 1 + h, k * (w + 2) + 1 : k * (w + 2) + 1 + w] = img
    Image.fromarray(grid[:, :, 0] if c == 1 else grid).save(path)


def _target(key: str):
    return int(key) if key.lstrip("-").isdigit() else key


def _pairs(items: list[str], flag: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        if "=" not in item:
            raise SystemExit(f"{flag} {item!r}: write FACTOR=VALUE")
        k, v = item.split("=", 1)
        out.append((k, v))
    return out


def _number_or_label(v: str):
    try:
        return float(v), None
    except ValueError:
        return None, v


def _source(args, client_mod):
    import numpy as np

    if args.latents:
        return client_mod.latents(np.load(args.latents))
    if not args.inputs:
        raise SystemExit("give input images or --latents")
    return _load_images(args.inputs)


def run(args: argparse.Namespace) -> int:
    import os

    import numpy as np

    from latentdial import client as sdk

    token = args.token or os.environ.get("LATENTDIAL_TOKEN")
    try:
        c = sdk.Client(args.address, token=token, tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key,
                       timeout_s=args.timeout_s)
    except sdk.LatentDialError as e:
        print(f"latentdial client: {e}", file=sys.stderr)
        return 2
    ref = {"model": args.model, "version": args.model_version}
    try:
        if args.action == "list":
            for m in c.list_models():
                star = f" (default{' pinned to ' + m.default_version if m.default_version else ''})" \
                    if m.is_default else ""
                others = [f"{s.version} {s.state.upper()}" + (f" ({s.reason})" if s.reason else "")
                          for s in m.version_status if s.state != "ready"]
                more = f"; {', '.join(others)}" if others else ""
                kind = "" if m.kind == "vae" else f", kind {m.kind} (edits images only)"
                print(f"{m.name}{star}: versions {list(m.versions)}, latest {m.latest_version}{kind}{more}")
        elif args.action in ("load", "unload"):
            if not args.model:
                raise SystemExit(f"latentdial client {args.action}: name the model with --model")
            if args.action == "load":
                version = c.load_model(args.model, version=args.model_version)
                print(f"serving {args.model}/{version}")
            else:
                for v in c.unload_model(args.model, version=args.model_version):
                    print(f"unloaded {args.model}/{v}")
        elif args.action == "info":
            info = c.model_info(args.model, version=args.model_version)
            print(f"{info.model.name}/{info.model.version}: {info.channels}x{info.height}x{info.width} images, "
                  f"latent_dim {info.latent_dim}, runtime {info.runtime}"
                  + ("" if info.kind == "vae" else f", kind {info.kind} (edits images only)"))
            for f in info.factors:
                labels = f" labels {list(f.labels)}" if f.labels else ""
                print(f"  factor {f.name} ({f.kind}) dims {list(f.dimensions)} "
                      f"range [{f.min_value:g}, {f.max_value:g}]{labels}")
            for k, v in sorted(info.metrics.items()):
                print(f"  metric {k} = {v:.4f}")
        elif args.action == "encode":
            r = c.encode(_load_images(args.inputs), sample=args.sample, seed=args.seed, **ref)
            np.save(args.out, r.sample if args.sample else r.mean)
            print(f"wrote {args.out}: {r.mean.shape}")
        elif args.action == "decode":
            _save_images(c.decode(np.load(args.latents), output="uint8", **ref), args.out)
            print(f"wrote {args.out}")
        elif args.action == "reconstruct":
            x = _load_images(args.inputs)
            r = c.reconstruct(x, output="uint8", **ref)
            both = np.concatenate([sdk.convert.image_batch_to_uint8(x), r.images])
            _save_images(r.images if args.out.endswith(".npy") else both, args.out, rows=2)
            print(f"wrote {args.out}")
        elif args.action == "traverse":
            t = c.traverse(_source(args, sdk), dims=args.dims, factors=args.factors, start=args.start,
                           stop=args.stop, steps=args.steps, output="uint8", **ref)
            n, tt, s = t.images.shape[:3]
            _save_images(t.images.reshape(n * tt * s, *t.images.shape[3:]), args.out, rows=n * tt)
            for i, name in enumerate(t.targets):
                print(f"row {name}: " + " ".join(f"{v:.3g}" for v in t.values[i]))
            print(f"wrote {args.out}")
        elif args.action == "edit":
            edits = []
            for k, v in _pairs(args.set, "--set"):
                num, label = _number_or_label(v)
                edits.append(_edit(sdk, k, set_value=num) if label is None else _edit(sdk, k, set_label=label))
            edits += [_edit(sdk, k, shift=float(v)) for k, v in _pairs(args.shift, "--shift")]
            edits += [_edit(sdk, k, set_latent=float(v)) for k, v in _pairs(args.set_latent, "--set-latent")]
            src = _source(args, sdk)
            r = c.edit(src, edits, output="uint8", **ref)
            if args.out.endswith(".npy") or isinstance(src, sdk.LatentsSource):
                _save_images(r.images, args.out)
            else:
                _save_images(np.concatenate([sdk.convert.image_batch_to_uint8(src), r.images]), args.out, rows=2)
            print(f"wrote {args.out}")
        elif args.action == "generate":
            pins = []
            for k, v in _pairs(args.pin, "--pin"):
                num, label = _number_or_label(v)
                t = _target(k)
                tgt = {"dimension": t} if isinstance(t, int) else {"factor": t}
                pins.append(sdk.Pin(**tgt, value=num) if label is None else sdk.Pin(**tgt, label=label))
            r = c.generate(args.count, seed=args.seed, pins=pins, temperature=args.temperature, output="uint8", **ref)
            _save_images(r.images, args.out, rows=max(1, round(args.count**0.5)))
            print(f"wrote {args.out}")
    except sdk.LatentDialError as e:
        print(f"latentdial client: {e}", file=sys.stderr)
        return 1
    finally:
        c.close()
    return 0


def _edit(sdk, key: str, **op):
    t = _target(key)
    return sdk.Edit(**({"dimension": t} if isinstance(t, int) else {"factor": t}), **op)
