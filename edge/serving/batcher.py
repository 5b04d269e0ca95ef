"""Dynamic batcher: priority queues, bounded capacity, deadlines, one engine worker thread.

Policy (the documents: at most 32 per batch, ~10 ms wait, a priority queue):

* A batch starts **at once when full** (``max_batch_size`` texts).
* Otherwise it starts as soon as the engine is idle (after one event-loop pass, so requests
  that arrived in the same tick join), unless ``arrival_gap`` > 0: then it waits while texts
  keep arriving closer together than that gap, at most until its oldest text has waited
  ``max_queue_delay``. While a batch runs, new requests queue up and form the next batch, so
  under load batches fill by themselves and a lone client never waits for batch-mates.
* Higher ``priority`` levels are taken first; FIFO within a level.
* The queue is bounded: a request that does not fit raises :class:`Overloaded` at once.
* Texts whose future was cancelled (client gone) or whose deadline passed are dropped when the
  batch is formed, so they never cost a forward pass.
* Every text is bound to the model slot that admitted it; a batch holding texts of two slots
  (during a swap) runs one forward per slot, so nothing is mixed and in-flight work finishes on
  the version that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from contracts.errors import GatewayTimeout, Overloaded, Unavailable
from contracts.logging import get_logger
from edge.serving.loaded_model import LoadedModel
from edge.serving.metrics import ServingMetrics

log = get_logger("autoglm.edge.batcher")

Row = tuple[np.ndarray, np.ndarray]


@dataclass(slots=True)
class _Item:
    text: str
    model: LoadedModel
    future: asyncio.Future[Row]
    deadline: float | None  # time.monotonic() seconds
    enqueued: float


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class DynamicBatcher:
    def __init__(
        self,
        *,
        max_batch_size: int = 32,
        max_queue_delay_s: float = 0.010,
        arrival_gap_s: float = 0.0,
        capacity: int = 256,
        priority_levels: int = 2,
        metrics: ServingMetrics | None = None,
    ) -> None:
        if max_batch_size < 1 or capacity < 1 or priority_levels < 1:
            raise ValueError("max_batch_size, capacity and priority_levels must be ≥ 1")
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_s
        self.arrival_gap_s = arrival_gap_s
        self.capacity = capacity
        self.priority_levels = priority_levels
        self.metrics = metrics
        self._queues: list[deque[_Item]] = [deque() for _ in range(priority_levels)]
        self._size = 0
        self._last_arrival = 0.0
        self._waiter: asyncio.Future[None] | None = None  # set while the worker sleeps
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="autoglm-engine")
        self.batches_run = 0
        self.texts_run = 0
        self.dropped = 0

    # --- life cycle -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="autoglm-batcher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for q in self._queues:
            while q:
                item = q.popleft()
                if not item.future.done():
                    item.future.set_exception(Unavailable("the server is shutting down"))
        self._size = 0
        self._executor.shutdown(wait=True)

    @property
    def depth(self) -> int:
        return self._size

    # --- admission ------------------------------------------------------------------------------
    def submit(
        self, model: LoadedModel, texts: list[str], *, priority: int = 0, deadline: float | None = None
    ) -> list[asyncio.Future[Row]]:
        """Queue ``texts`` for ``model``; one future per text. Raises :class:`Overloaded` when full."""
        if self._task is None:
            raise Unavailable("the batcher is not running")
        n = len(texts)
        if self._size + n > self.capacity:
            raise Overloaded(
                f"queue full ({self._size}/{self.capacity} texts waiting); retry later",
                retry_after_s=1.0,
            )
        level = min(max(int(priority), 0), self.priority_levels - 1)
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        q = self._queues[level]
        futures: list[asyncio.Future[Row]] = []
        for text in texts:
            fut: asyncio.Future[Row] = loop.create_future()
            q.append(_Item(text, model, fut, deadline, now))
            futures.append(fut)
        self._size += n
        self._last_arrival = now
        if self.metrics is not None:
            self.metrics.queue_depth.set(self._size)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return futures

    # --- the worker -----------------------------------------------------------------------------
    def _oldest(self) -> float:
        return min((q[0].enqueued for q in self._queues if q), default=time.monotonic())

    async def _sleep(self, timeout: float | None) -> None:
        """Until the next submit (or ``timeout`` seconds): one future and at most one timer."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        timer = loop.call_later(timeout, _wake, waiter) if timeout is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    async def _run(self) -> None:
        while True:
            if self._size == 0:
                await self._sleep(None)
                # one event-loop pass: requests that arrived in the same tick join this batch
                await asyncio.sleep(0)
                continue
            while self._size < self.max_batch_size:
                now = time.monotonic()
                wait = min(
                    self._oldest() + self.max_queue_delay_s - now,
                    self._last_arrival + self.arrival_gap_s - now,
                )
                if wait <= 0:
                    break
                await self._sleep(wait)
            batch = self._take()
            if batch:
                try:
                    await self._execute(batch)
                except asyncio.CancelledError:
                    for it in batch:
                        if not it.future.done():
                            it.future.set_exception(Unavailable("the server is shutting down"))
                    raise
                except Exception:  # pragma: no cover - _execute reports per item
                    log.exception("batch failed")

    def _take(self) -> list[_Item]:
        """Pop up to a full batch, highest priority first, skipping dead items."""
        batch: list[_Item] = []
        now = time.monotonic()
        for q in reversed(self._queues):
            while q and len(batch) < self.max_batch_size:
                item = q.popleft()
                self._size -= 1
                if item.future.done():  # cancelled: client disconnected or gave up
                    self._drop("cancelled")
                    continue
                if item.deadline is not None and now > item.deadline:
                    item.future.set_exception(
                        GatewayTimeout("deadline passed before the request was started")
                    )
                    self._drop("deadline")
                    continue
                batch.append(item)
        if self.metrics is not None:
            self.metrics.queue_depth.set(self._size)
        return batch

    def _drop(self, reason: str) -> None:
        self.dropped += 1
        if self.metrics is not None:
            self.metrics.dropped.labels(reason).inc()

    async def _execute(self, batch: list[_Item]) -> None:
        groups: dict[int, list[_Item]] = {}
        for it in batch:
            groups.setdefault(id(it.model), []).append(it)
        loop = asyncio.get_running_loop()
        for items in groups.values():
            model = items[0].model
            started = time.monotonic()
            try:
                texts = [it.text for it in items]
                emb, logits = await loop.run_in_executor(self._executor, model.forward, texts)
            except Exception as exc:
                log.exception("forward pass failed on %s", model.label)
                for it in items:
                    if not it.future.done():
                        it.future.set_exception(exc)
                continue
            finished = time.monotonic()
            self.batches_run += 1
            self.texts_run += len(items)
            if self.metrics is not None:
                labels = (model.name, model.version)
                self.metrics.compute_time.labels(*labels).observe(finished - started)
                self.metrics.batch_size.labels(*labels).observe(len(items))
                qt = self.metrics.queue_time.labels(*labels)
                for it in items:
                    qt.observe(started - it.enqueued)
            for i, it in enumerate(items):
                if not it.future.done():
                    it.future.set_result((emb[i], logits[i]))
