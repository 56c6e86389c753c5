"""Dynamic batcher: merging, splitting, at-least-one, error isolation, bounds, deadlines, shutdown."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from latentdial.serving.batcher import BatchOutputError, DynamicBatcher
from latentdial.serving.errors import DeadlineExceeded, ResourceExhausted, Unavailable


class Recorder:
    """A fake graph y = 2x that records the batch size of every call; can be told to fail or stall."""

    def __init__(self, fail_when=None, delay_s: float = 0.0) -> None:
        self.sizes: list[int] = []
        self.fail_when = fail_when
        self.delay_s = delay_s
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, inputs):
        self.gate.wait(10)
        x = inputs["x"]
        self.sizes.append(len(x))
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail_when is not None and self.fail_when(x):
            raise RuntimeError("graph failed")
        return {"y": 2 * x}


def items(start: int, n: int) -> dict[str, np.ndarray]:
    return {"x": np.arange(start, start + n, dtype=np.float32)[:, None]}


def test_concurrent_requests_are_merged_and_each_gets_its_own_rows():
    async def main():
        rec = Recorder()
        b = DynamicBatcher(rec, name="t", max_batch_size=64, max_queue_delay_s=0.05)
        outs = await asyncio.gather(*[b.submit(items(10 * i, 3)) for i in range(8)])
        await b.close()
        return rec, outs

    rec, outs = asyncio.run(main())
    for i, out in enumerate(outs):
        np.testing.assert_array_equal(out["y"], 2 * items(10 * i, 3)["x"])
    assert sum(rec.sizes) == 24
    assert len(rec.sizes) < 8, f"expected merged batches, got sizes {rec.sizes}"


def test_with_adaptive_off_a_lone_request_waits_the_delay_for_company_but_not_forever():
    async def main():
        rec = Recorder()
        b = DynamicBatcher(rec, name="t", max_batch_size=64, max_queue_delay_s=0.05, adaptive=False)
        t0 = time.perf_counter()
        out = await asyncio.wait_for(b.submit(items(0, 1)), 5)
        waited = time.perf_counter() - t0
        await b.close()
        return rec, out, waited

    rec, out, waited = asyncio.run(main())
    assert rec.sizes == [1]
    assert out["y"][0, 0] == 0.0
    assert waited >= 0.04


def test_adaptive_a_lone_request_on_an_idle_runtime_runs_at_once_without_the_delay():
    async def main():
        rec = Recorder()
        b = DynamicBatcher(rec, name="t", max_batch_size=64, max_queue_delay_s=5.0)
        t0 = time.perf_counter()
        out = await asyncio.wait_for(b.submit(items(3, 1)), 10)
        took = time.perf_counter() - t0
        await b.close()
        return rec, out, took

    rec, out, took = asyncio.run(main())
    assert rec.sizes == [1] and out["y"][0, 0] == 6.0
    assert took < 1.0, f"a lone request waited {took:.3f} s; the delay is 5 s"


def test_adaptive_requests_that_arrive_while_a_batch_runs_go_together_when_it_returns():
    async def main():
        rec = Recorder()
        rec.gate.clear()
        b = DynamicBatcher(rec, name="t", max_batch_size=4, max_queue_delay_s=5.0)
        first = asyncio.ensure_future(b.submit(items(0, 1)))
        await asyncio.sleep(0.02)
        rest = [asyncio.ensure_future(b.submit(items(10 * i, 1))) for i in range(1, 7)]
        await asyncio.sleep(0.02)
        rec.gate.set()
        outs = await asyncio.wait_for(asyncio.gather(first, *rest), 2)  # far below the 5 s delay
        await b.close()
        return rec, outs

    rec, outs = asyncio.run(main())
    assert rec.sizes == [1, 4, 2], rec.sizes  # gathered while the first ran, split at max_batch_size
    for i, out in enumerate(outs):
        assert out["y"][0, 0] == 20.0 * i


class Overlap:
    """A fake graph that records how many calls run at the same time."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.active = 0
        self.most = 0
        self.lock = threading.Lock()

    def __call__(self, inputs):
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
        time.sleep(self.delay_s)
        with self.lock:
            self.active -= 1
        return {"y": 2 * inputs["x"]}


