"""The model repository: every ``<repository>/<name>/<version>/`` loaded, verified and warm.

Each version's files are checked against the manifest's sha256 before anything
is loaded (files of a format no runtime here can load, torch programs where torch is not
installed, may be absent: the serving images leave them out); a version that fails
(checksum, manifest, runtime) is logged with the reason and skipped, and the rest are
still served. Versions sort numerically
when they are numbers ("10" after "9"), as text otherwise. The default model is
the one named by the ``default_model`` setting, or in ``<repository>/default`` (a text
file holding the model name), or ``"default"`` in ``<repository>/config.json``, or the
only one; each may pin a version as ``name/version``, and an empty ModelRef then
resolves to that version even when newer ones are served.

Containment: model names and versions match :data:`NAME_PATTERN`, and a version's directory,
its manifest and every file the manifest names must resolve (symlinks followed) inside the
repository; anything else is refused before it is read. Reasons that clients see
(:func:`public_reason`) name models and paths relative to the repository, never where the
repository lies on disk.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from latentdial.factor_card import FactorCard, FactorCardError
from latentdial.manifest import MANIFEST_NAME, Manifest, ManifestError, iter_model_dirs
from latentdial.serving.errors import InvalidArgument, NotFound
from latentdial.serving.runtimes import Runtime, RuntimeOptions, load_runtime
from latentdial.serving.runtimes.selection import formats_not_runnable_here

log = logging.getLogger(__name__)

DEFAULT_MARKER = "default"

#: What a model name or a version may be: a letter or digit, then up to 63 letters, digits, "_", "."
#: or "-"; never ".." (docs/api.md#security-model). A name is one directory level of the repository.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_RULE = "a letter or digit, then up to 63 letters, digits, '_', '.' or '-', without '..'"


def valid_name(text: str) -> bool:
    """True when ``text`` is a valid model name or version (:data:`NAME_PATTERN`, no "..")."""
    return bool(NAME_PATTERN.fullmatch(text)) and ".." not in text


def check_name(text: str, what: str) -> str:
    """``text`` if it is a valid model name or version, else InvalidArgument (never touches the disk)."""
    if not valid_name(text):
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise InvalidArgument(f"{what} {shown!r} is not valid: use {NAME_RULE}")
    return text


def inside(path: Path, root: Path) -> bool:
    """True when ``path`` resolves (symlinks followed, existing or not) to ``root`` or below it."""
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root))


def public_reason(reason: str, root: Path | str) -> str:
    """A refusal reason fit for clients: the repository's own location cut off its paths."""
    for prefix in {os.path.realpath(root), os.path.abspath(root), str(root)}:
        if prefix not in ("", ".", os.sep):
            reason = reason.replace(prefix.rstrip(os.sep) + os.sep, "")
    return reason


#: What a model of each kind is called where a client reads why a call is not served.
KIND_DESCRIPTIONS = {"vae": "a VAE (encoder and decoder)", "editor": "an editor (image-to-image translation)"}


@dataclass
class LoadedModel:
    """One served model version: its manifest, factor card and a warm runtime per graph of its kind.

    A "vae" has ``encoder`` and ``decoder``; an "editor" (``Manifest.kind``) has ``classifier``
    (images -> codes) and ``editor`` (images, codes -> images).
    """

    name: str
    version: str
    path: Path
    manifest: Manifest
    #: graph -> its runtime, in the order of ``Manifest.graphs``
    runtimes: dict[str, Runtime]
    card: FactorCard | None = None
    #: graph -> largest batch it is warmed up and served with (see :func:`batch_limit`)
    max_batch: dict[str, int] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """"vae" or "editor" (``Manifest.kind``)."""
        return self.manifest.kind

    @property
    def graphs(self) -> tuple[str, ...]:
        return tuple(self.runtimes)

    def runtime(self, graph: str) -> Runtime:
        """The runtime of ``graph``; KeyError if this model's kind has no such graph."""
        return self.runtimes[graph]

    @property
    def encoder(self) -> Runtime:
        return self.runtimes["encoder"]

    @property
    def decoder(self) -> Runtime:
        return self.runtimes["decoder"]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.manifest.image_shape

    @property
    def latent_dim(self) -> int:
        """D: the latent size of a VAE, the number of factor codes of an editor."""
        return self.manifest.latent_dim

    @property
    def runtime_name(self) -> str:
        return next(iter(self.runtimes.values())).name

    def describe(self) -> str:
        """Where the graphs run, for logs: the first graph's runtime."""
        return next(iter(self.runtimes.values())).describe()

    def close(self) -> None:
        for r in self.runtimes.values():
            r.close()


