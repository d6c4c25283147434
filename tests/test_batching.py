"""The natural batcher on its own: who runs when, what each caller gets, and what is left over."""

import asyncio
from collections.abc import Sequence

import pytest

from heroes_api.batching import Batcher


class Recorder:
    """A batch function that records its batches; ``hold(k)`` keeps batch k (from 0) open until
    ``release(k)``, and ``started(k)`` waits until it runs."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.tasks: list[asyncio.Task[object] | None] = []
        self._gates: dict[int, asyncio.Event] = {}
        self._started: dict[int, asyncio.Event] = {}

    def hold(self, k: int) -> None:
        self._gates[k] = asyncio.Event()

    def release(self, k: int) -> None:
        self._gates[k].set()

    async def started(self, k: int) -> None:
        await self._started.setdefault(k, asyncio.Event()).wait()

    async def __call__(self, items: Sequence[int]) -> list[int | BaseException]:
        k = len(self.batches)
        self.batches.append(list(items))
        self.tasks.append(asyncio.current_task())
        self._started.setdefault(k, asyncio.Event()).set()
        if k in self._gates:
            await self._gates[k].wait()
        return [ValueError(f"bad {n}") if n < 0 else n * 10 for n in items]


async def settle() -> None:
    """Let every ready task run until it blocks."""
    for _ in range(5):
        await asyncio.sleep(0)


def other_tasks() -> set[asyncio.Task[object]]:
    return asyncio.all_tasks() - {asyncio.current_task()}


async def hold_first(run: Recorder, batcher: Batcher[int, int]) -> asyncio.Task[int]:
    """Start a caller whose batch (of one, batch 0) stays open until ``run.release(0)``."""
    run.hold(0)
    first = asyncio.create_task(batcher(1))
    await run.started(0)
    return first


async def test_an_idle_batcher_runs_the_caller_inline() -> None:
    run = Recorder()
    batcher = Batcher(run, max_size=8)
    assert await batcher(4) == 40
    assert await batcher(5) == 50
    assert run.batches == [[4], [5]]
    assert run.tasks == [asyncio.current_task()] * 2  # no task was scheduled for them
    assert other_tasks() == set()


async def test_callers_arriving_during_a_batch_share_the_next_one() -> None:
    run = Recorder()
    batcher = Batcher(run, max_size=100)
    first = await hold_first(run, batcher)
    waiting = [asyncio.create_task(batcher(n)) for n in range(2, 12)]
    await settle()
    assert run.batches == [[1]]  # the others wait for the running batch, with no timer
    assert batcher.stats.queued == 10
    run.release(0)
    assert await first == 10
    assert await asyncio.gather(*waiting) == [n * 10 for n in range(2, 12)]
    assert run.batches == [[1], list(range(2, 12))]
    assert (batcher.stats.batches, batcher.stats.items, batcher.stats.largest) == (2, 11, 10)
    assert batcher.stats.queued == 0
    await settle()
    assert other_tasks() == set()


async def test_batches_are_capped_at_max_size() -> None:
    run = Recorder()
    batcher = Batcher(run, max_size=4)
    first = await hold_first(run, batcher)
    waiting = [asyncio.create_task(batcher(n)) for n in range(2, 12)]
    await settle()
    run.release(0)
    await asyncio.gather(first, *waiting)
    assert run.batches == [[1], [2, 3, 4, 5], [6, 7, 8, 9], [10, 11]]


async def test_a_bad_item_fails_only_its_own_caller() -> None:
    run = Recorder()
    batcher = Batcher(run, max_size=100)
    first = await hold_first(run, batcher)
    waiting = [asyncio.create_task(batcher(n)) for n in (2, -3, 4)]
    await settle()
    run.release(0)
    results = await asyncio.gather(first, *waiting, return_exceptions=True)
    assert results[:2] == [10, 20]
    assert isinstance(results[2], ValueError)
    assert str(results[2]) == "bad -3"
    assert results[3] == 40
    assert run.batches == [[1], [2, -3, 4]]


async def test_a_failing_batch_fails_its_callers_and_the_next_batch_runs() -> None:
    calls: list[list[int]] = []
    gate = asyncio.Event()

    async def run(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        await gate.wait()
        if len(calls) == 2:
            raise RuntimeError("database went away")
        return list(items)

    batcher: Batcher[int, int] = Batcher(run, max_size=2)
    first = asyncio.create_task(batcher(1))
    await settle()
    second_batch = [asyncio.create_task(batcher(n)) for n in (2, 3)]
    third_batch = [asyncio.create_task(batcher(4))]
    await settle()
    gate.set()
    assert await first == 1
    for task in second_batch:
        with pytest.raises(RuntimeError, match="went away"):
            await task
    assert await third_batch[0] == 4
    assert calls == [[1], [2, 3], [4]]


async def test_the_inline_caller_raises_what_its_batch_raised() -> None:
    async def run(items: Sequence[int]) -> list[int]:
        raise RuntimeError("boom")

    batcher: Batcher[int, int] = Batcher(run, max_size=2)
    with pytest.raises(RuntimeError, match="boom"):
        await batcher(1)
    assert batcher.stats.batches == 1
    with pytest.raises(RuntimeError, match="boom"):  # not stuck "busy" after a failure
        await batcher(2)


async def test_a_wrong_number_of_outcomes_is_an_error_for_every_caller() -> None:
    gate = asyncio.Event()

    async def run(items: Sequence[int]) -> list[int]:
        await gate.wait()
        return [1]

    batcher: Batcher[int, int] = Batcher(run, max_size=8)
    first = asyncio.create_task(batcher(1))
    await settle()
    waiting = [asyncio.create_task(batcher(n)) for n in (2, 3)]
    await settle()
    gate.set()
    assert await first == 1
    for task in waiting:
        with pytest.raises(RuntimeError, match="1 outcomes for 2 items"):
            await task
    await settle()
    assert other_tasks() == set()


async def test_a_caller_cancelled_while_queued_is_dropped() -> None:
    run = Recorder()
    batcher = Batcher(run, max_size=100)
    first = await hold_first(run, batcher)
    waiting = {n: asyncio.create_task(batcher(n)) for n in (2, 3, 4)}
    await settle()
    waiting[3].cancel()
    await settle()
    run.release(0)
    assert await first == 10
    assert await waiting[2] == 20
    assert await waiting[4] == 40
    assert waiting[3].cancelled()
    assert run.batches == [[1], [2, 4]]  # the cancelled item never ran
    await settle()
    assert other_tasks() == set()


async def test_a_caller_cancelled_while_its_batch_runs_does_not_break_the_batch() -> None:
    run = Recorder()
    batcher = Batcher(run, max_size=100)
    first = await hold_first(run, batcher)
    waiting = {n: asyncio.create_task(batcher(n)) for n in (2, 3, 4)}
    run.hold(1)
    run.release(0)
    assert await first == 10
    await run.started(1)  # the batch [2, 3, 4] is running
    waiting[3].cancel()
    await settle()
    run.release(1)
    assert await waiting[2] == 20
    assert await waiting[4] == 40
    assert waiting[3].cancelled()
    await settle()
    assert other_tasks() == set()


async def test_a_cancelled_inline_caller_hands_the_queue_on() -> None:
    run = Recorder()
    batcher = Batcher(run, max_size=100)
    first = await hold_first(run, batcher)
    waiting = [asyncio.create_task(batcher(n)) for n in (2, 3)]
    await settle()
    first.cancel()
    run.release(0)
    assert await asyncio.gather(*waiting) == [20, 30]
    assert first.cancelled()
    await settle()
    assert other_tasks() == set()


async def test_close_waits_for_the_queued_batches() -> None:
    run = Recorder()
    batcher = Batcher(run, max_size=2)
    first = await hold_first(run, batcher)
    waiting = [asyncio.create_task(batcher(n)) for n in range(2, 7)]
    await settle()
    run.release(0)
    await first
    await batcher.close()
    assert run.batches == [[1], [2, 3], [4, 5], [6]]  # every queued item ran before close returned
    assert await asyncio.gather(*waiting) == [20, 30, 40, 50, 60]
    await batcher.close()  # idle: returns at once


async def test_close_waits_for_a_caller_running_inline_and_what_queued_behind_it() -> None:
    run = Recorder()
    batcher = Batcher(run, max_size=2)
    first = await hold_first(run, batcher)
    waiting = [asyncio.create_task(batcher(n)) for n in (2, 3, 4)]
    await settle()
    closing = asyncio.create_task(batcher.close())
    await settle()
    assert not closing.done()
    run.release(0)
    await closing
    assert run.batches == [[1], [2, 3], [4]]
    assert await asyncio.gather(first, *waiting) == [10, 20, 30, 40]


async def test_a_cancelled_drain_cancels_what_it_leaves_queued() -> None:
    """If the loop tears the drain task down, no caller is left waiting forever."""
    run = Recorder()
    batcher = Batcher(run, max_size=1)
    first = await hold_first(run, batcher)
    waiting = [asyncio.create_task(batcher(n)) for n in (2, 3, 4)]
    await settle()
    run.hold(1)
    run.release(0)
    await first
    await run.started(1)  # the drain task is running [2]
    (drainer,) = [task for task in other_tasks() if task not in waiting]
    drainer.cancel()
    await asyncio.wait(waiting, timeout=5)
    assert all(task.cancelled() for task in waiting)
    assert other_tasks() == set()
    assert await batcher(5) == 50  # and the batcher works again


def test_max_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Batcher(Recorder(), max_size=0)


async def test_a_disabled_batcher_runs_every_caller_alone_at_once() -> None:
    run = Recorder()
    batcher = Batcher(run, max_size=8, enabled=False)
    first = await hold_first(run, batcher)
    assert await batcher(2) == 20  # not queued behind the running batch
    with pytest.raises(ValueError, match="bad -3"):
        await batcher(-3)
    run.release(0)
    assert await first == 10
    assert run.batches == [[1], [2], [-3]]
    assert batcher.stats.batches == 0  # nothing was batched
