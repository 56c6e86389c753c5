"""Dynamic batching: merge concurrent requests into one runtime call (after Ray Serve's batcher).

One :class:`DynamicBatcher` serves one (model version, graph). Every request is
split into chunks of at most ``max_batch_size`` items; each chunk waits in a
bounded queue with its own future. One batch runs at a time per queue, always
with at least one chunk.

Adaptive (the default): a request that finds the runtime idle and the queue
empty runs at once, in its own coroutine, with no wait and no hand-over to the
worker task; requests that arrive while a batch runs queue up, and the worker
dispatches all of them (up to ``max_batch_size`` items) the moment that batch
returns. Batches therefore grow with the load and a lone caller pays nothing
for batching. With ``adaptive=False`` the worker also waits for company until
the queue fills a batch or the oldest chunk has waited ``max_queue_delay``
(bigger batches for deployments that trade latency for throughput; chunks that
queued while the previous batch ran have already waited and go at once).

Chunks whose deadline has passed are failed before compute. The runtime call
runs in a runtime thread so the event loop keeps accepting requests, except a
lone single-item call whose recent calls took less than ``INLINE_BELOW_S``
(the hop to a thread and back would cost the loop more than the call); its
outputs must have the batch's length, and an exception reaches every future of that
batch (and no other). ``close()`` fails whatever still waits.

With ``enabled=False`` every request runs alone (still split into chunks), which
is the baseline of the batching benchmark.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from latentdial.serving.errors import DeadlineExceeded, Internal, ResourceExhausted, Unavailable
from latentdial.serving.runtime_threads import CallCancelled, RuntimeThreads

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]
RunFn = Callable[[Arrays], Arrays]
#: Called after every runtime call with (batch size, seconds the oldest chunk waited).
BatchObserver = Callable[[int, float], None]


@dataclass
class _Chunk:
    inputs: Arrays  # name -> (n, ...)
    n: int
    future: asyncio.Future
    deadline: float | None  # loop.time() after which the result is useless
    enqueued: float = field(default=0.0)


class BatchOutputError(Internal):
    """The runtime returned outputs whose batch does not match its inputs."""


class DynamicBatcher:
    """Queue + worker for one graph of one model version."""

    def __init__(
        self,
        run: RunFn,
        *,
        name: str,
        max_batch_size: int = 64,
        max_queue_delay_s: float = 0.002,
        max_queue_size: int = 1024,
        enabled: bool = True,
        adaptive: bool = True,
        executor: RuntimeThreads | None = None,
        observer: BatchObserver | None = None,
    ) -> None:
        if max_batch_size < 1 or max_queue_size < 1:
            raise ValueError("max_batch_size and max_queue_size must be >= 1")
        self.name = name
        self.max_batch_size = int(max_batch_size)
        self.max_queue_delay_s = float(max_queue_delay_s)
        self.max_queue_size = int(max_queue_size)
        self.enabled = enabled
        self.adaptive = adaptive
        self._run = run
        self._executor = executor
        self._observer = observer
        self._queue: collections.deque[_Chunk] = collections.deque()
        self._queued_items = 0
        self._waiter: asyncio.Future | None = None  # set while the worker is parked
        self._busy = False  # a batch is running (one at a time per queue)
        self._single_call_s = float("inf")  # moving average of single-item calls; unknown at first
        self._worker: asyncio.Task | None = None
        self._closed = False

    # ----------------------------------------------------------------- public
    @property
    def queued_items(self) -> int:
        return self._queued_items

    async def submit(self, inputs: Arrays, *, deadline: float | None = None) -> Arrays:
        """Run ``inputs`` (name -> (N, ...)) through the graph; returns name -> (N, ...).

        deadline: ``loop.time()`` value after which the caller has given up.
        Raises ResourceExhausted (queue full), DeadlineExceeded, Unavailable (closed), Internal.
        """
        if self._closed:
            raise Unavailable(f"{self.name}: the server is shutting down; retry on another replica")
        n = _batch_len(inputs)
        starts = range(0, n, self.max_batch_size)
        if not self.enabled:
            parts = [await self._run_alone(_slice(inputs, s, min(s + self.max_batch_size, n))) for s in starts]
            return _concat(parts)
        if self._queued_items + n > self.max_queue_size:
            raise ResourceExhausted(
                f"{self.name}: queue holds {self._queued_items} of {self.max_queue_size} items and this request "
                f"adds {n}; retry later with backoff or send smaller requests"
            )
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self.adaptive and not self._busy and not self._queue and n <= self.max_batch_size:
            return await self._run_now(inputs, n, deadline, now)
        self._ensure_worker(loop)
        futures = []
        for s in starts:
            chunk = _Chunk(_slice(inputs, s, min(s + self.max_batch_size, n)), 0, loop.create_future(), deadline, now)
            chunk.n = min(s + self.max_batch_size, n) - s
            self._queue.append(chunk)
            self._queued_items += chunk.n
            futures.append(chunk.future)
        waiter = self._waiter
        if waiter is not None and not self._busy and (
            self.adaptive or len(self._queue) == len(futures) or self._queued_items >= self.max_batch_size
        ):
            _wake(waiter)  # the runtime is idle (adaptive), or the worker was idle, or a full batch waits
        try:
            parts = [await f for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()  # the worker skips cancelled chunks
            raise
        return _concat(parts)

    async def close(self) -> None:
        """Stop the worker and fail every waiting chunk with UNAVAILABLE."""
        self._closed = True
        while self._queue:
            chunk = self._queue.popleft()
            self._queued_items -= chunk.n
            if not chunk.future.done():
                chunk.future.set_exception(Unavailable(f"{self.name}: the server shut down before this request ran"))
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None

    # --------------------------------------------------------------- internal
    def _ensure_worker(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._loop(), name=f"batcher:{self.name}")

    async def _run_alone(self, inputs: Arrays) -> Arrays:
        t0 = time.perf_counter()
        out = await self._in_thread(inputs, holds_runtime=False)
        n = _batch_len(inputs)
        _check_outputs(self.name, out, n)
        if self._observer:
            self._observer(n, 0.0)
        log.debug("%s ran %d items unbatched in %.2f ms", self.name, n, 1e3 * (time.perf_counter() - t0))
        return out

    async def _run_now(self, inputs: Arrays, n: int, deadline: float | None, now: float) -> Arrays:
        """Run one chunk at once on an idle runtime (adaptive mode); what queues meanwhile waits for it.

        A single item whose recent calls took less than :data:`INLINE_BELOW_S` runs on the event
        loop itself; anything else goes to a runtime thread.
        """
        if deadline is not None and now >= deadline:
            raise DeadlineExceeded(f"{self.name}: the deadline passed before the request could run")
        if n == 1 and self._single_call_s < INLINE_BELOW_S:
            t0 = time.perf_counter()
            out = self._run(inputs)
            self._note_single_call(time.perf_counter() - t0)
        else:
            self._busy = True
            out = await self._in_thread(inputs, holds_runtime=True, timed=n == 1)
        _check_outputs(self.name, out, n)
        if self._observer:
            self._observer(n, 0.0)
        return out

    def _note_single_call(self, seconds: float) -> None:
        """Fold one single-item call's duration into the moving average that decides inlining."""
        s = self._single_call_s
        self._single_call_s = seconds if s == float("inf") else s + _SMOOTHING * (seconds - s)

    def _timed_run(self, inputs: Arrays) -> tuple[Arrays, float]:
        t0 = time.perf_counter()
        out = self._run(inputs)
        return out, time.perf_counter() - t0

    def _in_thread(self, inputs: Arrays, *, holds_runtime: bool, timed: bool = False) -> asyncio.Future:
        """Run the graph on ``inputs`` in a runtime thread; the future completes on the loop once it returns.

        One hop each way and one future (no ``run_in_executor`` wrapper, no shield): a caller
        that gives up cancels only its future, so with ``holds_runtime`` the runtime is marked
        free when the thread has really returned, never earlier. ``timed``: the call's duration
        feeds the single-item average (see :meth:`_run_now`).
        """
        loop = asyncio.get_running_loop()
        result = loop.create_future()

        def settle(out: Arrays | None, exc: BaseException | None) -> None:  # on the loop
            if holds_runtime:
                self._batch_done()
            if result.done():  # its caller gave up
                return
            if isinstance(exc, CallCancelled):
                result.set_exception(Unavailable(f"{self.name}: the server shut down before this request ran"))
            elif exc is not None:
                result.set_exception(exc)
            elif timed:
                self._note_single_call(out[1])
                result.set_result(out[0])
            else:
                result.set_result(out)

        def back_to_loop(out: Arrays | None, exc: BaseException | None) -> None:  # in the runtime thread
            try:
                loop.call_soon_threadsafe(settle, out, exc)
            except RuntimeError:  # the loop closed meanwhile: nobody is waiting any more
                pass

        run = self._timed_run if timed else self._run
        (self._executor or _default_threads()).submit(run, inputs, back_to_loop)
        return result

    def _batch_done(self) -> None:
        """The running batch returned: the worker dispatches whatever queued meanwhile."""
        self._busy = False
        if self._queue and self._waiter is not None:
            _wake(self._waiter)

    async def _sleep_until_woken(self, timeout_s: float | None) -> None:
        """Park the worker until submit() wakes it (first item, or a full batch) or the timeout passes."""
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(timeout_s, _wake, waiter) if timeout_s is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    async def _collect(self) -> list[_Chunk]:
        """Wait for a first chunk and an idle runtime; without ``adaptive``, then for company until
        full or the oldest chunk has waited max delay.

        The delay counts from the oldest chunk's arrival: chunks that queued while the previous
        batch ran have already waited and go at once. One timer per batch, not per item.
        """
        loop = asyncio.get_running_loop()
        while not self._queue or self._busy:
            await self._sleep_until_woken(None)
        if not self.adaptive and self._queued_items < self.max_batch_size:
            remaining = self._queue[0].enqueued + self.max_queue_delay_s - loop.time()
            if remaining > 0:
                await self._sleep_until_woken(remaining)
        batch = [self._queue.popleft()]
        size = batch[0].n
        while self._queue and size + self._queue[0].n <= self.max_batch_size:
            chunk = self._queue.popleft()
            batch.append(chunk)
            size += chunk.n
        self._queued_items -= size
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            now = loop.time()
            live = []
            for chunk in batch:
                if chunk.future.done():  # cancelled by its caller
                    continue
                if chunk.deadline is not None and now >= chunk.deadline:
                    chunk.future.set_exception(
                        DeadlineExceeded(f"{self.name}: the deadline passed while the request was queued")
                    )
                    continue
                live.append(chunk)
            if not live:
                continue
            await self._dispatch(live, now)

    async def _dispatch(self, live: list[_Chunk], now: float) -> None:
        inputs = live[0].inputs if len(live) == 1 else _concat([c.inputs for c in live])
        total = sum(c.n for c in live)
        waited = now - min(c.enqueued for c in live)
        self._busy = True
        try:
            out = await self._in_thread(inputs, holds_runtime=True)
            _check_outputs(self.name, out, total)
        except asyncio.CancelledError:
            for c in live:
                if not c.future.done():
                    c.future.set_exception(Unavailable(f"{self.name}: the server shut down while this request ran"))
            raise
        except Exception as e:  # noqa: BLE001 - every error reaches every future of the batch
            for c in live:
                if not c.future.done():
                    c.future.set_exception(e)
            return
        if self._observer:
            self._observer(total, waited)
        start = 0
        for c in live:
            if not c.future.done():
                c.future.set_result({k: v[start : start + c.n] for k, v in out.items()})
            start += c.n


