"""numpy / PIL <-> protobuf for the client SDK, with checks before anything is sent.

Images in: (N, H, W, C) or one (H, W, C) / (H, W) array, uint8 in [0, 255] or
float in [0, 1]; a PIL image or a list of them; or a list of PNG bytes.
Images out: "float32" / "uint8" -> (N, H, W, C) array, "png" -> list of bytes,
"pil" -> list of PIL images.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from latentdial.client.errors import InvalidArgumentError
from latentdial.edit import Edit, EditError, Pin
from latentdial.images import to_uint8
from latentdial.v1 import latentdial_pb2 as pb

ImagesIn = np.ndarray | Any | Sequence[Any] | Sequence[bytes]
OUTPUTS = ("float32", "uint8", "png", "pil")
_WIRE_FORMAT = {
    "float32": pb.IMAGE_FORMAT_FLOAT32, "uint8": pb.IMAGE_FORMAT_UINT8,
    "png": pb.IMAGE_FORMAT_PNG, "pil": pb.IMAGE_FORMAT_UINT8,
}


# ---------------------------------------------------------------- tensors --
def to_tensor(a: np.ndarray) -> pb.Tensor:
    if a.dtype == np.uint8:
        return pb.Tensor(dtype=pb.DATA_TYPE_UINT8, shape=a.shape, raw=np.ascontiguousarray(a).tobytes())
    a = np.ascontiguousarray(a, dtype="<f4")
    return pb.Tensor(dtype=pb.DATA_TYPE_FLOAT32, shape=a.shape, raw=a.tobytes())


def from_tensor(t: pb.Tensor) -> np.ndarray:
    dtype = np.uint8 if t.dtype == pb.DATA_TYPE_UINT8 else np.dtype("<f4")
    return np.frombuffer(t.raw, dtype=dtype).reshape(tuple(t.shape))


def latents_tensor(latents: Any) -> pb.Tensor:
    z = np.asarray(latents)
    if z.ndim == 1:
        z = z[None, :]
    if z.ndim != 2 or z.shape[0] == 0:
        raise InvalidArgumentError(f"latents must be (N, D) with N >= 1, got shape {z.shape}")
    if not np.issubdtype(z.dtype, np.number):
        raise InvalidArgumentError(f"latents must be numeric, got dtype {z.dtype}")
    z = z.astype(np.float32, copy=False)
    if not np.isfinite(z).all():
        raise InvalidArgumentError("latents contain NaN or inf")
    return to_tensor(z)


# ----------------------------------------------------------------- images --
def image_batch(images: ImagesIn) -> pb.ImageBatch:
    """Anything image-like -> ImageBatch (tensor, or PNGs for bytes input)."""
    if isinstance(images, (bytes, bytearray)):
        images = [bytes(images)]
    if isinstance(images, (list, tuple)):
        if not images:
            raise InvalidArgumentError("no images given")
        if all(isinstance(x, (bytes, bytearray)) for x in images):
            return pb.ImageBatch(png=pb.PngImages(images=[bytes(x) for x in images]))
        if all(_is_pil(x) for x in images):
            return pb.ImageBatch(tensor=to_tensor(np.stack([_pil_to_array(x) for x in images])))
        images = np.stack([np.asarray(x) for x in images])
    elif _is_pil(images):
        images = _pil_to_array(images)[None]
    a = np.asarray(images)
    if a.ndim == 2:
        a = a[None, :, :, None]
    elif a.ndim == 3:
        a = a[None] if a.shape[-1] in (1, 3, 4) else a[..., None]
    if a.ndim != 4 or a.shape[0] == 0:
        raise InvalidArgumentError(f"images must be (N, H, W, C), got shape {np.asarray(images).shape}")
    if a.dtype == np.uint8:
        return pb.ImageBatch(tensor=to_tensor(a))
    if not np.issubdtype(a.dtype, np.floating):
        raise InvalidArgumentError(f"images must be uint8 in [0, 255] or float in [0, 1], got dtype {a.dtype}")
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise InvalidArgumentError("images contain NaN or inf")
    if a.size and (a.min() < 0.0 or a.max() > 1.0):
        raise InvalidArgumentError(
            f"float images must lie in [0, 1], got [{a.min():g}, {a.max():g}]; divide uint8 pixels by 255"
        )
    return pb.ImageBatch(tensor=to_tensor(a))


def _is_pil(x: Any) -> bool:
    return type(x).__module__.startswith("PIL.")


def _pil_to_array(img: Any) -> np.ndarray:
    if img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    a = np.asarray(img, dtype=np.uint8)
    return a[:, :, None] if a.ndim == 2 else a


def image_batch_to_uint8(images: ImagesIn) -> np.ndarray:
    """Anything ``image_batch`` accepts, as an (N, H, W, C) uint8 array (for local display)."""
    b = image_batch(images)
    if b.WhichOneof("content") == "png":
        from PIL import Image

        arrays = [np.asarray(Image.open(io.BytesIO(x))) for x in b.png.images]
        return np.stack([a[:, :, None] if a.ndim == 2 else a for a in arrays])
    a = from_tensor(b.tensor)
    return a if a.dtype == np.uint8 else to_uint8(a)


def wire_format(output: str) -> int:
    if output not in OUTPUTS:
        raise InvalidArgumentError(f"output must be one of {OUTPUTS}, got {output!r}")
    return _WIRE_FORMAT[output]


def images_out(batch: pb.ImageBatch, output: str) -> Any:
    """ImageBatch -> what ``output`` asks for."""
    if batch.WhichOneof("content") == "png":
        blobs = list(batch.png.images)
        if output == "png":
            return blobs
        from PIL import Image

        return [Image.open(io.BytesIO(b)) for b in blobs]
    a = from_tensor(batch.tensor)
    if output == "pil":
        from PIL import Image

        return [Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img) for img in a]
    return a


# ------------------------------------------------------------ edits, pins --
def _proto(item: Edit | Pin, message: type, label_field: str) -> Any:
    """An Edit as a FactorEdit or a Pin as a FactorPin, checked first (InvalidArgumentError says what is wrong)."""
    try:
        op, value = item.operation()
    except EditError as err:
        raise InvalidArgumentError(f"{item}: {err}") from None
    msg = message(**({"factor": item.factor} if item.factor is not None else {"dimension": item.dimension}))
    setattr(msg, op, value if op == label_field else float(value))
    return msg


def edits_proto(edits: Sequence[Edit] | Mapping[str | int, Any]) -> list[pb.FactorEdit]:
    """Edit objects, or the shorthand {"scale": 0.8, "shape": "heart", 3: 1.5} (set value / label)."""
    if isinstance(edits, Mapping):
        edits = [_shorthand(Edit, k, v, "set_value", "set_label") for k, v in edits.items()]
    return [_proto(e, pb.FactorEdit, "set_label") for e in edits]


def pins_proto(pins: Sequence[Pin] | Mapping[str | int, Any] | None) -> list[pb.FactorPin]:
    if not pins:
        return []
    if isinstance(pins, Mapping):
        pins = [_shorthand(Pin, k, v, "value", "label") for k, v in pins.items()]
    return [_proto(p, pb.FactorPin, "label") for p in pins]


def _shorthand(cls, key, value, num_field: str, label_field: str):
    target = {"dimension": int(key)} if isinstance(key, (int, np.integer)) else {"factor": str(key)}
    field = label_field if isinstance(value, str) else num_field
    return cls(**target, **{field: value})


def model_ref(model: str | None, version: str | None) -> pb.ModelRef:
    return pb.ModelRef(name=model or "", version=version or "")


# ---------------------------------------------------------------- results --
@dataclass
class EncodeResult:
    mean: np.ndarray  # (N, D)
    log_var: np.ndarray  # (N, D)
    sample: np.ndarray | None  # (N, D) when requested
    model: tuple[str, str]


@dataclass
class ImagesResult:
    """Images plus the (N, D) latents that made them (Reconstruct, EditAttributes, Generate)."""

    images: Any
    latents: np.ndarray
    model: tuple[str, str]


@dataclass
class Traversal:
    """A traversal grid: ``images`` (N, T, S, H, W, C) for array outputs, a flat list otherwise."""

    images: Any
    targets: list[str]  # (T,)
    values: np.ndarray  # (T, S)
    num_sources: int
    steps: int
    model: tuple[str, str]

    def image(self, n: int, t: int, s: int) -> Any:
        if isinstance(self.images, np.ndarray):
            return self.images[n, t, s]
        return self.images[(n * len(self.targets) + t) * self.steps + s]


def traversal_from(resp: pb.TraverseResponse, output: str) -> Traversal:
    images = images_out(resp.images, output)
    if isinstance(images, np.ndarray):
        images = images.reshape(resp.num_sources, resp.num_targets, resp.steps, *images.shape[1:])
    return Traversal(images, list(resp.targets), from_tensor(resp.values), resp.num_sources, resp.steps,
                     (resp.model.name, resp.model.version))
