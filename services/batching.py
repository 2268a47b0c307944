"""Adaptive batching inside the service process.

While the model is busy, requests queue up; when it is free, everything
queued (up to ``max_batch_size`` rows) goes in as one batch. Under light load
a request runs at once, alone; under heavy load batches fill by themselves,
so the batch size follows the traffic without a fixed window. A client's own
batch is split into pieces of at most ``max_batch_size`` rows, so a request
of 500 rows never exceeds the limit. A piece that waited longer than
``max_latency_ms`` is refused with ``Overloaded`` instead of growing the queue
without bound.

Keeping the model in the process of the HTTP server avoids a second hop and
a serialisation per request, which on a small CPU costs more than the model.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


class Overloaded(Exception):
    """A request waited in the queue longer than the latency budget."""


@dataclass
class _Pending:
    x: np.ndarray
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)


class AdaptiveBatcher:
    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        max_batch_size: int,
        max_latency_ms: float,
        enabled: bool = True,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.predict, self.max_batch_size, self.enabled = predict, max_batch_size, enabled
        self.max_wait = max_latency_ms / 1000
        self.on_batch = on_batch or (lambda size: None)
        # One thread runs the model: calls never overlap, the event loop stays free.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lockgate-model")
        self.queue: deque[_Pending] = deque()
        self.wake: asyncio.Event | None = None
        self.worker: asyncio.Task | None = None

    async def submit(self, x: np.ndarray) -> np.ndarray:
        pieces = [x[i : i + self.max_batch_size] for i in range(0, len(x), self.max_batch_size)]
        if not self.enabled:
            loop = asyncio.get_running_loop()
            outputs = [await loop.run_in_executor(self.executor, self._run, piece) for piece in pieces]
            return np.concatenate(outputs)
        self._ensure_worker()
        loop = asyncio.get_running_loop()
        futures = []
        for piece in pieces:
            pending = _Pending(piece, loop.create_future())
            self.queue.append(pending)
            futures.append(pending.future)
        self.wake.set()
        return np.concatenate(await asyncio.gather(*futures))

    def _run(self, x: np.ndarray) -> np.ndarray:
        self.on_batch(len(x))
        return self.predict(x)

    def _ensure_worker(self) -> None:
        if self.worker is None or self.worker.done():
            self.wake = asyncio.Event()
            self.worker = asyncio.get_running_loop().create_task(self._work())

    def _next_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        rows = 0
        now = time.perf_counter()
        while self.queue:
            pending = self.queue[0]
            if pending.future.done():  # the client went away
                self.queue.popleft()
                continue
            if now - pending.queued_at > self.max_wait:
                self.queue.popleft()
                pending.future.set_exception(
                    Overloaded(f"the request waited over {self.max_wait * 1000:.0f} ms for the model: server overloaded")
                )
                continue
            if batch and rows + len(pending.x) > self.max_batch_size:
                break
            batch.append(self.queue.popleft())
            rows += len(pending.x)
        return batch

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.queue:
                self.wake.clear()
                await self.wake.wait()
            batch = self._next_batch()
            if not batch:
                continue
            sizes = [len(p.x) for p in batch]
            try:
                output = await loop.run_in_executor(self.executor, self._run, np.concatenate([p.x for p in batch]))
            except Exception as exc:  # noqa: BLE001 - every waiting request gets the failure
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                continue
            for pending, part in zip(batch, np.split(output, np.cumsum(sizes)[:-1])):
                if not pending.future.done():
                    pending.future.set_result(part)
