"""The threads that run graph calls: one queue, a few daemon threads, a callback per call.

``concurrent.futures.ThreadPoolExecutor`` builds a Future (a lock and a condition) for
every call and takes a Python-level semaphore to decide whether to start a thread; on the
request path of a small model that was the largest share of the event loop's time that
was ours under load (``benchmarks/profile_service.py``, 64 callers, toy model). Here handing a call over is one
``SimpleQueue.put``, and its outcome comes back through the caller's callback, called in
the runtime thread (the batcher forwards it to the event loop).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

#: done(result, None) after a call returned, done(None, exception) after it raised.
Done = Callable[[Any, BaseException | None], None]


class CallCancelled(Exception):
    """The threads shut down before this call started."""


class RuntimeThreads:
    """``workers`` daemon threads that run ``fn(arg)`` in order of submission."""

    def __init__(self, workers: int = 4, name: str = "runtime") -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
                         for i in range(workers)]
        self._started = False  # the threads start with the first call

    def submit(self, fn: Callable[[Any], Any], arg: Any, done: Done) -> None:
        """Run ``fn(arg)`` in one of the threads, then call ``done`` there with its outcome."""
        if self._closed:
            raise RuntimeError("the runtime threads were shut down")
        if not self._started:
            self._started = True
            for t in self._threads:
                t.start()
        self._queue.put((fn, arg, done))

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, arg, done = item
            try:
                result = fn(arg)
            except BaseException as e:  # noqa: BLE001 - the caller gets every error
                done(None, e)
            else:
                done(result, None)

    def shutdown(self, wait: bool = False, cancel_futures: bool = True) -> None:
        """Stop the threads after the calls already running; pending calls get CallCancelled
        (or still run, with ``cancel_futures=False``). The signature is ThreadPoolExecutor's."""
        self._closed = True
        if cancel_futures:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[2](None, CallCancelled("the server shut down before this call ran"))
        if not self._started:
            return
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for t in self._threads:
                t.join()
