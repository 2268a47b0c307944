"""Adaptive batching inside the service process.

While the model is busy, requests queue up; when it is free, everything
queued (up to ``max_batch_size`` rows) goes in as one batch. Under light load
a request runs at once, alone; under heavy load batches fill by themselves,
so the batch size follows the traffic without a fixed window. A client's own
batch is split into pieces of at most ``max_batch_size`` rows, so a request
of 500 rows never exceeds the limit. A piece that waited longer than
``max_latency_ms`` is refused with ``Overloaded`` instead of growing the queue
without bound.

Where the model runs: on one thread of its own (``inline=False``), so the
event loop reads and answers other requests meanwhile, which pays when a
model call costs more than the hop to the thread and back; or on the event
loop itself (``inline=True``), for a model so cheap per call (onnxruntime on a
small model: tens of microseconds) that the hop, its wake-up and the GIL
changing hands would cost more than the call.

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
        inline: bool = False,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.predict, self.max_batch_size = predict, max_batch_size
        self.enabled, self.inline = enabled, inline
        self.max_wait = max_latency_ms / 1000
        self.on_batch = on_batch or (lambda size: None)
        # One thread runs the model: calls never overlap, the event loop stays free.
        self.executor = None if inline else ThreadPoolExecutor(max_workers=1, thread_name_prefix="lockgate-model")
        self.queue: deque[_Pending] = deque()
        self.busy = False  # a batch is on the model thread
        self.scheduled = False  # a flush is due on the event loop

    async def submit(self, x: np.ndarray) -> np.ndarray:
        pieces = [x[i : i + self.max_batch_size] for i in range(0, len(x), self.max_batch_size)]
        loop = asyncio.get_running_loop()
        if not self.enabled:
            if self.inline:
                return np.concatenate([self._run(piece) for piece in pieces])
            outputs = [await loop.run_in_executor(self.executor, self._run, piece) for piece in pieces]
            return np.concatenate(outputs)
        futures = []
        for piece in pieces:
            pending = _Pending(piece, loop.create_future())
            self.queue.append(pending)
            futures.append(pending.future)
        if not (self.busy or self.scheduled):
            # After the callbacks already due: requests parsed in this turn of
            # the loop join the same batch.
            self.scheduled = True
            loop.call_soon(self._flush, loop)
        if len(futures) == 1:
            return await futures[0]
        return np.concatenate(await asyncio.gather(*futures))

    def _run(self, x: np.ndarray) -> np.ndarray:
        self.on_batch(len(x))
        return self.predict(x)

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

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Send what is queued to the model, as one batch."""
        self.scheduled = False
        batch = self._next_batch()
        if not batch:
            return
        x = batch[0].x if len(batch) == 1 else np.concatenate([p.x for p in batch])
        if self.inline:
            try:
                output = self._run(x)
            except Exception as exc:  # noqa: BLE001 - every waiting request gets the failure
                self._answer(batch, None, exc)
            else:
                self._answer(batch, output, None)
            if self.queue and not self.scheduled:
                self.scheduled = True
                loop.call_soon(self._flush, loop)
            return
        self.busy = True
        done = loop.run_in_executor(self.executor, self._run, x)
        done.add_done_callback(lambda finished: self._finished(loop, batch, finished))

    def _finished(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending], finished: asyncio.Future) -> None:
        self.busy = False
        error = finished.exception()
        self._answer(batch, None if error else finished.result(), error)
        if self.queue:  # what arrived while the model ran is the next batch
            self._flush(loop)

    @staticmethod
    def _answer(batch: list[_Pending], output: np.ndarray | None, error: BaseException | None) -> None:
        if error is not None:
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(error)
            return
        start = 0
        for pending in batch:
            end = start + len(pending.x)
            if not pending.future.done():
                pending.future.set_result(output[start:end])
            start = end
