"""Where hero requests meet the database: batched across concurrent requests, or one by one.

With batching on (``HEROES_BATCHING``, the default) concurrent point reads share one
``SELECT ... WHERE id IN (...)``, and concurrent writes share one transaction and one commit
(group commit); see ``heroes_api.batching``. Every caller still gets its own answer, and a write
is acknowledged only after the commit that holds it. With batching off, each request runs the
same queries as a batch of one, in a session of its own.
"""

from collections.abc import Callable, Sequence
from typing import Any

from heroes_api.batching import Batcher, BatchStats, RunBatch
from heroes_api.db import SessionMaker, translate_errors
from heroes_api.errors import DatabaseUnavailable
from heroes_api.heroes import repository
from heroes_api.heroes.errors import HeroNotFound, PreconditionFailed
from heroes_api.heroes.repository import (
    Create,
    Delete,
    HeroRow,
    Page,
    Update,
    VersionedRow,
    Write,
    WriteResult,
)
from heroes_api.heroes.schemas import HeroCreate, HeroUpdate


class HeroService:
    def __init__(
        self,
        read_sessions: SessionMaker,
        write_sessions: SessionMaker,
        *,
        batching: bool,
        max_batch: int,
        batch_observer: Callable[[str], Callable[[int], None]] | None = None,
    ) -> None:
        """``batch_observer(name)`` gives the callback that each batcher calls with its batch
        sizes (metrics); with batching off there are no batches to observe."""
        self._read_sessions = read_sessions
        self._write_sessions = write_sessions

        def batcher(run: RunBatch[Any, Any], name: str) -> Batcher[Any, Any]:
            # Off: every call runs its own batch of one, with no queue in front of it.
            observe = batch_observer(name) if batch_observer and batching else None
            return Batcher(run, max_size=max_batch, enabled=batching, on_batch=observe)

        self._reads: Batcher[int, VersionedRow | None] = batcher(self._read_batch, "reads")
        self._pages: Batcher[Page, list[HeroRow]] = batcher(self._page_batch, "pages")
        self._writes: Batcher[Write, VersionedRow | None] = batcher(self._write_batch, "writes")

    async def page(self, page: Page) -> list[HeroRow]:
        return await self._pages(page)

    async def get(self, hero_id: int) -> VersionedRow:
        return _or_not_found(await self._reads(hero_id))

    async def create(self, hero_in: HeroCreate) -> VersionedRow:
        return _or_not_found(await self._writes(Create(hero_in)))

    async def update(
        self, hero_id: int, hero_in: HeroUpdate, versions: frozenset[int] | None = None
    ) -> VersionedRow:
        """``versions``: what ``If-Match`` allows the hero to be at (None: any)."""
        changes = hero_in.model_dump(exclude_unset=True)
        if not changes:  # nothing to write: a read, still under the precondition
            found = await self.get(hero_id)
            if versions is not None and found.version not in versions:
                raise PreconditionFailed
            return found
        return _or_not_found(await self._writes(Update(hero_id, changes, versions)))

    async def delete(self, hero_id: int, versions: frozenset[int] | None = None) -> None:
        _or_not_found(await self._writes(Delete(hero_id, versions)))

    def batch_stats(self) -> dict[str, BatchStats]:
        """Each batcher's counters (none with batching off): the benchmark and tests read them."""
        batchers = (("reads", self._reads), ("pages", self._pages), ("writes", self._writes))
        return {name: batcher.stats for name, batcher in batchers if batcher.enabled}

    async def close(self) -> None:
        """Finish the batches in flight (lifespan shutdown, before the engines are disposed)."""
        await self._reads.close()
        await self._pages.close()
        await self._writes.close()

    async def _read_batch(self, ids: Sequence[int]) -> list[VersionedRow | None]:
        with translate_errors():
            async with self._read_sessions() as session:
                heroes = await repository.get_heroes(session, set(ids))
        return [heroes.get(hero_id) for hero_id in ids]

    async def _page_batch(self, pages: Sequence[Page]) -> list[list[HeroRow]]:
        distinct = list(dict.fromkeys(pages))  # the same page twice in a batch is read once
        with translate_errors():
            async with self._read_sessions() as session:
                found = await repository.list_pages(session, distinct)
        heroes = dict(zip(distinct, found, strict=True))
        return [heroes[page] for page in pages]

    async def _write_batch(
        self, writes: Sequence[Write]
    ) -> Sequence[VersionedRow | Exception | None]:
        """One transaction for the whole batch; each write gets its hero, None (404), or an
        error of its own (``PreconditionFailed``, 412, which the batcher raises to that caller
        alone). If a statement in it fails (a value the database refuses, a deadlock with
        another process), nothing was committed: each write is replayed in a transaction of its
        own, so only the write at fault gets the error. A database that cannot be reached fails
        them all at once; so does a failed COMMIT, whose outcome is unknown and must not be
        replayed."""
        try:
            return await self._commit(writes)
        except _StatementFailed as failed:
            if len(writes) == 1 or not is_replayable(failed.error):
                raise failed.error from failed.error.__cause__  # the driver's error, for the log
        return [await self._write_alone(write) for write in writes]

    async def _write_alone(self, write: Write) -> VersionedRow | Exception | None:
        try:
            (found,) = await self._commit((write,))
        except _StatementFailed as failed:
            return failed.error
        except Exception as exc:
            return exc
        return found

    async def _commit(self, writes: Sequence[Write]) -> Sequence[WriteResult]:
        with translate_errors():
            async with self._write_sessions() as session:
                try:
                    with translate_errors():
                        results = await repository.apply_writes(session, writes)
                except Exception as exc:
                    raise _StatementFailed(exc) from exc  # rolled back when the session closes
                await session.commit()
        return results


class _StatementFailed(Exception):
    """A write batch failed before its COMMIT: nothing of it was stored."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def is_replayable(error: Exception) -> bool:
    """Whether a batch that failed before its COMMIT is worth replaying write by write: yes when
    its transaction was undone for a reason of one write's own (a value the database refused, a
    deadlock or serialization failure, a bug in one statement), so that only that write gets the
    error. Not when the database cannot be reached: every replay would wait and fail again."""
    return not isinstance(error, DatabaseUnavailable)


def _or_not_found(hero: VersionedRow | None) -> VersionedRow:
    if hero is None:
        raise HeroNotFound
    return hero
