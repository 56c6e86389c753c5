"""The model-directory contract shared by export (writer) and serving (reader).

A model directory ``models/<name>/<version>/`` holds ``manifest.json``,
``encoder.onnx``, ``decoder.onnx``, optional precision variants and optional
``torch.export`` programs. The manifest states the image shape and value range,
the latent size, the graphs' I/O names, every file with its graph, precision,
format and sha256, the factor card, the metrics and where the model came from.
This module is pure Python + numpy-free so that every role can read it.

Schema versions: 2 (written now) gives each file a typed ``format``; 1 kept the
format in the file's free-form ``notes`` (``"torch.export"``, or nothing for
ONNX). ``Manifest.from_dict`` reads both and upgrades a version 1 manifest in
memory, so model directories exported before the change still serve.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

SCHEMA_VERSION = 2
MANIFEST_NAME = "manifest.json"

#: What a model version is. "vae" (the default): an encoder to latents and a decoder back, so
#: every call (encode, decode, traverse, edit, generate) is served. "editor": an image-to-image
#: translator that edits without a latent space (StarGAN, Choi et al. 2018): a ``classifier``
#: graph reads an image's factor codes and an ``editor`` graph redraws the image with target
#: codes; the factor card describes the codes (``latent_dim`` is their size), and only edits
#: are served.
ModelKind = Literal["vae", "editor"]
Graph = Literal["encoder", "decoder", "classifier", "editor"]
Precision = Literal["fp32", "fp16", "int8"]
#: What a file holds: an ONNX graph, or a ``torch.export`` program (.pt2) for the torch runtime.
FileFormat = Literal["onnx", "torch-export"]

#: Fixed graph signatures (docs/architecture.md, "Contracts"). The batch axis is dynamic.
ENCODER_INPUTS = ("images",)  # (N, C, H, W) float32 in [0, 1]
ENCODER_OUTPUTS = ("mean", "log_var")  # (N, D) each
DECODER_INPUTS = ("latents",)  # (N, D) float32
DECODER_OUTPUTS = ("images",)  # (N, C, H, W) float32 in [0, 1], sigmoid inside
# An editor-kind model (ModelKind) has these two graphs instead:
CLASSIFIER_INPUTS = ("images",)  # (N, C, H, W) float32 in [0, 1]
CLASSIFIER_OUTPUTS = ("codes",)  # (N, D) float32: the factor codes the factor card describes
EDITOR_INPUTS = ("images", "codes")  # (N, C, H, W) float32 in [0, 1]; (N, D) float32 target codes
# (N, C, H, W) float32 in [0, 1]. Not "images": an ONNX graph cannot name an output like one of its
# inputs (single static assignment; onnx.checker and ONNX Runtime refuse the file).
EDITOR_OUTPUTS = ("edited",)
GRAPHS_OF_KIND: dict[str, tuple[str, ...]] = {"vae": ("encoder", "decoder"), "editor": ("classifier", "editor")}


class ManifestError(ValueError):
    """A manifest is missing, malformed, or does not match the files beside it."""


@dataclass(frozen=True)
class GraphFile:
    """One file of a model directory: a graph at a precision in a format.

    (graph, precision, format) names the file; ``Manifest.graph_file`` selects by all three.
    """

    graph: Graph
    path: str  # relative to the model directory
    sha256: str
    precision: Precision = "fp32"
    #: Largest absolute output difference against the fp32 torch reference, as measured at export.
    max_abs_error: float | None = None
    #: Free-form notes from export, e.g. {"optimised": "onnxslim"} or a speed ratio. Never read for selection.
    notes: dict[str, Any] = field(default_factory=dict)
    format: FileFormat = field(default="onnx", kw_only=True)
    #: "" for THE file of (graph, precision, format); another name (e.g. "raw": the export before
    #: onnxslim) marks an alternative that computes the same, a candidate for serving (``graph_choice``).
    variant: str = field(default="", kw_only=True)

    def __post_init__(self) -> None:
        for name, value, allowed in (("graph", self.graph, get_args(Graph)),
                                     ("precision", self.precision, get_args(Precision)),
                                     ("format", self.format, get_args(FileFormat))):
            if value not in allowed:
                raise ManifestError(f"file {self.path!r}: unknown {name} {value!r}; valid: {list(allowed)}")


@dataclass
class Manifest:
    """Self-description of one exported model version."""

    name: str
    version: str
    image_shape: tuple[int, int, int]  # (C, H, W)
    latent_dim: int
    files: list[GraphFile]
    value_range: tuple[float, float] = (0.0, 1.0)
    io: dict[str, dict[str, list[str]]] = field(
        default_factory=lambda: {
            "encoder": {"inputs": list(ENCODER_INPUTS), "outputs": list(ENCODER_OUTPUTS)},
            "decoder": {"inputs": list(DECODER_INPUTS), "outputs": list(DECODER_OUTPUTS)},
        }
    )
    #: Batch sizes the graphs were checked with; TensorRT profiles use (min, opt, max).
    batch_profile: dict[str, int] = field(
        default_factory=lambda: {"min": 1, "opt": 64, "max": 256}
    )
    factor_card: dict[str, Any] | None = None  # latentdial.factor_card.FactorCard.to_dict()
    metrics: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    #: Which file and ONNX Runtime session options serve each graph fastest, measured per host:
    #: {host key: {"host": {...}, "encoder": {"file", "session", "candidates": [...]}, ...}}
    #: (serving/runtimes/graph_choice.py). Absent in older manifests: serving measures at load.
    graph_choice: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    kind: ModelKind = "vae"

    def __post_init__(self) -> None:
        if self.kind not in GRAPHS_OF_KIND:
            raise ManifestError(f"unknown model kind {self.kind!r}; valid: {sorted(GRAPHS_OF_KIND)}")

    @classmethod
    def default_io(cls, kind: ModelKind) -> dict[str, dict[str, list[str]]]:
        """The fixed graph signatures of a model kind (the ``io`` a manifest of that kind states)."""
        if kind == "editor":
            return {"classifier": {"inputs": list(CLASSIFIER_INPUTS), "outputs": list(CLASSIFIER_OUTPUTS)},
                    "editor": {"inputs": list(EDITOR_INPUTS), "outputs": list(EDITOR_OUTPUTS)}}
        return {"encoder": {"inputs": list(ENCODER_INPUTS), "outputs": list(ENCODER_OUTPUTS)},
                "decoder": {"inputs": list(DECODER_INPUTS), "outputs": list(DECODER_OUTPUTS)}}

    @property
    def graphs(self) -> tuple[str, ...]:
        """The graphs a model of this kind must have."""
        return GRAPHS_OF_KIND[self.kind]

    # ------------------------------------------------------------------ queries
    def find_file(self, graph: Graph, precision: Precision = "fp32",
                  format: FileFormat = "onnx") -> GraphFile | None:
        """The file of ``graph`` at ``precision`` in ``format``, or None if the export did not write one."""
        return next((f for f in self.files
                     if (f.graph, f.precision, f.format, f.variant) == (graph, precision, format, "")), None)

    def alternatives(self, graph: Graph, precision: Precision = "fp32",
                     format: FileFormat = "onnx") -> list[GraphFile]:
        """Every file of ``graph`` at ``precision`` in ``format``: the main one first, then its variants."""
        found = [f for f in self.files if (f.graph, f.precision, f.format) == (graph, precision, format)]
        return sorted(found, key=lambda f: f.variant != "")

    def graph_file(self, graph: Graph, precision: Precision = "fp32",
                   format: FileFormat = "onnx") -> GraphFile:
        """The file of ``graph`` at ``precision`` in ``format``; ManifestError if it was not exported."""
        found = self.find_file(graph, precision, format)
        if found is None:
            have = sorted({f"{f.graph}/{f.precision}" + ("" if f.format == "onnx" else f" ({f.format})")
                           for f in self.files})
            wanted = f"{graph} at {precision}" + ("" if format == "onnx" else f" ({format})")
            raise ManifestError(f"model {self.name}/{self.version} has no {wanted}; has {have}")
        return found

    # --------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["image_shape"] = list(self.image_shape)
        d["value_range"] = list(self.value_range)
        for f in d["files"]:  # written only when set, so manifests without them read as before
            if not f["variant"]:
                del f["variant"]
        if not d["graph_choice"]:
            del d["graph_choice"]
        if d["kind"] == "vae":  # written only for other kinds, so VAE manifests read as before
            del d["kind"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        """Read a manifest of any known schema version (older ones are upgraded in memory)."""
        version = d.get("schema_version", SCHEMA_VERSION)
        if not isinstance(version, int) or version < 1:
            raise ManifestError(f"malformed manifest: schema_version={version!r}")
        if version > SCHEMA_VERSION:
            raise ManifestError(
                f"manifest schema {version} is newer than this latentdial "
                f"understands ({SCHEMA_VERSION}); upgrade latentdial"
            )
        if version == 1:
            d = _upgrade_v1(d)
        try:
            files = [GraphFile(**f) for f in d["files"]]
            kwargs = {k: v for k, v in d.items() if k != "files"}
            kwargs["image_shape"] = tuple(int(x) for x in d["image_shape"])
            kwargs["value_range"] = tuple(float(x) for x in d.get("value_range", (0.0, 1.0)))
            m = cls(files=files, **kwargs)
        except (KeyError, TypeError) as e:
            raise ManifestError(f"malformed manifest: {e}") from e
        if len(m.image_shape) != 3 or m.latent_dim <= 0:
            raise ManifestError(f"malformed manifest: image_shape={m.image_shape}, latent_dim={m.latent_dim}")
        return m

    def save(self, model_dir: Path) -> Path:
        path = Path(model_dir) / MANIFEST_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")
        return path

    @classmethod
    def load(cls, model_dir: Path) -> Manifest:
        path = Path(model_dir) / MANIFEST_NAME
        if not path.is_file():
            raise ManifestError(f"{path} does not exist; is {model_dir} a model directory?")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except json.JSONDecodeError as e:
            raise ManifestError(f"{path} is not valid JSON: {e}") from e

    def verify_files(self, model_dir: Path, *, may_be_absent: Collection[FileFormat] = ()) -> None:
        """Check every listed file exists and has its recorded sha256; raise ManifestError if not.

        ``may_be_absent``: formats whose files may be missing, for a reader that cannot run them
        (a server without torch never loads a ``torch-export`` program, so a serving image leaves
        the ``.pt2`` files out). A file of such a format that is present is verified all the same.
        """
        for f in self.files:
            p = Path(model_dir) / f.path
            if not p.is_file():
                if f.format in may_be_absent:
                    continue
                raise ManifestError(f"{p} is listed in the manifest but missing")
            actual = sha256_file(p)
            if actual != f.sha256:
                raise ManifestError(
                    f"{p}: sha256 {actual[:12]}… does not match the manifest's {f.sha256[:12]}…; "
                    "the file was changed or corrupted after export — re-export the model"
                )


#: Schema 1 kept the format in ``notes["format"]`` under these names (absent meant ONNX).
_V1_FORMATS: dict[str, FileFormat] = {"onnx": "onnx", "torch.export": "torch-export"}


def _upgrade_v1(d: dict[str, Any]) -> dict[str, Any]:
    """A schema 1 manifest dict as schema 2: each file's ``notes["format"]`` becomes its ``format``."""
    try:
        files = []
        for f in d["files"]:
            notes = dict(f.get("notes") or {})
            old = notes.pop("format", "onnx")
            if old not in _V1_FORMATS:
                raise ManifestError(f"file {f.get('path')!r}: unknown format {old!r} in a schema 1 manifest")
            files.append({**f, "notes": notes, "format": _V1_FORMATS[old]})
    except (KeyError, TypeError, AttributeError) as e:
        raise ManifestError(f"malformed manifest: {e}") from e
    return {**d, "files": files, "schema_version": 2}


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def iter_model_dirs(repository: Path) -> list[tuple[str, str, Path]]:
    """(name, version, path) for every ``<repository>/<name>/<version>/manifest.json``, sorted."""
    out = []
    for manifest in sorted(Path(repository).glob(f"*/*/{MANIFEST_NAME}")):
        version_dir = manifest.parent
        out.append((version_dir.parent.name, version_dir.name, version_dir))
    return out
