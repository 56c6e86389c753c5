"""Your images, your labels: a folder in the Hugging Face ``imagefolder`` convention.

Layout (``docs/datasets.md``)::

    my_data/
      metadata.csv      file_name,<factor>,<factor>,...   (or metadata.jsonl, one object a line)
      factors.toml      the factor schema: each column's kind (training/data/schema.py)
      images/0001.png   any layout below the folder; file_name is relative to it

An empty cell means "not labelled"; a row with every cell empty is an unlabelled image, and
so is an image file that no row names. Any image size and mode is brought to the model's
channels and resolution (:func:`~.image_store.decode_image`), and the decoded images are
kept in a memory-mapped Arrow table (:mod:`.image_store`), so a set larger than memory trains.

Bad data stops the load with an error that names the file and the row (line of
``metadata.csv``, the header being line 1): a missing or unreadable image, an unknown label,
a value outside the declared range or not a number, a duplicate file name, a path that
leaves the folder. A schema that disagrees with the columns is an error of the whole file.
``skip_bad=True`` drops each bad row instead, and ``skipped`` lists what was dropped and why.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .image_store import ImageStore, build_or_load, default_cache_root
from .rows import LabelledRows
from .schema import CellError, FactorSchema, load_schema

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
METADATA_FILES = ("metadata.csv", "metadata.jsonl")
#: Errors listed in one exception before "... and N more".
_SHOWN = 10


@dataclass(frozen=True)
class BadRow:
    """A row that could not be used: where it is and why."""

    line: int  # line in the metadata file (header = 1); 0 for an image no row names
    file_name: str
    reason: str

    def __str__(self) -> str:
        where = f"metadata line {self.line}" if self.line else "unlisted image"
        return f"{where} ({self.file_name!r}): {self.reason}"


class FolderError(ValueError):
    """The folder's data is bad; ``bad`` lists every bad row found, the message the first ones."""

    def __init__(self, folder: Path, bad: list[BadRow]) -> None:
        self.bad = bad
        shown = "\n  ".join(str(b) for b in bad[:_SHOWN])
        more = f"\n  ... and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
        super().__init__(f"{folder}: {len(bad)} bad row(s):\n  {shown}{more}\n"
                         "fix them, or pass --skip-bad (skip_bad = true) to train without them")


@dataclass(frozen=True)
class _Row:
    line: int
    file_name: str
    path: Path
    labels: tuple[int, ...]


