"""Decoded images on disk as a memory-mapped Arrow table (the ``datasets`` library's format).

A labelled folder may hold more images than memory. They are decoded once, brought to the
model's channels and resolution, and written as rows of uint8 ``(C, S, S)`` arrays with the
``datasets`` library; later runs map the table from disk (``datasets.load_from_disk``) and
read rows by index, so memory holds only the batches in use.

The table lives under ``cache_root/<fingerprint>``; the fingerprint covers the list of files
(name, size, modification time), the target shape and this module's format version, so a
changed image or a new size builds a new table and an unchanged folder reuses the old one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Bumped when the table's layout or the decoding changes.
FORMAT_VERSION = 1


def default_cache_root() -> Path:
    """``$LATENTDIAL_CACHE/folders``, else ``$XDG_CACHE_HOME/latentdial/folders``, else ``~/.cache/...``."""
    base = os.environ.get("LATENTDIAL_CACHE")
    if base:
        return Path(base) / "folders"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "latentdial" / "folders"


def decode_image(path: Path, channels: int, size: int) -> np.ndarray:
    """Any image Pillow reads (any size, any mode: palette, 16-bit, alpha, CMYK) -> (C, S, S) uint8.

    Converted to grey (``channels == 1``) or RGB, transparency composited on black, and
    resized to ``size x size`` (bilinear; the aspect ratio is not kept, so positions stay
    where the labels put them). Raises ValueError naming the file when it cannot be read.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                im = Image.fromarray((np.asarray(im, np.float64) / 257.0).clip(0, 255).astype(np.uint8))
            if "A" in im.getbands() or im.mode == "P" and "transparency" in im.info:
                im = im.convert("RGBA")
                background = Image.new("RGBA", im.size, (0, 0, 0, 255))
                im = Image.alpha_composite(background, im)
            im = im.convert("L" if channels == 1 else "RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot read image {path}: {e}") from e
    return arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))


def fingerprint(files: Sequence[Path], channels: int, size: int) -> str:
    """A digest of the files (name, size, mtime) and the target shape; see the module docstring."""
    h = hashlib.sha256(json.dumps([FORMAT_VERSION, channels, size]).encode())
    for p in files:
        st = p.stat()
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


@dataclass
class ImageStore:
    """A built table, memory-mapped: ``rows[i]`` is the caller's index of table row ``i``."""

    table: object  # pyarrow.Table with columns "image" (Array3D uint8) and "row" (int64)
    rows: np.ndarray  # (n,) int64
    shape: tuple[int, int, int]  # (C, S, S)
    path: Path

    @classmethod
    def open(cls, path: Path) -> ImageStore:
        """Map the table saved at ``path`` (``datasets.load_from_disk``)."""
        import datasets

        loaded = datasets.load_from_disk(str(path))
        feature = loaded.features["image"]
        table = loaded.data.table  # the pyarrow table under the memory map
        rows = table.column("row").to_numpy().astype(np.int64)
        return cls(table, rows, tuple(feature.shape), Path(path))

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, positions: np.ndarray) -> np.ndarray:
        """Table positions (n,) -> (n, C, S, S) uint8: one Arrow take, flattened without a Python loop."""
        import pyarrow as pa

        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        if len(positions) == 0:
            raise ValueError("no rows asked for")
        column = self.table.column("image").take(pa.array(positions)).combine_chunks()  # type: ignore[attr-defined]
        values = getattr(column, "storage", column)  # the extension type's nested fixed-size lists
        for _ in self.shape:
            values = values.flatten()
        return values.to_numpy(zero_copy_only=False).reshape(len(positions), *self.shape)


def _generate(files: tuple[str, ...], rows: tuple[int, ...], channels: int, size: int, bad_log: str) -> Iterator[dict]:
    """Yield {"image", "row"} per decodable file; each undecodable one is appended to ``bad_log``."""
    from tqdm.auto import tqdm

    with open(bad_log, "a") as log:
        for path, row in tqdm(list(zip(files, rows, strict=True)), desc="decoding images", unit="img",
                              mininterval=1.0, leave=False):
            try:
                image = decode_image(Path(path), channels, size)
            except ValueError as e:
                log.write(json.dumps({"row": row, "reason": str(e)}) + "\n")
                continue
            yield {"image": image, "row": row}


def build_or_load(files: Sequence[Path], rows: Sequence[int], channels: int, size: int, cache_root: Path,
                  on_bad: Callable[[int, str], None]) -> ImageStore:
    """The table of ``files`` (the caller's row index of each in ``rows``), built once per fingerprint.

    ``on_bad(row, reason)`` is called for every file that cannot be decoded (also when the
    table comes from the cache, from the list recorded at build time); it may raise to stop.
    """
    import datasets

    key = fingerprint(files, channels, size)
    final = Path(cache_root) / key
    bad_file = final / "undecodable.jsonl"
    if not (final / "dataset_info.json").is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        datasets.disable_progress_bars()
        with tempfile.TemporaryDirectory(dir=final.parent, prefix=f".{key}-") as tmp:
            bad_log = os.path.join(tmp, "undecodable.jsonl")
            Path(bad_log).touch()
            features = datasets.Features({
                "image": datasets.Array3D(shape=(channels, size, size), dtype="uint8"),
                "row": datasets.Value("int64"),
            })
            table = datasets.Dataset.from_generator(
                _generate, features=features, cache_dir=os.path.join(tmp, "build"),
                gen_kwargs={"files": tuple(str(p) for p in files), "rows": tuple(int(r) for r in rows),
                            "channels": channels, "size": size, "bad_log": bad_log},
            )
            staged = os.path.join(tmp, "table")
            table.save_to_disk(staged)
            shutil.move(bad_log, os.path.join(staged, "undecodable.jsonl"))
            del table
            if final.exists():  # another process built it meanwhile
                shutil.rmtree(staged)
            else:
                os.replace(staged, final)
    for line in bad_file.read_text().splitlines() if bad_file.is_file() else []:
        entry = json.loads(line)
        on_bad(int(entry["row"]), str(entry["reason"]))
    return ImageStore.open(final)