def version_key(version: str) -> tuple[int, int | str]:
    """Sort key: numeric versions by value, before any non-numeric (sorted as text)."""
    return (0, int(version)) if version.isdigit() else (1, version)


#: How a server runs its graphs: ONNX Runtime's idle intra-op threads sleep instead of spinning.
#: The runtime shares the CPU with the event loop that parses requests and forms batches, and
#: spinning threads steal that CPU between batches. Measured with benchmarks/bench_service.py on
#: a 2-core machine: server CPU per request about halves.
SERVING_RUNTIME_OPTIONS = RuntimeOptions(allow_spinning=False)


def batch_limit(runtime: Runtime, configured: int) -> int:
    """The largest batch a graph is served with: the configured one, or less if the runtime caps lower.

    TensorRT engines and the ONNX Runtime TensorRT EP end at the manifest's ``batch_profile``
    max, so a server configured for larger batches warms up and batches to that max instead.
    """
    return min(int(configured), int(runtime.max_batch_size))


def check_contained(path: Path, name: str, version: str, root: Path) -> None:
    """ManifestError unless the version directory, its manifest and every file that manifest names
    resolve inside the repository ``root``. Nothing outside is opened: the manifest is read only
    once it is known to lie inside, and the files are checked before their existence."""
    for what, value in (("model name", name), ("version", version)):
        if not valid_name(value):
            raise ManifestError(f"{what} {value!r} is not valid ({NAME_RULE})")
    ref = f"{name}/{version}"
    if not inside(path, root) or not inside(path / MANIFEST_NAME, root):
        raise ManifestError(f"model {ref}: its directory or manifest resolves outside the repository (a symlink?)")


def check_files_contained(manifest: Manifest, path: Path, name: str, version: str, root: Path) -> None:
    """ManifestError naming the entry (never the path) when a file of ``manifest`` resolves outside ``root``."""
    for i, f in enumerate(manifest.files):
        if not inside(path / f.path, root):
            raise ManifestError(
                f"model {name}/{version}: file {i} of its manifest ({f.graph}, {f.precision}) resolves outside "
                "the repository; a manifest names files inside the model's directory"
            )


def load_model(path: Path, name: str, version: str, *, runtime: str = "auto", max_batch_size: int = 64,
               options: RuntimeOptions = SERVING_RUNTIME_OPTIONS, root: Path | None = None) -> LoadedModel:
    """Verify and load one model version, then warm the graphs of its kind (:func:`check_kind`) up to the
    batch each is served with (``batch_limit``: ``max_batch_size`` or the runtime's own lower cap).
    Raises ManifestError/RuntimeError.

    ``root`` is the repository (default: two levels above ``path``); the directory, the manifest and
    every file it names must resolve inside it (:func:`check_contained`).
    """
    root = Path(root) if root is not None else Path(path).parent.parent
    check_contained(path, name, version, root)
    manifest = Manifest.load(path)
    check_files_contained(manifest, path, name, version, root)
    check_kind(manifest, name, version)
    manifest.verify_files(path, may_be_absent=formats_not_runnable_here())
    card = None
    if manifest.factor_card:
        try:
            card = FactorCard.from_dict(manifest.factor_card)
        except FactorCardError as e:
            raise ManifestError(f"{path}: factor card is invalid: {e}") from e
    runtimes = {g: load_runtime(path, manifest, g, preference=runtime, max_batch_size=max_batch_size, options=options)
                for g in manifest.graphs}
    try:
        limits = {g: batch_limit(r, max_batch_size) for g, r in runtimes.items()}
        (_warm_editor if manifest.kind == "editor" else _warm_vae)(path, manifest, runtimes, limits)
    except BaseException:
        for r in runtimes.values():
            r.close()
        raise
    return LoadedModel(name, version, path, manifest, runtimes, card, max_batch=limits)