@pytest.mark.parametrize("adaptive", [True, False])
def test_one_batch_runs_at_a_time_even_when_its_caller_gives_up(adaptive):
    async def main():
        graph = Overlap(0.1)
        b = DynamicBatcher(graph, name="t", max_batch_size=2, max_queue_delay_s=0.0, adaptive=adaptive)
        first = asyncio.ensure_future(b.submit(items(0, 1)))
        await asyncio.sleep(0.02)
        first.cancel()  # the graph keeps running in its thread: the runtime is not free yet
        outs = await asyncio.gather(*[b.submit(items(i, 1)) for i in range(5)])
        await b.close()
        return graph, outs

    graph, outs = asyncio.run(main())
    assert graph.most == 1
    assert [o["y"][0, 0] for o in outs] == [2.0 * i for i in range(5)]


def test_a_request_larger_than_max_batch_is_split_and_reassembled_in_order():
    async def main():
        rec = Recorder()
        b = DynamicBatcher(rec, name="t", max_batch_size=4, max_queue_delay_s=0.0)
        out = await b.submit(items(0, 10))
        await b.close()
        return rec, out

    rec, out = asyncio.run(main())
    assert max(rec.sizes) <= 4 and sum(rec.sizes) == 10
    np.testing.assert_array_equal(out["y"][:, 0], 2 * np.arange(10, dtype=np.float32))


def test_batches_never_exceed_max_batch_size():
    async def main():
        rec = Recorder()
        b = DynamicBatcher(rec, name="t", max_batch_size=5, max_queue_delay_s=0.02)
        await asyncio.gather(*[b.submit(items(i, 1 + i % 3)) for i in range(20)])
        await b.close()
        return rec

    rec = asyncio.run(main())
    assert max(rec.sizes) <= 5
    assert sum(rec.sizes) == sum(1 + i % 3 for i in range(20))


def test_an_exception_reaches_every_future_of_its_batch_and_no_other():
    async def main():
        rec = Recorder(fail_when=lambda x: bool((x < 0).any()))
        rec.gate.clear()  # hold the first batch so that the next two requests share one batch
        b = DynamicBatcher(rec, name="t", max_batch_size=64, max_queue_delay_s=0.01)
        first = asyncio.ensure_future(b.submit(items(100, 1)))
        await asyncio.sleep(0.05)
        bad = asyncio.ensure_future(b.submit({"x": -np.ones((1, 1), np.float32)}))
        mate = asyncio.ensure_future(b.submit(items(5, 1)))
        await asyncio.sleep(0.05)
        rec.gate.set()
        res = await asyncio.gather(first, bad, mate, return_exceptions=True)
        later = await b.submit(items(7, 2))
        await b.close()
        return rec, res, later

    rec, (first, bad, mate), later = asyncio.run(main())
    assert rec.sizes[:2] == [1, 2], rec.sizes
    assert first["y"][0, 0] == 200.0
    assert isinstance(bad, RuntimeError) and isinstance(mate, RuntimeError)
    np.testing.assert_array_equal(later["y"][:, 0], [14.0, 16.0])


def test_outputs_with_the_wrong_batch_length_fail_the_batch():
    async def main():
        b = DynamicBatcher(lambda inp: {"y": inp["x"][:1]}, name="t", max_batch_size=8, max_queue_delay_s=0.0)
        with pytest.raises(BatchOutputError, match="batch of 3"):
            await b.submit(items(0, 3))
        await b.close()

    asyncio.run(main())


def test_a_full_queue_answers_resource_exhausted():
    async def main():
        rec = Recorder()
        rec.gate.clear()
        b = DynamicBatcher(rec, name="t", max_batch_size=2, max_queue_delay_s=0.0, max_queue_size=4)
        running = asyncio.ensure_future(b.submit(items(0, 2)))
        await asyncio.sleep(0.05)  # the worker holds this batch; the queue is empty again
        waiting = asyncio.ensure_future(b.submit(items(0, 4)))
        await asyncio.sleep(0.01)
        with pytest.raises(ResourceExhausted, match="queue holds 4 of 4"):
            await b.submit(items(0, 1))
        rec.gate.set()
        await asyncio.gather(running, waiting)
        await b.close()

    asyncio.run(main())


def test_expired_deadlines_are_dropped_before_compute():
    async def main():
        rec = Recorder()
        rec.gate.clear()
        b = DynamicBatcher(rec, name="t", max_batch_size=1, max_queue_delay_s=0.0)
        loop = asyncio.get_running_loop()
        running = asyncio.ensure_future(b.submit(items(0, 1)))
        await asyncio.sleep(0.02)
        late = asyncio.ensure_future(b.submit(items(50, 1), deadline=loop.time() + 0.01))
        await asyncio.sleep(0.05)
        rec.gate.set()
        await running
        with pytest.raises(DeadlineExceeded):
            await late
        await b.close()
        return rec

    rec = asyncio.run(main())
    assert rec.sizes == [1], "the expired item must never reach the graph"


