"""Where hero requests meet the database: batched across concurrent requests, or one by one.

With batching on (``HEROES_BATCHING``, the default) concurrent point reads share one
``SELECT ... WHERE id IN (...)``, and concurrent writes share one transaction and one commit
(group commit); see ``heroes_api.batching``. Every caller still gets its own answer, and a write
is acknowledged only after the commit that holds it. With batching off, each request runs the
same queries as a batch of one, in a session of its own.
"""

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pydantic_core import to_json
from sqlmodel.ext.asyncio.session import AsyncSession

from heroes_api.batching import Batcher, BatchStats, RunBatch
from heroes_api.db import SessionMaker, translate_errors
from heroes_api.errors import DatabaseError, DatabaseRefusesWrites, DatabaseUnavailable
from heroes_api.heroes import repository
from heroes_api.heroes.errors import (
    HeroNotFound,
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    PreconditionFailed,
)
from heroes_api.heroes.etags import etag
from heroes_api.heroes.repository import (
    Create,
    Delete,
    HeroRow,
    Page,
    Update,
    VersionedRow,
    Write,
    keys,
)
from heroes_api.heroes.repository.keys import KeyId, RequestKey, StoredAnswer
from heroes_api.heroes.schemas import HeroCreate, HeroUpdate
from heroes_api.replicas import Replica, primary_position

logger = logging.getLogger(__name__)

# Expired keys are deleted in the write transactions, at most this many at a time, at most once
# every PURGE_EVERY seconds: steady traffic keeps the table at about a TTL's worth of keys.
PURGE_LIMIT = 1000
PURGE_EVERY = 60.0
DELETED = to_json({"ok": True})


@dataclass(frozen=True, slots=True)
class Answer:
    """A keyed write's answer, exactly as sent the first time; ``replayed`` for a repeat."""

    status: int
    body: bytes
    etag: str | None
    replayed: bool = False


# What a write comes to for its caller: the hero (None: not found) or, for a keyed write, the
# answer to send.
Written = VersionedRow | Answer | None


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
        self.idempotency_ttl = idempotency_ttl
        # Seconds since the epoch: when keys were stored and when they expire (tests drive it).
        self.clock: Callable[[], float] = time.time
        self._purged_at = float("-inf")

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
            # On the primary, as a write's reads are: a replica may not show the hero yet, or
            # show an older version that If-Match would wrongly accept.
            found = await (
                self.get(hero_id) if self._replica is None else self._get_primary(hero_id)
            )
            if versions is not None and found.version not in versions:
                raise PreconditionFailed
            return found
        return _or_not_found(await self._writes(Update(hero_id, changes, versions, key)))

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
        firsts, repeats = _same_keys(writes)
        if repeats:
            ran = await self._write_batch([writes[i] for i in firsts])
            results = dict(zip(firsts, ran, strict=True))
            for i, first in repeats.items():
                results[i] = _repeat(writes[i], writes[first], results[first])
            return [results[i] for i in range(len(writes))]
        try:
            return await self._commit(writes, lookup=False)
        except _StatementFailed as failed:
            error = failed.error
        if isinstance(error, _KeyTaken):  # a key was used before: look the keys up first
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
            return IdempotencyKeyInFlight() if isinstance(failed.error, _KeyTaken) else failed.error
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
                        results = await self._apply(session, writes, lookup)
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

    async def _apply(
        self, session: AsyncSession, writes: Sequence[Write], lookup: bool
    ) -> Sequence[Written | Exception]:
        """The batch's statements: the hero writes, and for keyed writes their answers, stored
        in the same transaction. A key is almost always new, so the stored answers are read
        first only with ``lookup``: the batch's first try stores its keys without looking, and
        a key that exists already (a repeat, or a write in flight in another process) fails the
        insert, undoing the batch, which then runs again with ``lookup``."""
        keyed = [write.key for write in writes if write.key is not None]
        if not keyed:
            return await repository.apply_writes(session, writes)
        now = self.clock()
        stored = await keys.find(session, [key.id for key in keyed]) if lookup else {}
        results: list[Written | Exception] = [None] * len(writes)
        fresh: list[int] = []  # the writes to run
        expired: list[KeyId] = []
        for i, write in enumerate(writes):
            key = write.key
            answer = stored.get(key.id) if key else None
            if key is None or answer is None:
                fresh.append(i)
            elif answer.created <= now - self.idempotency_ttl:  # as if never used
                expired.append(key.id)
                fresh.append(i)
            elif answer.fingerprint != key.fingerprint:
                results[i] = IdempotencyKeyReused()
            else:
                results[i] = Answer(answer.status, answer.body, answer.etag, replayed=True)
        if expired:
            await keys.forget(session, expired)
        written = await repository.apply_writes(session, [writes[i] for i in fresh])
        new: list[tuple[KeyId, StoredAnswer]] = []
        failed: list[KeyId] = []  # keyed writes that changed nothing: a repeat's hero may be gone
        for i, result in zip(fresh, written, strict=True):
            key = writes[i].key
            if key is None or not isinstance(result, VersionedRow):  # only successes are stored
                results[i] = result
                if key is not None and not lookup:
                    failed.append(key.id)
                continue
            results[i] = sent = _answer(writes[i], result)
            new.append(
                (key.id, StoredAnswer(key.fingerprint, sent.status, sent.body, sent.etag, now))
            )
        if failed and await keys.find(session, failed):
            raise _KeyTaken  # look again, first: one of them is a repeat (of a delete, say)
        if new and not await keys.store(session, new):
            raise _KeyTaken
        if now - self._purged_at >= PURGE_EVERY:
            self._purged_at = now
            await keys.purge(session, now - self.idempotency_ttl, PURGE_LIMIT)
        return results


class _StatementFailed(Exception):
    """A write batch failed before its COMMIT: nothing of it was stored."""

    def __init__(self, error: Exception) -> None:
        self.error = error


class _KeyTaken(Exception):
    """A key this batch was about to store exists already (or is held by a transaction that
    has since committed it)."""


def _same_keys(writes: Sequence[Write]) -> tuple[list[int], dict[int, int]]:
    """The writes to run (each key's first), and each repeat of a key mapped to its first."""
    firsts: list[int] = []
    repeats: dict[int, int] = {}
    seen: dict[KeyId, int] = {}
    for i, write in enumerate(writes):
        if write.key is not None:
            first = seen.setdefault(write.key.id, i)
            if first != i:
                repeats[i] = first
                continue
        firsts.append(i)
    return firsts, repeats


def _repeat(write: Write, first: Write, result: Written | Exception) -> Written | Exception:
    """What a repeat of a key gets from the key's first write in its batch: the first's answer,
    replayed; its failure (which stored nothing); or 422 if the two asked for different things."""
    if write.key is None or first.key is None or write.key.fingerprint != first.key.fingerprint:
        return IdempotencyKeyReused()
    return replace(result, replayed=True) if isinstance(result, Answer) else result


def _answer(write: Write, hero: VersionedRow) -> Answer:
    """The answer a successful keyed write sends, and stores for its repeats."""
    if isinstance(write, Delete):
        return Answer(200, DELETED, None)
    return Answer(200, to_json(hero.hero), etag(hero.hero["id"], hero.version))


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