def check_kind(manifest: Manifest, name: str, version: str) -> None:
    """ManifestError naming the model unless its files and ``io`` are the graphs of its kind.

    A kind's graphs are ``Manifest.graphs`` ("vae": encoder, decoder; "editor": classifier, editor):
    every file must be one of them, each of them needs an fp32 ONNX file, and an editor's ``io``
    must state the fixed signatures (``Manifest.default_io("editor")``).
    """
    ref, kind, wanted = f"{name}/{version}", manifest.kind, manifest.graphs
    what = f"model {ref} (kind {kind!r}) is {KIND_DESCRIPTIONS[kind]}, whose graphs are {', '.join(wanted)}"
    foreign = [g for g in dict.fromkeys(f.graph for f in manifest.files) if g not in wanted]  # in file order
    if foreign:
        hint = (" (an editor manifest must not list encoder or decoder files)" if kind == "editor" else
                " (set \"kind\": \"editor\" in the manifest if this is an editor)")
        raise ManifestError(f"{what}; its manifest lists files of {', '.join(foreign)}{hint}")
    if kind == "editor":
        missing = [g for g in wanted if manifest.find_file(g, "fp32", "onnx") is None]  # type: ignore[arg-type]
        if missing:
            raise ManifestError(f"{what}; its manifest lists no fp32 ONNX file of {', '.join(missing)}")
        expected = Manifest.default_io("editor")
        bad = {g: manifest.io.get(g) for g in wanted if manifest.io.get(g) != expected[g]}
        if bad:
            raise ManifestError(f"{what}; its io states {bad}, an editor's are {expected}")


def _warm_vae(path: Path, manifest: Manifest, runtimes: dict[str, Runtime], limits: dict[str, int]) -> None:
    """Check the encoder's and decoder's shapes against the manifest, warm each to its batch limit."""
    enc, dec = runtimes["encoder"], runtimes["decoder"]
    c, h, w = manifest.image_shape
    out = enc.run({"images": np.zeros((1, c, h, w), np.float32)})
    if out["mean"].shape != (1, manifest.latent_dim):
        raise ManifestError(
            f"{path}: encoder returns mean {out['mean'].shape}, manifest says latent_dim={manifest.latent_dim}"
        )
    for n in sorted({1, limits["encoder"]}):
        enc.warmup({"images": np.zeros((n, c, h, w), np.float32)})
    for n in sorted({1, limits["decoder"]}):
        img = dec.run({"latents": np.zeros((n, manifest.latent_dim), np.float32)})["images"]
        if img.shape != (n, c, h, w):
            raise ManifestError(f"{path}: decoder returns {img.shape}, manifest says {(n, c, h, w)}")


def _warm_editor(path: Path, manifest: Manifest, runtimes: dict[str, Runtime], limits: dict[str, int]) -> None:
    """Check the classifier's and editor's shapes against the manifest, warm each to its batch limit.

    The editor graph's one output is read by position, whatever the file names it: an ONNX graph
    cannot name it ``images`` like its input (one name, one value), and the name the contract gives
    it (``latentdial.manifest.EDITOR_OUTPUTS``) is not needed to find it.
    """
    cls, ed = runtimes["classifier"], runtimes["editor"]
    c, h, w = manifest.image_shape
    d = manifest.latent_dim
    ref = f"model {manifest.name}/{manifest.version}"
    for g, r, need in (("classifier", cls, {"images"}), ("editor", ed, {"images", "codes"})):
        if set(r.input_names) != need:
            raise ManifestError(f"{ref}: its {g} graph takes inputs {list(r.input_names)}, an editor's {g} "
                                f"takes {sorted(need)}")
    if "codes" not in cls.output_names:
        raise ManifestError(f"{ref}: its classifier graph returns {list(cls.output_names)}, not codes")
    if len(ed.output_names) != 1:  # read by position (see above)
        raise ManifestError(f"{ref}: its editor graph returns {list(ed.output_names)}, one image batch expected")
    for n in sorted({1, limits["classifier"]}):
        codes = cls.run({"images": np.zeros((n, c, h, w), np.float32)})["codes"]
        if codes.shape != (n, d):
            raise ManifestError(f"{ref}: classifier returns codes {codes.shape}, manifest says latent_dim={d}")
    for n in sorted({1, limits["editor"]}):
        (img,) = ed.run({"images": np.zeros((n, c, h, w), np.float32), "codes": np.zeros((n, d), np.float32)}).values()
        if img.shape != (n, c, h, w):
            raise ManifestError(f"{ref}: editor returns {img.shape}, manifest says {(n, c, h, w)}")