def test_close_fails_pending_futures_instead_of_leaking_them():
    async def main():
        rec = Recorder()
        rec.gate.clear()
        b = DynamicBatcher(rec, name="t", max_batch_size=1, max_queue_delay_s=0.0)
        running = asyncio.ensure_future(b.submit(items(0, 1)))
        await asyncio.sleep(0.02)
        pending = [asyncio.ensure_future(b.submit(items(i, 1))) for i in range(3)]
        await asyncio.sleep(0.01)
        await b.close()
        res = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 5)
        rec.gate.set()
        with pytest.raises(Unavailable):
            await b.submit(items(0, 1))
        await asyncio.gather(running, return_exceptions=True)
        return res

    res = asyncio.run(main())
    assert all(isinstance(r, Unavailable) for r in res), res


def test_batching_off_runs_every_request_alone():
    async def main():
        rec = Recorder()
        b = DynamicBatcher(rec, name="t", max_batch_size=4, enabled=False)
        outs = await asyncio.gather(*[b.submit(items(i, 3)) for i in range(5)], b.submit(items(0, 9)))
        await b.close()
        return rec, outs

    rec, outs = asyncio.run(main())
    assert sorted(rec.sizes) == sorted([3] * 5 + [4, 4, 1])
    np.testing.assert_array_equal(outs[-1]["y"][:, 0], 2 * np.arange(9, dtype=np.float32))


def test_the_event_loop_stays_responsive_while_the_graph_runs():
    async def main():
        b = DynamicBatcher(Recorder(delay_s=0.3), name="t", max_batch_size=4, max_queue_delay_s=0.0)
        job = asyncio.ensure_future(b.submit(items(0, 1)))
        t0 = time.perf_counter()
        await asyncio.sleep(0.01)
        ticked = time.perf_counter() - t0
        await job
        await b.close()
        return ticked

    assert asyncio.run(main()) < 0.2


def test_calls_still_waiting_for_a_runtime_thread_at_shutdown_fail_with_unavailable():
    from latentdial.serving.runtime_threads import RuntimeThreads

    async def main():
        rec = Recorder()
        rec.gate.clear()
        threads = RuntimeThreads(1, "t")
        b = DynamicBatcher(rec, name="t", enabled=False, executor=threads)
        running = asyncio.ensure_future(b.submit(items(1, 1)))
        await asyncio.sleep(0.02)
        waiting = asyncio.ensure_future(b.submit(items(2, 1)))  # queued behind the running call
        await asyncio.sleep(0.02)
        threads.shutdown(wait=False, cancel_futures=True)
        with pytest.raises(Unavailable, match="shut down before this request ran"):
            await asyncio.wait_for(waiting, 5)
        rec.gate.set()
        out = await asyncio.wait_for(running, 5)  # the running call finishes
        with pytest.raises(RuntimeError, match="shut down"):
            threads.submit(len, [], lambda r, e: None)
        return rec, out

    rec, out = asyncio.run(main())
    assert rec.sizes == [1] and out["y"][0, 0] == 2.0


class Where:
    """A fake graph that records the thread of every call and takes ``delay_s``."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.threads: list[int] = []

    def __call__(self, inputs):
        self.threads.append(threading.get_ident())
        if self.delay_s:
            time.sleep(self.delay_s)
        return {"y": 2 * inputs["x"]}


@pytest.mark.parametrize("delay_s, inline", [(0.0, True), (0.002, False)])
def test_a_lone_single_item_runs_on_the_loop_only_when_its_calls_are_cheaper_than_a_thread_hop(delay_s, inline):
    async def main():
        graph = Where(delay_s)
        b = DynamicBatcher(graph, name="t", max_batch_size=8)
        outs = [await b.submit(items(i, 1)) for i in range(20)]
        several = await b.submit(items(0, 3))  # more than one item: always a runtime thread
        await b.close()
        return graph, outs, several

    graph, outs, several = asyncio.run(main())
    loop_thread = threading.get_ident()
    assert graph.threads[0] != loop_thread  # the first call is measured in a thread
    # by the end the moving average has settled (a preempted early call may have run in a thread)
    assert all((t == loop_thread) == inline for t in graph.threads[15:20]), graph.threads
    assert graph.threads[20] != loop_thread
    assert [o["y"][0, 0] for o in outs] == [2.0 * i for i in range(20)]
    np.testing.assert_array_equal(several["y"][:, 0], [0.0, 2.0, 4.0])
