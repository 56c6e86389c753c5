"""The engine under every front door: served models, batchers, limits, readiness, and each request's frame.

The front doors (gRPC v1 :mod:`service`, OIP gRPC :mod:`oip_grpc`, the HTTP routes of
:mod:`latentdial.serving.http`) are adapters: they translate their wire format into the typed
requests of :mod:`requests`, call :mod:`dataplane` inside :meth:`Engine.call` and write the typed
results back. The engine owns what they share, so an OIP call and a v1 call of the same graph
wait in the same queue and are merged into one batch:

- one :class:`ServedModel` per model version (the loaded model and a batcher per graph of its kind),
  and the rule of which calls each kind serves (:func:`check_serves`);
- the limits (``max_request_items``, ``max_in_flight``) and the readiness / drain state;
- :meth:`Engine.call`, which wraps every request of every door: request id, metrics,
  readiness, the cap on requests in flight, the request's deadline (:meth:`deadline_after`,
  the one rule that turns a door's timeout into it), and turning an unexpected exception into
  :class:`Internal` with a request id;
- the graph calls on numpy (:meth:`encode`, :meth:`decode`, :meth:`run_graph`) through the batchers;
- live changes of the served set (:mod:`model_control`): a version resolved by a request is
  held until that request ends, :meth:`Engine.add` serves a warm version at once, and
  :meth:`Engine.retire` stops resolving one and :meth:`Engine.close_retired` closes it once the
  requests that hold it have ended.

Shapes: images enter as (N, C, H, W) float32 in [0, 1] (already validated by :mod:`codec`) and
leave as (N, C, H, W) float32; latents are (N, D) float32. No wire format is known here.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentdial.manifest import GRAPHS_OF_KIND
from latentdial.serving.batcher import Arrays, DynamicBatcher
from latentdial.serving.config import ServerConfig
from latentdial.serving.errors import (
    DeadlineExceeded,
    ErrorKind,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    Overloaded,
    ServiceError,
    Unavailable,
)
from latentdial.serving.metrics import ServiceMetrics
from latentdial.serving.repository import (
    DRAINING,
    KIND_DESCRIPTIONS,
    LoadedModel,
    ModelRepository,
    VersionStatus,
)
from latentdial.serving.runtime_threads import RuntimeThreads
from latentdial.serving.runtimes import Runtime
from latentdial.serving.structured_log import request_id

log = logging.getLogger(__name__)

#: the graphs of a VAE (the default kind); ``latentdial.manifest.GRAPHS_OF_KIND`` has every kind's
GRAPHS = GRAPHS_OF_KIND["vae"]
#: The domain calls a model of each kind serves; a kind that is not listed serves them all. An editor
#: (StarGAN, Choi et al. 2018) has no latent space: it reads an image's factor codes with its
#: classifier and redraws the image with target codes, so it edits attributes of images, shows its
#: information and draws images of its dataset, and nothing that needs latents.
KIND_CALLS: dict[str, frozenset[str]] = {
    "editor": frozenset({"GetModelInfo", "EditAttributes", "Samples", "oip.classifier", "oip.editor"}),
}


def check_serves(m: LoadedModel, call: str) -> None:
    """FailedPrecondition, saying why, when a model of ``m``'s kind does not serve ``call``
    (a v1 call's name, "Samples", or "oip.<graph>"). The one rule of every door, asked before any work."""
    allowed = KIND_CALLS.get(m.kind)
    if allowed is None or call in allowed:
        return
    shown = call.removeprefix("oip.")
    what = f"the OIP model {m.name}.{shown}" if call.startswith("oip.") else call
    serves = (f"its OIP models are {', '.join(f'{m.name}.{g}' for g in m.graphs)}" if call.startswith("oip.")
              else "EditAttributes is (on images)")
    raise FailedPrecondition(
        f"model {m.name}/{m.version} is {KIND_DESCRIPTIONS[m.kind]}: it has no latent space, so {what} is not "
        f"served; {serves}"
    )


@dataclass(frozen=True)
class ServedModel:
    """One served model version: the loaded model and the batcher each of its graphs runs through."""

    model: LoadedModel
    #: graph -> its batcher, one per graph of the model's kind
    batchers: dict[str, DynamicBatcher]

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def kind(self) -> str:
        return self.model.kind

    @property
    def encoder(self) -> DynamicBatcher:
        return self.batcher("encoder")

    @property
    def decoder(self) -> DynamicBatcher:
        return self.batcher("decoder")

    def serves(self, call: str) -> ServedModel:
        """This model when its kind serves ``call``; FailedPrecondition saying why not (:func:`check_serves`)."""
        check_serves(self.model, call)
        return self

    def batcher(self, graph: str) -> DynamicBatcher:
        """The batcher of ``graph`` ("encoder" or "decoder"; "classifier" or "editor" for an editor)."""
        found = self.batchers.get(graph)
        if found is None:
            check_serves(self.model, f"oip.{graph}")  # another kind's graph: FailedPrecondition, saying why
            raise InvalidArgument(f"unknown graph {graph!r}; use one of {list(self.batchers)}")
        return found

    def runtime(self, graph: str) -> Runtime:
        """The runtime behind ``graph``; its ``run`` is looked up at every batch."""
        return self.model.runtime(graph)


#: The current request's deadline as ``loop.time()`` (set by :meth:`Engine.call`); None outside a request.
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("request_deadline", default=None)

#: The model versions the current request resolved (and holds until it ends); None outside a request.
_held: contextvars.ContextVar[list[tuple[str, str]] | None] = contextvars.ContextVar("held_versions", default=None)

_ID_PREFIX = uuid.uuid4().hex[:8]
_ID_COUNTER = itertools.count(1)


def new_request_id(given: str | None = None) -> str:
    """The caller's request id (cut to 64 characters), or a new one unique to this process."""
    if given:
        return given[:64]
    return f"{_ID_PREFIX}-{next(_ID_COUNTER)}"


def current_deadline() -> float | None:
    """The deadline (``loop.time()``) of the request being handled, as :meth:`Engine.call` set it."""
    return _deadline.get()


def _run_graph(runtime: Runtime, inputs: Arrays) -> Arrays:
    return runtime.run(inputs)


class Engine:
    """The repository, a batcher per (model version, graph), the runtime threads that run the graphs."""

    def __init__(self, config: ServerConfig, metrics: ServiceMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or ServiceMetrics()
        self.repository: ModelRepository | None = None
        #: graph calls of the batchers only (a queue and a callback per call: the request path)
        self.runtime_threads = RuntimeThreads(4, "runtime")
        self.draining = False
        #: requests inside :meth:`call` now, over every front door (bounded by ``max_in_flight``)
        self.in_flight = 0
        self._served: dict[tuple[str, str], ServedModel] = {}
        #: (name, version) -> requests holding it; an Event per version being removed
        self._holders: collections.Counter[tuple[str, str]] = collections.Counter()
        self._released: dict[tuple[str, str], asyncio.Event] = {}
        #: set by the server when a model-control mode is on (see serving/model_control.py)
        self.control = None

    # -------------------------------------------------------------- lifecycle
    async def load(self) -> ModelRepository:
        """Load and warm every model (in a thread), then give each version a batcher per graph."""
        c = self.config
        repo = await asyncio.get_running_loop().run_in_executor(
            None,
            functools.partial(
                ModelRepository.load, Path(c.repository), runtime=c.runtime, max_batch_size=c.max_batch_size,
                default_model=c.default_model,
            ),
        )
        for m in repo.all():
            self._served[(m.name, m.version)] = self._serve(m)
        self.repository = repo
        return repo

    def _serve(self, m: LoadedModel) -> ServedModel:
        return ServedModel(m, {g: self._batcher(m, g) for g in m.graphs})

    def add(self, m: LoadedModel) -> ServedModel:
        """Serve a loaded, warm version from now on (its batchers first, then the lookup)."""
        assert self.repository is not None
        s = self._served[(m.name, m.version)] = self._serve(m)
        self.repository.add(m)
        return s

    def retire(self, name: str, version: str) -> None:
        """Stop resolving ``name/version`` (state DRAINING); requests that hold it go on. NotFound if not served."""
        assert self.repository is not None
        self.repository.get(name, version)  # NotFound with what exists
        self.repository.remove(name, version)
        self.repository.set_status(name, version, VersionStatus(DRAINING))

    async def close_retired(self, name: str, version: str, *, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) for the requests that hold a retired version, then close it."""
        assert self.repository is not None
        key = (name, version)
        released = self._released[key] = asyncio.Event()
        if self._holders[key] == 0:
            released.set()
        try:
            await asyncio.wait_for(released.wait(), timeout_s)
        except TimeoutError:
            log.warning("%s/%s: %d request(s) still running after %.0f s of draining; closing it anyway",
                        name, version, self._holders[key], timeout_s)
        finally:
            del self._released[key]
        s = self._served.pop(key)
        for b in s.batchers.values():
            await b.close()
        s.model.close()
        self.repository.set_status(name, version, None)

    def _release(self, held: list[tuple[str, str]]) -> None:
        for key in held:
            self._holders[key] -= 1
            if self._holders[key] <= 0:
                del self._holders[key]
                if key in self._released:
                    self._released[key].set()

    def _batcher(self, m: LoadedModel, graph: str) -> DynamicBatcher:
        c = self.config
        runtime = m.runtime(graph)
        return DynamicBatcher(
            functools.partial(_run_graph, runtime),
            name=f"{m.name}/{m.version}/{graph}",
            max_batch_size=m.max_batch[graph],
            max_queue_delay_s=c.max_queue_delay_ms / 1e3,
            max_queue_size=c.max_queue_size,
            enabled=c.batching,
            adaptive=c.adaptive_batching,
            executor=self.runtime_threads,
            observer=self.metrics.batch_observer(f"{m.name}/{m.version}", graph),
        )

    @property
    def ready(self) -> bool:
        """True once models are loaded and warm and one at least is servable, until draining starts."""
        return self.repository is not None and bool(self.repository.models) and not self.draining

    async def close(self) -> None:
        """Fail whatever still waits, release the runtimes and the runtime threads."""
        self.draining = True
        for s in self._served.values():
            for b in s.batchers.values():
                await b.close()
        if self.repository is not None:
            self.repository.close()
        self.runtime_threads.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------- request wrapper
    def deadline_after(self, timeout_s: float | None, *, capped: bool = False) -> float:
        """The ``loop.time()`` deadline of a request that asked for ``timeout_s`` seconds: the one rule of
        every door. None: the server's ``request_timeout_s``; ``capped`` (a timeout the caller wrote in a
        header, HTTP's ``X-Request-Timeout``): at most ``request_timeout_s``. A gRPC caller's own deadline
        is its channel's business and is kept as it is."""
        default = self.config.request_timeout_s
        t = default if timeout_s is None else min(timeout_s, default) if capped else timeout_s
        return asyncio.get_running_loop().time() + t

    @contextlib.asynccontextmanager
    async def call(self, name: str, rid: str, *, admit_while_draining: bool = True,
                   deadline: float | None = None,
                   before_admission: Callable[[], Awaitable[None]] | None = None) -> AsyncIterator[None]:
        """Wrap one request of any front door: request id, metrics, readiness, the in-flight cap, the
        deadline, error classification.

        Raises :class:`ServiceError` subclasses only (plus CancelledError): an unexpected
        exception is logged with the request id and re-raised as :class:`Internal` without the trace.
        ``admit_while_draining=False`` refuses new work once draining started (HTTP, whose server
        does not refuse new calls by itself); gRPC lets its own server refuse them. A request beyond
        ``max_in_flight`` is refused at once with :class:`Overloaded` (RESOURCE_EXHAUSTED, HTTP 429).
        ``deadline`` (``loop.time()``) bounds the whole body: past it the request ends with
        :class:`DeadlineExceeded`; the domain calls read it with :func:`current_deadline`.
        ``before_admission`` runs inside the frame (request id, metrics, readiness) but before the
        request takes its slot of ``max_in_flight``: what only the client's pace bounds (HTTP's body
        arriving) must not hold a slot, or slow clients would refuse everyone else.
        """
        token = request_id.set(rid)
        held: list[tuple[str, str]] = []
        held_token = _held.set(held)
        deadline_token = _deadline.set(deadline)
        m = self.metrics
        requests, latency = m.rpc_children(name)
        requests.inc()
        m.in_flight.inc()
        t0 = time.perf_counter()
        code = None
        admitted = False
        try:
            if self.repository is None:
                raise Unavailable("the server is still loading models; retry shortly")
            if self.draining and not admit_while_draining:
                raise Unavailable("the server is draining; retry on another replica")
            if before_admission is not None:
                await before_admission()
            cap = self.config.max_in_flight
            if self.in_flight >= cap:
                raise Overloaded(
                    f"the server is handling {self.in_flight} requests, its limit (max_in_flight={cap}); "
                    "retry shortly or on another replica"
                )
            self.in_flight += 1
            admitted = True
            if deadline is None:
                yield
            else:
                try:
                    async with asyncio.timeout_at(deadline):
                        yield
                except TimeoutError:
                    raise DeadlineExceeded(f"{name}: the request's deadline passed before it finished") from None
        except ServiceError as e:
            code = e.kind
            if code is ErrorKind.INTERNAL:
                log.error("%s -> INTERNAL (request id %s): %s", name, rid, e.message)
            else:
                log.debug("%s -> %s: %s", name, code.name, e.message)
            raise
        except asyncio.CancelledError:
            code = ErrorKind.CANCELLED
            raise
        except Exception as e:
            log.exception("%s failed (request id %s)", name, rid)
            code = ErrorKind.INTERNAL
            raise Internal(f"internal error in {name} (request id {rid}); the server log has the details") from e
        finally:
            if admitted:
                self.in_flight -= 1
            m.in_flight.dec()
            latency.observe(time.perf_counter() - t0)
            if code is not None:
                m.failures.labels(name, code.name).inc()
            request_id.reset(token)
            _held.reset(held_token)
            _deadline.reset(deadline_token)
            if held:
                self._release(held)

    # ---------------------------------------------------------------- models
    def served(self, name: str = "", version: str = "") -> ServedModel:
        """Resolve a model reference (empty = default model, newest version); NotFound lists what exists."""
        if self.repository is None:
            raise Unavailable("the server is still loading models; retry shortly")
        m = self.repository.get(name, version)
        key = (m.name, m.version)
        held = _held.get()
        if held is not None:  # inside a request: hold the version until the request ends
            self._holders[key] += 1
            held.append(key)
        return self._served[key]

    def all_served(self) -> list[ServedModel]:
        return list(self._served.values())

    @property
    def max_request_items(self) -> int:
        return self.config.max_request_items

    # ------------------------------------------------------------ graph calls
    async def run_graph(self, s: ServedModel, graph: str, inputs: Arrays, deadline: float | None) -> Arrays:
        """Run one graph on validated inputs through its batcher (what OIP ModelInfer calls)."""
        return await s.batcher(graph).submit(inputs, deadline=deadline)

    async def encode(self, s: ServedModel, images: np.ndarray, deadline: float | None) -> tuple[np.ndarray, np.ndarray]:
        """images (N, C, H, W) -> posterior mean, log_var (N, D)."""
        out = await s.encoder.submit({"images": images}, deadline=deadline)
        return out["mean"], out["log_var"]

    async def decode(self, s: ServedModel, z: np.ndarray, deadline: float | None) -> np.ndarray:
        """latents (N, D) -> images (N, C, H, W) float32 in [0, 1]."""
        out = await s.decoder.submit({"latents": np.ascontiguousarray(z, np.float32)}, deadline=deadline)
        return out["images"]

    async def classify(self, s: ServedModel, images: np.ndarray, deadline: float | None) -> np.ndarray:
        """An editor's classifier: images (N, C, H, W) -> factor codes (N, D)."""
        out = await s.batcher("classifier").submit({"images": images}, deadline=deadline)
        return out["codes"]

    async def translate(self, s: ServedModel, images: np.ndarray, codes: np.ndarray,
                        deadline: float | None) -> np.ndarray:
        """An editor's editor graph: images (N, C, H, W) redrawn with target codes (N, D) -> (N, C, H, W).

        Row i of ``images`` and of ``codes`` travel together through the batcher: it splits and
        merges every input of a request at the same rows.
        """
        out = await s.batcher("editor").submit(
            {"images": images, "codes": np.ascontiguousarray(codes, np.float32)}, deadline=deadline)
        (edited,) = out.values()  # its one output, whatever the file names it (repository._warm_editor)
        return edited
