"""Wire tensors and image batches <-> numpy, with validation that names what to fix.

Images arrive as (N, H, W, C) uint8 / float32 tensors or PNGs and leave the
codec as the graphs want them: (N, C, H, W) float32 in [0, 1]. Raw bytes are
viewed with ``np.frombuffer`` (no copy) and converted in one vectorised pass.
"""

from __future__ import annotations

import io

import numpy as np

from latentdial.images import to_uint8
from latentdial.serving.errors import InvalidArgument
from latentdial.v1 import latentdial_pb2 as pb

_DTYPES = {pb.DATA_TYPE_UINT8: np.dtype("<u1"), pb.DATA_TYPE_FLOAT32: np.dtype("<f4")}
_DTYPE_NAMES = {pb.DATA_TYPE_UINT8: "UINT8", pb.DATA_TYPE_FLOAT32: "FLOAT32"}


def tensor_to_array(t: pb.Tensor, what: str, *, allowed: tuple[int, ...] = (pb.DATA_TYPE_FLOAT32,)) -> np.ndarray:
    """Read-only view of a wire tensor; checks dtype, shape entries and byte length."""
    if t.dtype not in allowed:
        names = " or ".join(_DTYPE_NAMES[a] for a in allowed)
        got = _DTYPE_NAMES.get(t.dtype, "UNSPECIFIED" if t.dtype == 0 else f"unknown ({t.dtype})")
        raise InvalidArgument(f"{what}: dtype {got} is not allowed; send {names}")
    if len(t.shape) > 8:  # before copying the entries out
        raise InvalidArgument(f"{what}: shape has {len(t.shape)} entries, more than 8")
    shape = tuple(int(s) for s in t.shape)
    if any(s < 0 for s in shape) or len(shape) > 8:
        raise InvalidArgument(f"{what}: shape {list(shape)} is malformed (negative entry or > 8 dims)")
    dtype = _DTYPES[t.dtype]
    expected = dtype.itemsize
    for s in shape:
        expected *= s  # Python ints: no overflow on hostile shapes
    if len(t.raw) != expected:
        raise InvalidArgument(
            f"{what}: raw holds {len(t.raw)} bytes but shape {list(shape)} x {dtype.itemsize} bytes "
            f"needs {expected}; raw must be the C-order little-endian bytes of the array"
        )
    return np.frombuffer(t.raw, dtype=dtype).reshape(shape)


def array_to_tensor(a: np.ndarray) -> pb.Tensor:
    """(any shape) uint8 or float32 array -> wire tensor (one copy: tobytes)."""
    if a.dtype == np.uint8:
        dt = pb.DATA_TYPE_UINT8
    else:
        a = a.astype("<f4", copy=False)
        dt = pb.DATA_TYPE_FLOAT32
    return pb.Tensor(dtype=dt, shape=a.shape, raw=np.ascontiguousarray(a).tobytes())


def _check_count(n: int, max_items: int, what: str) -> None:
    if n < 1:
        raise InvalidArgument(f"{what}: the batch is empty; send at least one item")
    if n > max_items:
        raise InvalidArgument(
            f"{what}: {n} items exceed this server's max_request_items={max_items}; split the request"
        )


def latents_from_tensor(t: pb.Tensor, latent_dim: int, max_items: int, what: str = "latents") -> np.ndarray:
    """(N, D) finite float32 latents, validated."""
    return latents_from_array(tensor_to_array(t, what), latent_dim, max_items, what)


def latents_from_array(a: np.ndarray, latent_dim: int, max_items: int, what: str = "latents") -> np.ndarray:
    """Validate latents (N, D) float32 from any front door; returns them as float32."""
    if a.dtype != np.float32:
        raise InvalidArgument(f"{what}: dtype {a.dtype} is not allowed; send float32 latents")
    if a.ndim != 2 or a.shape[1] != latent_dim:
        raise InvalidArgument(f"{what}: shape {list(a.shape)} should be (N, {latent_dim}) float32")
    _check_count(a.shape[0], max_items, what)
    if not np.isfinite(a).all():
        raise InvalidArgument(f"{what}: contains NaN or inf; send finite values")
    return a


def images_from_batch(
    batch: pb.ImageBatch, image_shape: tuple[int, int, int], max_items: int, what: str = "images"
) -> np.ndarray:
    """ImageBatch -> (N, C, H, W) float32 in [0, 1]. image_shape is the model's (C, H, W)."""
    kind = batch.WhichOneof("content")
    if kind is None:
        raise InvalidArgument(f"{what}: no images; send a tensor {_wanted(image_shape)} or PNGs")
    if kind == "png":
        return images_from_pngs(batch.png.images, image_shape, max_items, what)
    a = tensor_to_array(batch.tensor, what, allowed=(pb.DATA_TYPE_UINT8, pb.DATA_TYPE_FLOAT32))
    return images_from_array(a, image_shape, max_items, what)


