"""Dynamic batching: concurrent requests for one model version share one model call.

A batcher takes the first waiting request at once; what else is waiting joins it, up to
``max_batch_size`` rows. Only when other requests were waiting (there is traffic) and the batch
is not full does it wait up to ``max_queue_delay`` for more, and only while requests the server
is still reading may join it, so a lone request never waits. The
model runs in a worker thread (ONNX Runtime releases the GIL), so requests keep arriving and
queueing while it runs. Requests are checked and preprocessed before they join a batch; if a
batched call still fails, each request of it is run alone, so one bad request never fails the
others.

When no other request for the model is in flight, its call runs on the event loop itself (up to
a predicted 10 ms, so health checks never wait long): the hand-off to a worker thread would cost
more than it buys, since nothing else waits for the loop. With other requests in flight the call
goes to the worker thread, so that the loop reads them meanwhile and they form the next batch.
How long a row takes is learnt from the calls.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

# a call of a request alone, predicted to take less than this, runs on the event loop rather than
# in a worker thread
INLINE_SECONDS = 0.01


@dataclass
class _Job:
    x: np.ndarray
    future: asyncio.Future[np.ndarray]


class Batcher:
    """Joins concurrent model calls of one model version.

    Args:
        forward: the model call, ``(B, ...) float32 -> (B, K)``.
        max_batch_size: the most rows of one call.
        max_queue_delay: seconds a forming batch waits for more requests once others queued.
        executor: the thread pool the model runs in.
        observe: called with (rows, requests, seconds) after each model call (metrics).
        enabled: False runs each request on its own call (no batching).
        in_flight: how many requests the server is working on (None: unknown, never inline).
    """

    def __init__(
        self,
        forward: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch_size: int,
        max_queue_delay: float,
        executor: Executor,
        observe: Callable[[int, int, float], None] | None = None,
        enabled: bool = True,
        in_flight: Callable[[], int] | None = None,
    ) -> None:
        self.forward = forward
        self.max_batch_size = max_batch_size
        self.max_queue_delay = max_queue_delay
        self.executor = executor
        self.observe = observe
        self.enabled = enabled
        self.in_flight = in_flight
        self.pending: deque[_Job] = deque()
        self.row_seconds: float | None = None  # a running mean of a call's time per row
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        """Requests waiting for a model call."""
        return len(self.pending)

    async def submit(self, x: np.ndarray) -> np.ndarray:
        """The model's output for ``x`` (``(n, ...)``), computed in some batch."""
        loop = asyncio.get_running_loop()
        if not self.enabled:
            return await self._run_call(loop, x, 1)
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run())
        future: asyncio.Future[np.ndarray] = loop.create_future()
        self.pending.append(_Job(x, future))
        assert self._wake is not None
        self._wake.set()
        return await future

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        while self.pending:
            job = self.pending.popleft()
            if not job.future.done():
                job.future.set_exception(RuntimeError("the model was unloaded"))

    def _call(self, x: np.ndarray, requests: int) -> np.ndarray:
        start = time.perf_counter()
        y = self.forward(x)
        seconds = time.perf_counter() - start
        per_row = seconds / max(1, len(x))
        self.row_seconds = (
            per_row if self.row_seconds is None else 0.9 * self.row_seconds + 0.1 * per_row
        )
        if self.observe is not None:
            self.observe(len(x), requests, seconds)
        return y

    async def _run_call(
        self, loop: asyncio.AbstractEventLoop, x: np.ndarray, requests: int
    ) -> np.ndarray:
        """The model call: on the loop when no other request waits for it and the call is predicted
        short, else in a worker thread."""
        short = self.row_seconds is not None and self.row_seconds * len(x) < INLINE_SECONDS
        if short and self.in_flight is not None and self.in_flight() <= requests:
            return self._call(x, requests)
        return await loop.run_in_executor(self.executor, self._call, x, requests)

    def _more_coming(self, batched: int) -> bool:
        """Whether requests the server is reading may still join the batch: waiting for more is
        pointless when every request in flight is in it already (a closed loop of 8 clients
        never fills a batch of 64)."""
        return self.in_flight is None or self.in_flight() > batched

    def _take(self, batch: list[_Job], rows: int) -> int:
        while self.pending and rows + len(self.pending[0].x) <= self.max_batch_size:
            job = self.pending.popleft()
            if not job.future.done():  # a cancelled request (its client left) is dropped
                batch.append(job)
                rows += len(job.x)
        return rows

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wake is not None
        while True:
            if not self.pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch: list[_Job] = []
            rows = self._take(batch, 0)
            if not batch and self.pending:  # the first job alone is over max_batch_size
                job = self.pending.popleft()
                batch, rows = [job], len(job.x)
            if len(batch) > 1 and rows < self.max_batch_size and self.max_queue_delay > 0:
                deadline = loop.time() + self.max_queue_delay
                while (
                    rows < self.max_batch_size
                    and self._more_coming(len(batch))
                    and (left := deadline - loop.time()) > 0
                ):
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), left)
                    except asyncio.TimeoutError:
                        break
                    rows = self._take(batch, rows)
                    if self.pending:  # the next one does not fit: the batch is as full as it gets
                        break
            if not batch:
                continue
            await self._execute(loop, batch)

    async def _execute(self, loop: asyncio.AbstractEventLoop, batch: list[_Job]) -> None:
        x = batch[0].x if len(batch) == 1 else np.concatenate([j.x for j in batch])
        try:
            y = await self._run_call(loop, x, len(batch))
        except Exception as e:
            if len(batch) == 1:
                _settle(batch[0].future, error=e)
                return
            for job in batch:  # one request broke the call: run each alone
                try:
                    _settle(job.future, await self._run_call(loop, job.x, 1))
                except Exception as each:
                    _settle(job.future, error=each)
            return
        start = 0
        for job in batch:
            n = len(job.x)
            _settle(job.future, y[start : start + n])
            start += n


def _settle(
    future: asyncio.Future[Any], value: Any = None, error: BaseException | None = None
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
