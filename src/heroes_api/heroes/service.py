"""Where hero requests meet the database: batched across concurrent requests, or one by one.

With batching on (``HEROES_BATCHING``, the default) concurrent point reads share one
``SELECT ... WHERE id IN (...)``, and concurrent writes share one transaction and one commit
(group commit); see ``heroes_api.batching``. Every caller still gets its own answer, and a write
is acknowledged only after the commit that holds it. With batching off, each request runs the
same queries as a batch of one, in a session of its own.
"""

import logging
from collections.abc import Callable, Sequence
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from heroes_api.batching import Batcher, BatchStats, RunBatch
from heroes_api.db import SessionMaker, translate_errors
from heroes_api.errors import DatabaseError, DatabaseRefusesWrites, DatabaseUnavailable
from heroes_api.heroes import repository
from heroes_api.heroes.errors import (
    HeroNotFound,
    IdempotencyKeyInFlight,
    PreconditionFailed,
)
from heroes_api.heroes.keyed import Answer, KeyedWrites, KeyTaken, Written, repeat, same_keys
from heroes_api.heroes.repository import (
    Create,
    Delete,
    HeroRow,
    Page,
    Update,
    VersionedRow,
    Write,
)
from heroes_api.heroes.repository.keys import RequestKey
from heroes_api.heroes.schemas import HeroCreate, HeroUpdate
from heroes_api.replicas import Replica, primary_position

logger = logging.getLogger(__name__)