def _wanted(image_shape: tuple[int, int, int]) -> str:
    c, h, w = image_shape
    return f"(N, {h}, {w}, {c}) uint8 in [0, 255] or float32 in [0, 1]"


def images_from_array(
    a: np.ndarray, image_shape: tuple[int, int, int], max_items: int, what: str = "images"
) -> np.ndarray:
    """(N, H, W, C) uint8 or float32 in [0, 1] from any front door -> (N, C, H, W) float32 in [0, 1]."""
    c, h, w = image_shape
    if a.dtype not in (np.uint8, np.float32):
        raise InvalidArgument(f"{what}: dtype {a.dtype} is not allowed; send {_wanted(image_shape)}")
    if a.ndim != 4 or a.shape[1:] != (h, w, c):
        raise InvalidArgument(f"{what}: shape {list(a.shape)} does not match this model; send {_wanted(image_shape)}")
    _check_count(a.shape[0], max_items, what)
    if a.dtype == np.uint8:
        out = np.empty((a.shape[0], c, h, w), np.float32)
        np.multiply(a.transpose(0, 3, 1, 2), np.float32(1.0 / 255.0), out=out)
        return out
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise InvalidArgument(f"{what}: contains NaN or inf; send finite values in [0, 1]")
    if lo < 0.0 or hi > 1.0:
        raise InvalidArgument(
            f"{what}: float32 values span [{lo:g}, {hi:g}] but must lie in [0, 1]; "
            "divide uint8 pixels by 255 or send uint8"
        )
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def images_from_pngs(
    blobs: list[bytes], image_shape: tuple[int, int, int], max_items: int, what: str = "images"
) -> np.ndarray:
    """One PNG per image (grey for 1 channel, RGB for 3) -> (N, C, H, W) float32 in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    c, h, w = image_shape
    _check_count(len(blobs), max_items, what)
    mode = "L" if c == 1 else "RGB" if c == 3 else None
    if mode is None:
        raise InvalidArgument(f"{what}: PNG input needs a 1- or 3-channel model; this one has {c}; send a tensor")
    out = np.empty((len(blobs), c, h, w), np.float32)
    for i, blob in enumerate(blobs):
        try:
            with Image.open(io.BytesIO(blob)) as im:
                if im.format != "PNG":
                    raise InvalidArgument(f"{what}[{i}]: is {im.format}, not PNG; send PNG files")
                if im.size != (w, h):
                    raise InvalidArgument(f"{what}[{i}]: PNG is {im.size[0]}x{im.size[1]}; this model wants {w}x{h}")
                arr = np.asarray(im.convert(mode), dtype=np.uint8)
        except InvalidArgument:
            raise
        except Image.DecompressionBombError as e:  # the header declares more pixels than Pillow will decode
            raise InvalidArgument(
                f"{what}[{i}]: PNG declares more pixels than the size limit of {2 * Image.MAX_IMAGE_PIXELS:,} "
                f"pixels; this model takes {w}x{h} PNGs"
            ) from e
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise InvalidArgument(f"{what}[{i}]: not a readable PNG ({e}); send valid PNG bytes") from e
        arr = arr.reshape(h, w, c)
        out[i] = arr.transpose(2, 0, 1) * np.float32(1.0 / 255.0)
    return out


def batch_from_images(images_nchw: np.ndarray, fmt: int) -> pb.ImageBatch:
    """(N, C, H, W) float32 in [0, 1] -> ImageBatch in the caller's format."""
    nhwc = images_nchw.transpose(0, 2, 3, 1)
    if fmt in (pb.IMAGE_FORMAT_UNSPECIFIED, pb.IMAGE_FORMAT_FLOAT32):
        return pb.ImageBatch(tensor=array_to_tensor(np.ascontiguousarray(nhwc, dtype=np.float32)))
    u8 = to_uint8(nhwc)
    if fmt == pb.IMAGE_FORMAT_UINT8:
        return pb.ImageBatch(tensor=array_to_tensor(u8))
    if fmt == pb.IMAGE_FORMAT_PNG:
        return pb.ImageBatch(png=pb.PngImages(images=[encode_png(img) for img in u8]))
    raise InvalidArgument(f"output_format {fmt} is unknown; use UINT8, FLOAT32 or PNG")


def encode_png(hwc_u8: np.ndarray) -> bytes:
    """(H, W, C) uint8, C in {1, 3, 4} -> PNG bytes."""
    from PIL import Image

    img = hwc_u8[:, :, 0] if hwc_u8.shape[2] == 1 else hwc_u8
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img)).save(buf, format="PNG")
    return buf.getvalue()


def check_output_format(fmt: int) -> None:
    if fmt not in (pb.IMAGE_FORMAT_UNSPECIFIED, pb.IMAGE_FORMAT_UINT8, pb.IMAGE_FORMAT_FLOAT32, pb.IMAGE_FORMAT_PNG):
        raise InvalidArgument(f"output_format {fmt} is unknown; use UINT8, FLOAT32 or PNG")
