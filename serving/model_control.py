"""Live model updates while traffic flows, after Triton's model-control modes.

- ``none``: serve what loads at start-up; the served set never changes.
- ``poll``: scan the repository every ``poll_interval_s``. A version directory that appears
  (or a refused one whose files changed) is tried once its files have stopped changing for
  one interval, so a copy in progress is not read half-way; a version directory that
  disappears is unloaded.
- ``explicit``: start with the repository as ``none`` does; afterwards only the admin RPCs
  ``LoadModel`` and ``UnloadModel`` change what is served (behind the same bearer token).
  Their names and versions must match :data:`~latentdial.serving.repository.NAME_PATTERN`
  (INVALID_ARGUMENT otherwise, before the disk is looked at), and a version resolves inside the
  repository or is refused; no answer names a path outside the repository.

Loading a version: its files are verified against the manifest's sha256, both graphs are
loaded and warmed (``load_model``, in a thread, while the old versions keep serving), and
only then does it join the lookup, in one assignment, so "latest" moves to it atomically.
A version that fails (corrupt, half-copied, wrong shapes) is refused with one log line and
``latentdial_model_load_failures_total``; whatever was served keeps serving.

Unloading a version: it leaves the lookup at once (state DRAINING), the requests that
already resolved it finish on it, then its batchers and runtimes close. Every step is
visible in ``ListModels`` (``version_status``) and in the health service (readiness,
``model/<name>``, ``model/<name>/<version>``) through ``on_change``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from latentdial.manifest import MANIFEST_NAME, iter_model_dirs
from latentdial.serving.config import ServerConfig
from latentdial.serving.engine import Engine
from latentdial.serving.errors import FailedPrecondition, InvalidArgument, NotFound
from latentdial.serving.metrics import ServiceMetrics
from latentdial.serving.repository import (
    FAILED,
    LOADING,
    LoadedModel,
    VersionStatus,
    check_name,
    inside,
    load_model,
    public_reason,
    version_key,
)

log = logging.getLogger(__name__)

#: The longest an unload waits for the requests that hold a version (or grace_s, if longer).
DRAIN_TIMEOUT_S = 30.0

Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(path: Path) -> Fingerprint | None:
    """(relative path, size, mtime) of every file under a version directory; None while it changes under us."""
    try:
        return tuple(sorted(
            (str(p.relative_to(path)), st.st_size, st.st_mtime_ns)
            for p in path.rglob("*") if p.is_file() and (st := p.stat())
        ))
    except FileNotFoundError:
        return None


class ModelControl:
    """Loads and unloads model versions of a running :class:`Engine` (one change at a time)."""

    def __init__(self, engine: Engine, config: ServerConfig, metrics: ServiceMetrics,
                 on_change: Callable[[], Awaitable[None]]) -> None:
        self.engine = engine
        self.config = config
        self.metrics = metrics
        self.root = Path(config.repository)
        self.mode = config.model_control
        self._on_change = on_change
        self._lock = asyncio.Lock()
        #: what each version directory looked like when it was last tried (loaded or refused)
        self._tried: dict[tuple[str, str], Fingerprint | None] = {}
        #: poll: what a new or changed directory looked like one scan ago (tried once unchanged)
        self._candidates: dict[tuple[str, str], Fingerprint] = {}
        self._task: asyncio.Task | None = None
        for name, version, path in iter_model_dirs(self.root):  # start-up loaded or refused these
            self._tried[(name, version)] = fingerprint(path)

    @property
    def drain_timeout_s(self) -> float:
        return max(DRAIN_TIMEOUT_S, float(self.config.grace_s))

    # ----------------------------------------------------------- admin calls
    async def load(self, name: str, version: str = "") -> LoadedModel:
        """Verify, load, warm and serve ``name/version`` (empty: the newest version directory).

        NotFound without such a directory, FailedPrecondition when it is refused (the reason
        is in the message); a version already served is returned as it is.
        """
        if not name:
            raise InvalidArgument("name the model to load (model.name)")
        check_name(name, "model.name")
        if version:
            check_name(version, "model.version")
        async with self._lock:
            version = version or self._newest_on_disk(name)
            path = self.root / name / version
            if not inside(path, self.root):  # a symlink that leaves the repository: never followed
                raise FailedPrecondition(f"model {name}/{version} was refused: its directory resolves outside "
                                         "the repository (a symlink?)")
            if not (path / MANIFEST_NAME).is_file():
                raise NotFound(f"model {name}/{version} is not in the repository: {name}/{version}/{MANIFEST_NAME} "
                               "does not exist; copy the version there first")
            self._tried[(name, version)] = fingerprint(path)
            return await self._load(name, version, path)

    async def unload(self, name: str, version: str = "") -> list[str]:
        """Stop serving ``name/version`` (empty: every version of ``name``) after its requests finish."""
        if not name:
            raise InvalidArgument("name the model to unload (model.name)")
        check_name(name, "model.name")
        if version:
            check_name(version, "model.version")
        async with self._lock:
            repo = self.engine.repository
            assert repo is not None
            if name not in repo.models:
                raise NotFound(f"model {name!r} is not served; served models: {repo.names()}")
            versions = [version] if version else repo.versions(name)
            repo.get(name, versions[0])  # NotFound lists the served versions
            for v in versions:
                await self._unload(name, v)
            return versions

    # ------------------------------------------------------------------ poll
    async def sync(self) -> None:
        """One scan: unload versions whose directory is gone, load new ones whose files stopped changing."""
        async with self._lock:
            repo = self.engine.repository
            assert repo is not None
            on_disk = {(n, v): p for n, v, p in iter_model_dirs(self.root)} if self.root.is_dir() else {}
            for m in repo.all():
                if (m.name, m.version) not in on_disk:
                    await self._unload(m.name, m.version)
            for key in [k for k in self._candidates if k not in on_disk]:
                del self._candidates[key]
            for key in [k for k in self._tried if k not in on_disk]:
                del self._tried[key]
                self._candidates.pop(key, None)
                if key in repo.pending and repo.pending[key].state == FAILED:
                    repo.set_status(*key, None)
                    await self._on_change()
            served = {(m.name, m.version) for m in repo.all()}
            for key, path in sorted(on_disk.items(), key=lambda kv: (kv[0][0], version_key(kv[0][1]))):
                if key in served:
                    continue
                fp = fingerprint(path)
                if fp is None or fp == self._tried.get(key):
                    continue  # changing right now, or refused before and unchanged since
                if self._candidates.get(key) != fp:
                    self._candidates[key] = fp  # new or still changing: try once it holds still
                    continue
                del self._candidates[key]
                self._tried[key] = fp
                try:
                    await self._load(*key, path)
                except FailedPrecondition:
                    pass  # logged and counted; the previous versions keep serving

    def start_polling(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._poll_forever(), name="model-control-poll")

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.poll_interval_s)
            try:
                await self.sync()
            except Exception:  # noqa: BLE001 - a failed scan must not stop the next one
                log.exception("scanning %s for model changes failed; trying again in %.1f s",
                              self.root, self.config.poll_interval_s)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    # -------------------------------------------------------------- internal
    def _newest_on_disk(self, name: str) -> str:
        versions = [v for n, v, _ in iter_model_dirs(self.root) if n == name]
        if not versions:
            raise NotFound(f"no version of model {name!r} in the repository; expected "
                           f"{name}/<version>/{MANIFEST_NAME} in it")
        return max(versions, key=version_key)

    async def _load(self, name: str, version: str, path: Path) -> LoadedModel:
        repo = self.engine.repository
        assert repo is not None
        if name in repo.models and version in repo.models[name]:
            return repo.models[name][version]
        repo.set_status(name, version, VersionStatus(LOADING))
        await self._on_change()
        c = self.config
        try:
            m = await asyncio.get_running_loop().run_in_executor(
                None, lambda: load_model(path, name, version, runtime=c.runtime, max_batch_size=c.max_batch_size,
                                         root=self.root))
        except Exception as e:  # noqa: BLE001 - any failure refuses this version only
            detail = str(e).replace("\n", " ")  # the operator's log keeps the paths
            reason = public_reason(detail, self.root)  # what clients see: no path outside the repository
            serving = repo.versions(name) if name in repo.models else []
            log.error("refused model %s/%s: %s; still serving %s", name, version, detail,
                      [f"{name}/{v}" for v in serving] or "no version of it")
            self.metrics.model_load_failures.labels(name).inc()
            repo.set_status(name, version, VersionStatus(FAILED, reason))
            await self._on_change()
            raise FailedPrecondition(f"model {name}/{version} was refused: {reason}") from None
        self.engine.add(m)
        log.info("serving %s/%s on %s; latest %s is %s/%s", name, version, m.describe(), name, name,
                 repo.versions(name)[-1])
        await self._on_change()
        return m

    async def _unload(self, name: str, version: str) -> None:
        self.engine.retire(name, version)
        log.info("unloading %s/%s: draining its in-flight requests", name, version)
        await self._on_change()
        await self.engine.close_retired(name, version, timeout_s=self.drain_timeout_s)
        log.info("unloaded %s/%s", name, version)
        await self._on_change()