#: States of a version that is not (or no longer) simply served; a served version is "ready".
LOADING, READY, DRAINING, FAILED = "loading", "ready", "draining", "failed"


@dataclass(frozen=True)
class VersionStatus:
    """Where one version stands: loading, ready, draining (being unloaded) or failed (with why)."""

    state: str
    reason: str = ""


def parse_model_spec(spec: str) -> tuple[str, str | None]:
    """``"name"`` or ``"name/version"`` (the default model, optionally pinned to a version)."""
    name, _, version = spec.strip().partition("/")
    if not name or "/" in version:
        raise ValueError(f"expected a model as 'name' or 'name/version', got {spec!r}")
    return name, version or None


class ModelRepository:
    """All served versions, looked up by (name, version) with empty = default/newest.

    The served set can change while requests run (model control): :meth:`add` and
    :meth:`remove` replace a model's version table in one assignment, so a lookup sees the
    old table or the new one, never a half-built one, and "latest" moves at once.
    """

    def __init__(self, models: dict[str, dict[str, LoadedModel]], default: str | None, failed: dict[str, str],
                 *, default_spec: tuple[str, str | None] | None = None) -> None:
        self.models = models
        #: the default model asked for (config, ``<repository>/default`` or config.json), maybe pinned
        self.default_spec = default_spec
        self.default = default
        #: the version an empty ModelRef resolves to when the default is pinned, else None (newest)
        self.default_version: str | None = None
        #: "name/version" -> reason it is not served
        self.failed = failed
        #: versions that are loading, draining or failed; served versions are READY and not listed here
        self.pending: dict[tuple[str, str], VersionStatus] = {}
        self._resolve_default()

    @classmethod
    def load(cls, repository: Path | str, *, runtime: str = "auto", max_batch_size: int = 64,
             default_model: str | None = None) -> ModelRepository:
        root = Path(repository)
        if not root.is_dir():
            raise FileNotFoundError(f"model repository {root} does not exist; pass --repository DIR")
        models: dict[str, dict[str, LoadedModel]] = {}
        failed: dict[str, str] = {}
        for name, version, path in iter_model_dirs(root):
            try:
                m = load_model(path, name, version, runtime=runtime, max_batch_size=max_batch_size, root=root)
            except Exception as e:  # noqa: BLE001 - one bad version must not take the rest down
                log.error("not serving %s/%s: %s", name, version, e)
                failed[f"{name}/{version}"] = public_reason(str(e), root)  # clients see it in ListModels
                continue
            log.info("loaded %s/%s (%s) on %s", name, version, m.kind, m.describe())
            models.setdefault(name, {})[version] = m
        models = {
            name: dict(sorted(versions.items(), key=lambda kv: version_key(kv[0]))) for name, versions in models.items()
        }
        repo = cls(models, None, failed, default_spec=_default_spec(root, default_model))
        if repo.default_spec and repo.default_spec[0] not in models:
            log.error("default model %r is not served; available: %s", repo.default_spec[0], sorted(models))
        for key in failed:
            name, _, version = key.partition("/")
            repo.pending[(name, version)] = VersionStatus(FAILED, failed[key])
        return repo

    def names(self) -> list[str]:
        return sorted(self.models)

    def versions(self, name: str) -> list[str]:
        return list(self.models[name])

    def all(self) -> list[LoadedModel]:
        return [m for versions in self.models.values() for m in versions.values()]

    def get(self, name: str = "", version: str = "") -> LoadedModel:
        """Resolve a ModelRef; NotFound lists what exists."""
        models = self.models  # one snapshot for the whole lookup
        if not models:
            raise NotFound("the repository serves no models; check the server log for models that failed to load")
        if not name:
            if self.default is None:
                raise NotFound(f"no default model; name one of {sorted(models)}")
            name, version = self.default, version or (self.default_version or "")
        if name not in models:
            raise NotFound(f"model {name!r} is not served; available models: {sorted(models)}")
        versions = models[name]
        if not version:
            return versions[next(reversed(versions))]
        if version not in versions:
            raise NotFound(f"model {name!r} has no served version {version!r}; available versions: {list(versions)}")
        return versions[version]

    # ------------------------------------------------------------ live changes
    def add(self, m: LoadedModel) -> None:
        """Serve ``m`` (loaded and warm); "latest" of its model moves to it if it is the newest."""
        versions = dict(self.models.get(m.name, {}))
        versions[m.version] = m
        table = dict(sorted(versions.items(), key=lambda kv: version_key(kv[0])))
        self.models = {**self.models, m.name: table}
        self.pending.pop((m.name, m.version), None)
        self.failed.pop(f"{m.name}/{m.version}", None)
        self._resolve_default()

    def remove(self, name: str, version: str) -> LoadedModel:
        """Stop resolving ``name/version`` (requests that already hold it finish); returns it."""
        versions = dict(self.models[name])
        m = versions.pop(version)
        models = dict(self.models)
        if versions:
            models[name] = versions
        else:
            del models[name]
        self.models = models
        self._resolve_default()
        return m

    def set_status(self, name: str, version: str, status: VersionStatus | None) -> None:
        """Record a version's state (None forgets it); a failure also lands in :attr:`failed`."""
        key = f"{name}/{version}"
        if status is None:
            self.pending.pop((name, version), None)
            self.failed.pop(key, None)
            return
        self.pending[(name, version)] = status
        if status.state == FAILED:
            self.failed[key] = status.reason
        else:
            self.failed.pop(key, None)

    def statuses(self, name: str) -> dict[str, VersionStatus]:
        """Every known version of ``name`` (served, loading, draining, failed), in version order."""
        out = {v: VersionStatus(READY) for v in self.models.get(name, {})}
        out.update({v: st for (n, v), st in self.pending.items() if n == name})
        return dict(sorted(out.items(), key=lambda kv: version_key(kv[0])))

    def _resolve_default(self) -> None:
        """The default model (and pinned version) among what is served now.

        The one asked for when it is served; else the default so far while it stays served (a
        second model that appears does not take the default away from the only one); else the
        only model.
        """
        previous = self.default
        self.default, self.default_version = None, None
        if self.default_spec is not None and self.default_spec[0] in self.models:
            self.default, self.default_version = self.default_spec
        elif previous in self.models:
            self.default = previous
        elif len(self.models) == 1:
            self.default = next(iter(self.models))

    def close(self) -> None:
        for m in self.all():
            m.close()


def _default_spec(root: Path, configured: str | None) -> tuple[str, str | None] | None:
    """The default model asked for: the config's ``default_model``, ``<root>/default`` or config.json."""
    chosen, source = configured, "default_model"
    marker = root / DEFAULT_MARKER
    config = root / "config.json"
    if not chosen and marker.is_file():
        chosen, source = marker.read_text().strip(), str(marker)
    elif not chosen and config.is_file():
        try:
            chosen, source = json.loads(config.read_text()).get("default"), str(config)
        except (json.JSONDecodeError, AttributeError) as e:
            log.error("ignoring %s: %s", config, e)
    if not chosen:
        return None
    try:
        return parse_model_spec(chosen)
    except ValueError as e:
        log.error("ignoring the default model from %s: %s", source, e)
        return None
