"""Natural batching: concurrent callers share one database round trip, with no timers.

A caller that finds the batcher idle runs its own item at once, in its own task: at low load
nothing waits and nothing is scheduled. Callers that arrive while a batch runs queue up; when
that batch ends, one task runs everything queued as the next batch (up to ``max_size`` items
each), and goes on until the queue is empty. Under load, each round trip serves many callers.

``run`` receives the items of one batch and returns one outcome per item, in order: a result,
or an exception meant for that caller alone (one bad item must not fail its batch-mates). If
``run`` itself raises, every caller in the batch gets that error.

A caller cancelled while it waits is dropped from the queue (its item never runs); one
cancelled while its batch runs just loses its answer, and the batch goes on for the others.

``enabled=False`` is the escape hatch: every caller runs its own batch of one, at once.

``on_batch``, when given, is called with the size of every batch as it starts (metrics).
"""

import asyncio
import contextvars
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
RunBatch = Callable[[Sequence[Item]], Awaitable[Sequence[Result | BaseException]]]


@dataclass
class BatchStats:
    """Counters since start (``items / batches`` is the mean batch size), and the items queued
    for the next batch now."""

    batches: int = 0
    items: int = 0
    largest: int = 0
    queued: int = 0

    def record(self, size: int) -> None:
        self.batches += 1
        self.items += size
        self.largest = max(self.largest, size)


class Batcher(Generic[Item, Result]):
    def __init__(
        self,
        run: RunBatch[Item, Result],
        *,
        max_size: int,
        enabled: bool = True,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._run = run
        self.max_size = max_size
        self.enabled = enabled
        self.stats = BatchStats()
        self._on_batch = on_batch
        self._busy = False
        self._queue: deque[tuple[Item, asyncio.Future[Result]]] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self._idle: asyncio.Future[None] | None = None  # made by close(), resolved when idle

    async def __call__(self, item: Item) -> Result:
        if not self.enabled:
            (outcome,) = await self._run((item,))
            return _result(outcome)
        if self._busy:
            future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
            self._queue.append((item, future))
            self.stats.queued += 1
            return await future  # cancelled: the future is cancelled and its item skipped
        # Idle: run this item alone, here, now. Whatever arrives meanwhile forms the next batch.
        self._busy = True
        try:
            self._record(1)
            (outcome,) = await self._run((item,))
        finally:
            self._hand_over()
        return _result(outcome)

    async def close(self) -> None:
        """Wait until the running batch and every queued one have finished (lifespan shutdown,
        before the engines close)."""
        if self._busy:
            self._idle = self._idle or asyncio.get_running_loop().create_future()
            await asyncio.shield(self._idle)

    def _become_idle(self) -> None:
        self._busy = False
        if self._idle is not None:
            self._idle.set_result(None)
            self._idle = None

    def _hand_over(self) -> None:
        if not self._queue:
            self._become_idle()
            return
        # One task drains the queue for as long as callers keep it non-empty. A fresh context:
        # it serves many requests, so it must not carry the first one's context variables.
        self._drainer = asyncio.get_running_loop().create_task(
            self._drain(), context=contextvars.Context()
        )

    async def _drain(self) -> None:
        try:
            while batch := self._next_batch():
                await self._run_batch(batch)
        finally:
            # Cancelled (the loop is closing): nobody will run what is still queued.
            while self._queue:
                self._queue.popleft()[1].cancel()
            self.stats.queued = 0
            self._drainer = None
            self._become_idle()

    def _next_batch(self) -> list[tuple[Item, asyncio.Future[Result]]]:
        batch: list[tuple[Item, asyncio.Future[Result]]] = []
        while self._queue and len(batch) < self.max_size:
            entry = self._queue.popleft()
            if not entry[1].done():  # done here means its caller was cancelled
                batch.append(entry)
        self.stats.queued = len(self._queue)
        return batch

    def _record(self, size: int) -> None:
        self.stats.record(size)
        if self._on_batch is not None:
            self._on_batch(size)

    async def _run_batch(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        self._record(len(batch))
        try:
            outcomes = await self._run([item for item, _ in batch])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            outcomes = [exc] * len(batch)
        if len(outcomes) != len(batch):  # a bug in run: fail loudly, never leave a caller waiting
            error = RuntimeError(
                f"batch function gave {len(outcomes)} outcomes for {len(batch)} items"
            )
            outcomes = [error] * len(batch)
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # its caller went away while the batch ran
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


def _result(outcome: Result | BaseException) -> Result:
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome
