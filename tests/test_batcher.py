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


def test_a_lone_request_is_dispatched_after_the_delay_not_held_forever():
    async def main():
        rec = Recorder()
        b = DynamicBatcher(rec, name="t", max_batch_size=64, max_queue_delay_s=0.01)
        out = await asyncio.wait_for(b.submit(items(0, 1)), 5)
        await b.close()
        return rec, out

    rec, out = asyncio.run(main())
    assert rec.sizes == [1]
    assert out["y"][0, 0] == 0.0


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