class LabelledImageFolder(LabelledRows):
    """Images and partial labels from a folder (module docstring).

    Args:
        path: the folder holding ``metadata.csv`` (or ``metadata.jsonl``) and the images.
        channels: 1 (grey) or 3 (RGB): the model's input channels.
        image_size: side of the model's square input in pixels.
        schema: the factor schema file; default ``path/factors.toml``.
        skip_bad: drop bad rows (listed in ``skipped``) instead of raising FolderError.
        cache_dir: where decoded-image tables are kept; default :func:`default_cache_root`.
    """

    name = "labelled_folder"

    def __init__(self, path: str | Path, channels: int = 3, image_size: int = 64, schema: str | Path | None = None,
                 skip_bad: bool = False, cache_dir: str | Path | None = None) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
        if image_size < 8:
            raise ValueError(f"image_size must be at least 8 pixels, got {image_size}")
        self.path = Path(path).resolve()
        if not self.path.is_dir():
            raise FileNotFoundError(f"image folder not found: {path}")
        self.schema: FactorSchema = load_schema(Path(schema) if schema else self.path / "factors.toml")
        self.channels, self.image_size = int(channels), int(image_size)
        self.observation_shape = (self.channels, self.image_size, self.image_size)
        self.factor_names = self.schema.names
        self.factors_num_values = tuple(f.levels for f in self.schema.factors)
        self.factor_kinds = tuple(f.kind for f in self.schema.factors)
        self.skip_bad = bool(skip_bad)
        self.skipped: list[BadRow] = []

        rows, bad = self._read_rows()
        self._report(bad)
        undecodable: list[BadRow] = []
        store = build_or_load([r.path for r in rows], list(range(len(rows))), self.channels, self.image_size,
                              Path(cache_dir) if cache_dir else default_cache_root(),
                              on_bad=lambda i, why: undecodable.append(BadRow(rows[i].line, rows[i].file_name, why)))
        self._report(undecodable)
        keep = [rows[int(i)] for i in store.rows]
        self._store: ImageStore = store
        self.files = [r.file_name for r in keep]
        self.labels = (np.array([r.labels for r in keep], dtype=np.int64).reshape(len(keep), self.num_factors))
        if len(self) == 0:
            raise ValueError(f"{self.path}: no usable image left" + (f" ({len(self.skipped)} skipped)" if self.skipped else ""))
        if self.skipped:
            log.warning("%s: skipped %d bad row(s); first: %s", self.path, len(self.skipped), self.skipped[0])

    # -- reading ---------------------------------------------------------------------
    def _report(self, bad: list[BadRow]) -> None:
        """Raise FolderError for ``bad`` rows, or record them as skipped with ``skip_bad``."""
        if bad and not self.skip_bad:
            raise FolderError(self.path, bad)
        self.skipped.extend(bad)

    def _metadata(self) -> tuple[Path, list[str], list[tuple[int, dict[str, object]]]]:
        """(file, columns, [(line, record)]) of the folder's metadata file."""
        found = [self.path / n for n in METADATA_FILES if (self.path / n).is_file()]
        if not found:
            raise FileNotFoundError(
                f"{self.path} has no metadata.csv or metadata.jsonl: write one with a file_name column and "
                f"one column per factor of the schema ({', '.join(self.factor_names)})"
            )
        if len(found) > 1:
            raise ValueError(f"{self.path} has both metadata.csv and metadata.jsonl; keep one")
        meta = found[0]
        if meta.suffix == ".csv":
            with meta.open(newline="", encoding="utf-8-sig") as fh:
                reader = csv.DictReader(fh)
                columns = list(reader.fieldnames or [])
                records = [(reader.line_num, dict(rec)) for rec in reader]
            return meta, columns, records
        records, columns = [], []
        for line, text in enumerate(meta.read_text(encoding="utf-8").splitlines(), start=1):
            if not text.strip():
                continue
            try:
                rec = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"{meta} line {line} is not JSON: {e}") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{meta} line {line} is not a JSON object")
            columns += [k for k in rec if k not in columns]
            records.append((line, rec))
        return meta, columns, records

    def _check_columns(self, meta: Path, columns: list[str]) -> None:
        if "file_name" not in columns:
            raise ValueError(f"{meta} has no file_name column (columns: {columns})")
        data_columns = [c for c in columns if c != "file_name"]
        missing = [n for n in self.factor_names if n not in data_columns]
        extra = [c for c in data_columns if c not in self.factor_names]
        if missing or extra:
            raise ValueError(
                f"the schema ({self.schema.source}) and {meta.name} disagree: "
                + "; ".join(filter(None, [f"factors without a column: {missing}" if missing else "",
                                          f"columns without a factor: {extra}" if extra else ""]))
                + ". Every column but file_name must be a [factors.<name>] table of the schema, and back."
            )

    def _read_rows(self) -> tuple[list[_Row], list[BadRow]]:
        meta, columns, records = self._metadata()
        self._check_columns(meta, columns)
        rows: list[_Row] = []
        bad: list[BadRow] = []
        seen: dict[str, int] = {}
        for line, rec in records:
            name = str(rec.get("file_name") or "").strip()
            if not name:
                bad.append(BadRow(line, name, "empty file_name"))
                continue
            path = (self.path / name).resolve()
            if not path.is_relative_to(self.path):
                bad.append(BadRow(line, name, "the path leaves the folder"))
                continue
            if name in seen:
                bad.append(BadRow(line, name, f"duplicate file_name (first on line {seen[name]})"))
                continue
            seen[name] = line
            if not path.is_file():
                bad.append(BadRow(line, name, "image file not found"))
                continue
            labels, why = [], []
            for spec in self.schema.factors:
                cell = rec.get(spec.name)
                if cell is None or str(cell).strip() == "":
                    labels.append(-1)
                    continue
                try:
                    labels.append(spec.index_of(cell))
                except CellError as e:
                    why.append(str(e))
            if why:
                bad.append(BadRow(line, name, "; ".join(why)))
                continue
            rows.append(_Row(line, name, path, tuple(labels)))
        listed = {r.path for r in rows} | {(self.path / b.file_name).resolve() for b in bad if b.file_name}
        unlisted = sorted(p for p in self.path.rglob("*")
                          if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and p.resolve() not in listed
                          and p.resolve().is_relative_to(self.path))  # a link out of the folder is not its image
        if unlisted:
            log.info("%s: %d image(s) that metadata does not name are used unlabelled", self.path, len(unlisted))
        rows += [_Row(0, str(p.relative_to(self.path)), p.resolve(), (-1,) * self.num_factors) for p in unlisted]
        return rows, bad

    # -- the GroundTruthData contract ------------------------------------------------
    def factor_grid(self, factor: int) -> np.ndarray:
        return self.schema.factors[factor].grid()

    def factor_labels(self, factor: int) -> list[str]:
        return list(self.schema.factors[factor].labels)

    def load(self, rows: np.ndarray) -> np.ndarray:
        """Row indices (n,) -> (n, C, H, W) float32 in [0, 1]."""
        images = self._store.get(np.asarray(rows, dtype=np.int64).reshape(-1))
        return images.astype(np.float32) * np.float32(1.0 / 255.0)

    def describe(self) -> str:
        return f"the labelled folder {self.path}"

    def summary(self) -> str:
        """One line for logs: images, labelled images, per-factor label counts, skipped rows."""
        per = ", ".join(f"{n} {int((self.labels[:, i] >= 0).sum()):,}" for i, n in enumerate(self.factor_names))
        skipped = f"; skipped {len(self.skipped):,} bad row(s)" if self.skipped else ""
        return (f"{self.path}: {len(self):,} images, {len(self.labelled_rows()):,} labelled ({per}){skipped}")

    def __getstate__(self) -> dict:
        """Pickle without the mapped table (re-mapped from its cache path on unpickling)."""
        state = dict(self.__dict__)
        state["_store"] = str(self._store.path)
        return state

    def __setstate__(self, state: dict) -> None:
        path = state.pop("_store")
        self.__dict__.update(state)
        self._store = ImageStore.open(Path(path))