class HeroService:
    def __init__(
        self,
        read_sessions: SessionMaker,
        write_sessions: SessionMaker,
        *,
        batching: bool,
        max_batch: int,
        idempotency_ttl: float = 86_400.0,
        replica: Replica | None = None,
        batch_observer: Callable[[str], Callable[[int], None]] | None = None,
    ) -> None:
        """``batch_observer(name)`` gives the callback that each batcher calls with its batch
        sizes (metrics); with batching off there are no batches to observe. A stored
        ``Idempotency-Key`` answer counts for ``idempotency_ttl`` seconds. With a ``replica``,
        point reads and pages go to it when it is fresh enough for them (``heroes_api.replicas``),
        and reads take a consistency token (a WAL position) that writes hand out."""
        self._read_sessions = read_sessions
        self._write_sessions = write_sessions
        self._replica = replica
        self.keyed = KeyedWrites(idempotency_ttl)

        def batcher(run: RunBatch[Any, Any], name: str) -> Batcher[Any, Any]:
            # Off: every call runs its own batch of one, with no queue in front of it.
            observe = batch_observer(name) if batch_observer and batching else None
            return Batcher(run, max_size=max_batch, enabled=batching, on_batch=observe)

        # Without a replica a read is its id (or page); with one, (id or page, token).
        self._reads: Batcher[Any, VersionedRow | None] = batcher(
            self._read_batch if replica is None else self._replica_read_batch, "reads"
        )
        self._pages: Batcher[Any, list[HeroRow]] = batcher(
            self._page_batch if replica is None else self._replica_page_batch, "pages"
        )
        self._writes: Batcher[Write, Written] = batcher(self._write_batch, "writes")

    async def page(self, page: Page, token: int | None = None) -> list[HeroRow]:
        """``token``: the position the answer must be at least as new as (a replica's reads)."""
        return await self._pages(page if self._replica is None else (page, token))

    async def get(self, hero_id: int, token: int | None = None) -> VersionedRow:
        found = await self._reads(hero_id if self._replica is None else (hero_id, token))
        if found is None:
            raise HeroNotFound
        return found

    def consistency_token(self) -> int | None:
        """With a replica: a position at least as new as every write this process has
        acknowledged (positions only grow), for a write's response; None without one."""
        return None if self._replica is None else self._replica.committed

    async def create(
        self, hero_in: HeroCreate, key: RequestKey | None = None
    ) -> VersionedRow | Answer:
        """The new hero; with an ``Idempotency-Key``, the answer to send (see ``Answer``)."""
        return _or_not_found(await self._writes(Create(hero_in, key)))

    async def update(
        self,
        hero_id: int,
        hero_in: HeroUpdate,
        versions: frozenset[int] | None = None,
        key: RequestKey | None = None,
    ) -> VersionedRow | Answer:
        """``versions``: what ``If-Match`` allows the hero to be at (None: any)."""
        changes = hero_in.model_dump(exclude_unset=True)
        if not changes:  # nothing to write (nor to store): a read, still under the precondition
            if key is not None and (answer := await self._stored_answer(key)) is not None:
                return answer  # the key's first answer; a different request's key: a 422
            # On the primary, as a write's reads are: a replica may not show the hero yet, or
            # show an older version that If-Match would wrongly accept.
            found = await (
                self.get(hero_id) if self._replica is None else self._get_primary(hero_id)
            )
            if versions is not None and found.version not in versions:
                raise PreconditionFailed
            return found
        return _or_not_found(await self._writes(Update(hero_id, changes, versions, key)))

    async def _stored_answer(self, key: RequestKey) -> Answer | None:
        """What a key holds, for a keyed request that writes nothing (an empty PATCH)."""
        with translate_errors():
            async with self._write_sessions() as session:
                return await self.keyed.stored(session, key)

    async def delete(
        self, hero_id: int, versions: frozenset[int] | None = None, key: RequestKey | None = None
    ) -> Answer | None:
        """None; with an ``Idempotency-Key``, the answer to send."""
        deleted = _or_not_found(await self._writes(Delete(hero_id, versions, key)))
        return deleted if isinstance(deleted, Answer) else None

    def batch_stats(self) -> dict[str, BatchStats]:
        """Each batcher's counters (none with batching off): the benchmark and tests read them."""
        batchers = (("reads", self._reads), ("pages", self._pages), ("writes", self._writes))
        return {name: batcher.stats for name, batcher in batchers if batcher.enabled}

    async def close(self) -> None:
        """Finish the batches in flight (lifespan shutdown, before the engines are disposed)."""
        await self._reads.close()
        await self._pages.close()
        await self._writes.close()

    async def _get_primary(self, hero_id: int) -> VersionedRow:
        (found,) = await self._read_batch([hero_id])
        if found is None:
            raise HeroNotFound
        return found

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

    async def _replica_read_batch(
        self, reads: Sequence[tuple[int, int | None]]
    ) -> list[VersionedRow | None]:
        """The reads the replica is fresh enough for from it, the others from the primary."""
        assert self._replica is not None

        async def query(session: AsyncSession, fresh: list[int]) -> dict[int, VersionedRow]:
            return await repository.get_heroes(session, {reads[i][0] for i in fresh})

        fresh, on_replica = await self._replica.read([token for _, token in reads], query)
        replicated = set(fresh)
        rest = [hero_id for i, (hero_id, _) in enumerate(reads) if i not in replicated]
        on_primary = dict(zip(rest, await self._read_batch(rest), strict=True)) if rest else {}
        return [
            (on_replica or {}).get(hero_id) if i in replicated else on_primary[hero_id]
            for i, (hero_id, _) in enumerate(reads)
        ]

    async def _replica_page_batch(
        self, reads: Sequence[tuple[Page, int | None]]
    ) -> list[list[HeroRow]]:
        assert self._replica is not None

        async def query(session: AsyncSession, fresh: list[int]) -> dict[Page, list[HeroRow]]:
            distinct = list(dict.fromkeys(reads[i][0] for i in fresh))
            return dict(zip(distinct, await repository.list_pages(session, distinct), strict=True))

        fresh, on_replica = await self._replica.read([token for _, token in reads], query)
        replicated = set(fresh)
        rest = [page for i, (page, _) in enumerate(reads) if i not in replicated]
        on_primary = dict(zip(rest, await self._page_batch(rest), strict=True)) if rest else {}
        return [
            (on_replica or {})[page] if i in replicated else on_primary[page]
            for i, (page, _) in enumerate(reads)
        ]

    async def _write_batch(self, writes: Sequence[Write]) -> Sequence[Written | Exception]:
        """One transaction for the whole batch; each write gets its hero, None (404), or an
        error of its own (``PreconditionFailed``, 412, which the batcher raises to that caller
        alone). If a statement in it fails (a value the database refuses, a deadlock with
        another process, a key another transaction holds), nothing was committed: each write is
        replayed in a transaction of its own, so only the write at fault gets the error. A
        database that cannot be reached fails them all at once; so does a failed COMMIT, whose
        outcome is unknown and must not be replayed.

        Writes with the same ``Idempotency-Key`` in one batch are settled before any SQL: the
        first runs, and the others get its answer (or 422 if they asked for something else)."""
        firsts, repeats = same_keys(writes)
        if repeats:
            ran = await self._write_batch([writes[i] for i in firsts])
            results = dict(zip(firsts, ran, strict=True))
            for i, first in repeats.items():
                results[i] = repeat(writes[i], writes[first], results[first])
            return [results[i] for i in range(len(writes))]
        try:
            return await self._commit(writes, lookup=False)
        except _StatementFailed as failed:
            error = failed.error
        if isinstance(error, KeyTaken):  # a key was used before: look the keys up first
            try:
                return await self._commit(writes, lookup=True)
            except _StatementFailed as failed:
                error = failed.error
        elif len(writes) == 1 or not is_replayable(error):
            raise error from error.__cause__  # the driver's error, for the log
        return [await self._write_alone(write) for write in writes]

    async def _write_alone(self, write: Write) -> Written | Exception:
        try:
            (found,) = await self._commit((write,), lookup=True)
        except _StatementFailed as failed:
            # Still held by another transaction: in flight elsewhere, come back shortly.
            return IdempotencyKeyInFlight() if isinstance(failed.error, KeyTaken) else failed.error
        except Exception as exc:
            return exc
        return found

    async def _commit(
        self, writes: Sequence[Write], *, lookup: bool
    ) -> Sequence[Written | Exception]:
        with translate_errors():
            async with self._write_sessions() as session:
                try:
                    with translate_errors():
                        results = await self.keyed.apply(session, writes, lookup)
                except Exception as exc:
                    raise _StatementFailed(exc) from exc  # rolled back when the session closes
                await session.commit()
                if self._replica is not None:
                    await self._note_position(session)
        return results

    async def _note_position(self, session: AsyncSession) -> None:
        """The primary's position after this batch's COMMIT: the consistency token of its
        responses (and of this process's token-less reads). If it cannot be read, the batch is
        still acknowledged; its token is then the last one known, and the log says so."""
        assert self._replica is not None
        try:
            with translate_errors():
                self._replica.note_commit(await primary_position(session))
        except DatabaseError as error:
            logger.warning(
                "no consistency token after a commit: %s", type(error.__cause__).__name__
            )


class _StatementFailed(Exception):
    """A write batch failed before its COMMIT: nothing of it was stored."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def is_replayable(error: Exception) -> bool:
    """Whether a batch that failed before its COMMIT is worth replaying write by write: yes when
    its transaction was undone for a reason of one write's own (a value the database refused, a
    deadlock or serialization failure, a bug in one statement), so that only that write gets the
    error. Not when the database cannot be reached or refuses every write: each replay would
    fail again."""
    return not isinstance(error, DatabaseUnavailable | DatabaseRefusesWrites)


def _or_not_found(hero: VersionedRow | Answer | None) -> VersionedRow | Answer:
    if hero is None:
        raise HeroNotFound
    return hero
