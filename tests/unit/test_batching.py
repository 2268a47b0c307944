"""Adaptive batching: merging under load, splitting large client batches, overload."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np

from services.batching import AdaptiveBatcher, Overloaded


class SlowDouble:
    """A stand-in model that records its batch sizes and takes a little time."""

    def __init__(self, seconds: float = 0.02) -> None:
        self.sizes: list[int] = []
        self.seconds = seconds
        self.lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self.lock:
            self.sizes.append(len(x))
        time.sleep(self.seconds)
        return x * 2


def _run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_are_merged_and_answered_in_order():
    model = SlowDouble()
    batcher = AdaptiveBatcher(model, max_batch_size=16, max_latency_ms=5000)

    async def go():
        requests = [np.full((1, 3), i, dtype="float32") for i in range(40)]
        return requests, await asyncio.gather(*(batcher.submit(r) for r in requests))

    requests, answers = _run(go())
    for request, answer in zip(requests, answers):
        np.testing.assert_array_equal(answer, request * 2)
    assert max(model.sizes) > 1, "concurrent requests should share model calls"
    assert max(model.sizes) <= 16 and sum(model.sizes) == 40


def test_a_large_client_batch_is_split_to_the_limit():
    model = SlowDouble(0)
    batcher = AdaptiveBatcher(model, max_batch_size=64, max_latency_ms=5000)
    x = np.arange(500 * 2, dtype="float32").reshape(500, 2)
    np.testing.assert_array_equal(_run(batcher.submit(x)), x * 2)
    assert max(model.sizes) <= 64 and sum(model.sizes) == 500


def test_batching_off_runs_each_piece_alone():
    model = SlowDouble(0.005)
    batcher = AdaptiveBatcher(model, max_batch_size=8, max_latency_ms=5000, enabled=False)

    async def go():
        return await asyncio.gather(*(batcher.submit(np.ones((1, 1), dtype="float32")) for _ in range(10)))

    _run(go())
    assert model.sizes == [1] * 10


def test_requests_beyond_the_latency_budget_are_refused():
    model = SlowDouble(0.2)
    batcher = AdaptiveBatcher(model, max_batch_size=1, max_latency_ms=50)

    async def go():
        return await asyncio.gather(*(batcher.submit(np.ones((1, 1), dtype="float32")) for _ in range(5)),
                                    return_exceptions=True)

    outcomes = _run(go())
    assert any(isinstance(o, Overloaded) for o in outcomes)
    assert any(isinstance(o, np.ndarray) for o in outcomes)


def test_a_model_failure_reaches_every_waiting_request():
    def broken(x):
        raise RuntimeError("model crashed")

    batcher = AdaptiveBatcher(broken, max_batch_size=8, max_latency_ms=5000)

    async def go():
        return await asyncio.gather(*(batcher.submit(np.ones((1, 1))) for _ in range(3)), return_exceptions=True)

    assert all(isinstance(o, RuntimeError) for o in _run(go()))


def test_requests_submitted_in_one_turn_of_the_loop_share_one_call():
    model = SlowDouble(0)
    batcher = AdaptiveBatcher(model, max_batch_size=64, max_latency_ms=5000)

    async def go():
        return await asyncio.gather(*(batcher.submit(np.full((1, 1), i, dtype="float32")) for i in range(10)))

    answers = _run(go())
    assert model.sizes == [10]
    assert [a.item() for a in answers] == [2.0 * i for i in range(10)]


def test_inline_calls_run_on_the_event_loop_and_still_merge():
    model = SlowDouble(0.002)
    threads = []
    batcher = AdaptiveBatcher(lambda x: threads.append(threading.get_ident()) or model(x), max_batch_size=8,
                              max_latency_ms=5000, inline=True)

    async def go():
        first = [batcher.submit(np.full((1, 2), i, dtype="float32")) for i in range(20)]
        return await asyncio.gather(*first, batcher.submit(np.ones((20, 2), dtype="float32")))

    answers = _run(go())
    for i, answer in enumerate(answers[:20]):
        np.testing.assert_array_equal(answer, np.full((1, 2), 2 * i))
    np.testing.assert_array_equal(answers[20], np.full((20, 2), 2.0))
    assert set(threads) == {threading.get_ident()} and batcher.executor is None
    assert max(model.sizes) == 8 and sum(model.sizes) == 40


def test_inline_without_batching_runs_each_piece_alone_on_the_loop():
    model = SlowDouble(0)
    threads = []
    batcher = AdaptiveBatcher(lambda x: threads.append(threading.get_ident()) or model(x), max_batch_size=4,
                              max_latency_ms=5000, enabled=False, inline=True)

    async def go():
        return await asyncio.gather(*(batcher.submit(np.ones((6, 1), dtype="float32")) for _ in range(3)))

    assert all(a.shape == (6, 1) for a in _run(go()))
    assert model.sizes == [4, 2] * 3 and set(threads) == {threading.get_ident()}


def test_an_inline_model_failure_reaches_every_waiting_request_and_the_next_batch_runs():
    calls = []

    def flaky(x):
        calls.append(len(x))
        if len(calls) == 1:
            raise RuntimeError("model crashed")
        return x

    batcher = AdaptiveBatcher(flaky, max_batch_size=2, max_latency_ms=5000, inline=True)

    async def go():
        requests = asyncio.gather(*(batcher.submit(np.ones((1, 1))) for _ in range(4)), return_exceptions=True)
        return await asyncio.wait_for(requests, 5)

    outcomes = _run(go())
    assert [type(o).__name__ for o in outcomes] == ["RuntimeError", "RuntimeError", "ndarray", "ndarray"]
    assert calls == [2, 2]
