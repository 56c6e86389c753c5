"""Images and results as HTTP answers: base64 PNGs in JSON, or one PNG grid (``?format=png``)."""

from __future__ import annotations

import base64

import numpy as np
from fastapi import Request
from fastapi.responses import JSONResponse, Response

from latentdial.serving import codec
from latentdial.serving.errors import InvalidArgument
from latentdial.serving.http.call import JSON_TYPE, PNG_TYPE
from latentdial.serving.requests import ModelRef
from latentdial.serving.results import Decoded


def ref_json(ref: ModelRef) -> dict:
    return {"name": ref.name, "version": ref.version}


def pngs(images_nchw: np.ndarray) -> list[str]:
    """(N, C, H, W) float images in [0, 1] -> N base64 PNGs."""
    u8 = codec.to_uint8(images_nchw.transpose(0, 2, 3, 1))
    return [base64.b64encode(codec.encode_png(img)).decode() for img in u8]


def grid_png(images_nchw: np.ndarray, rows: int, cols: int) -> bytes:
    """(rows * cols, C, H, W) float images in [0, 1] -> one PNG, row-major, 2-pixel grey gutters."""
    n, c, h, w = images_nchw.shape
    if rows * cols != n:
        raise ValueError(f"{n} images do not fill a {rows}x{cols} grid")
    if n == 1:
        return codec.encode_png(codec.to_uint8(images_nchw[0].transpose(1, 2, 0)))
    gap = 2
    canvas = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, c), 0.5, np.float32)
    for i, img in enumerate(images_nchw):
        r, k = divmod(i, cols)
        canvas[r * (h + gap): r * (h + gap) + h, k * (w + gap): k * (w + gap) + w] = img.transpose(1, 2, 0)
    return codec.encode_png(codec.to_uint8(canvas))


def wants_png(request: Request) -> bool:
    """``?format=png`` (or ``json``), else an ``Accept`` that names image/png and not JSON."""
    fmt = request.query_params.get("format")
    if fmt is not None:
        if fmt not in ("json", "png"):
            raise InvalidArgument(f"format={fmt!r} is unknown; use format=json or format=png")
        return fmt == "png"
    accept = request.headers.get("accept", "")
    return PNG_TYPE in accept and JSON_TYPE not in accept


def png_response(blob: bytes) -> Response:
    return Response(blob, media_type=PNG_TYPE)


def decoded_response(request: Request, d: Decoded) -> Response:
    """Latents and images as JSON, or the images as one PNG row."""
    if wants_png(request):
        return png_response(grid_png(d.images, 1, len(d.images)))
    return JSONResponse({"model": ref_json(d.model), "latents": d.latents.tolist(), "images": pngs(d.images)})