#: A single-item call on an idle runtime whose recent calls took less than this runs on the event
#: loop itself: handing it to a runtime thread and back (a queue put, a thread wake-up, a
#: call_soon_threadsafe) costs the loop more than the call. ONNX Runtime's batch-1 call of a
#: small linear graph takes tens of microseconds; a convolutional encoder's about a millisecond.
INLINE_BELOW_S = 50e-6
_SMOOTHING = 0.2  # weight of the newest call in the moving average

_DEFAULT_THREADS: RuntimeThreads | None = None


def _default_threads() -> RuntimeThreads:
    """The runtime threads of batchers created without their own (the service always passes its own)."""
    global _DEFAULT_THREADS
    if _DEFAULT_THREADS is None:
        _DEFAULT_THREADS = RuntimeThreads(4, "batcher")
    return _DEFAULT_THREADS


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _batch_len(arrays: Arrays) -> int:
    lens = {len(v) for v in arrays.values()}
    if len(lens) != 1:
        raise ValueError(f"inputs disagree on the batch size: { {k: len(v) for k, v in arrays.items()} }")
    return lens.pop()


def _slice(arrays: Arrays, start: int, stop: int) -> Arrays:
    if start == 0 and stop == _batch_len(arrays):
        return arrays
    return {k: v[start:stop] for k, v in arrays.items()}


def _concat(parts: list[Arrays]) -> Arrays:
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _check_outputs(name: str, out: Arrays, n: int) -> None:
    bad = {k: getattr(v, "shape", None) for k, v in out.items() if getattr(v, "shape", (None,))[:1] != (n,)}
    if bad or not out:
        raise BatchOutputError(f"{name}: runtime returned outputs {bad or 'none'} for a batch of {n}")
