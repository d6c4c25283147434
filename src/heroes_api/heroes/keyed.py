"""Writes sent with an ``Idempotency-Key``: their answers stored in the write's own transaction,
and a repeat answered from the stored answer (the HTTP edge is ``heroes.idempotency``, the SQL
``heroes.repository.keys``).

Exactly-once follows from atomicity: the answer is written by the same transaction as the write
it records, so a crash before COMMIT leaves neither and a crash after leaves both. Across
transactions the keys' primary key decides: two that store the same key cannot both commit.
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from pydantic_core import to_json
from sqlmodel.ext.asyncio.session import AsyncSession

from heroes_api.heroes import repository
from heroes_api.heroes.errors import IdempotencyKeyReused
from heroes_api.heroes.etags import etag
from heroes_api.heroes.repository import Delete, VersionedRow, Write, keys
from heroes_api.heroes.repository.keys import KeyId, RequestKey, StoredAnswer

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


class KeyedWrites:
    """Runs a write batch's statements, keyed writes' answers included."""

    def __init__(self, ttl: float) -> None:
        """A stored answer counts for ``ttl`` seconds."""
        self.ttl = ttl
        # Seconds since the epoch: when answers were stored and when they expire (tests drive it).
        self.clock: Callable[[], float] = time.time
        self._purged_at = float("-inf")

    async def stored(self, session: AsyncSession, key: RequestKey) -> Answer | None:
        """The answer ``key`` holds for this request (replayed), or None when it holds none;
        ``IdempotencyKeyReused`` when it holds one for another request."""
        answer = (await keys.find(session, [key.id])).get(key.id)
        if answer is None or answer.created <= self.clock() - self.ttl:
            return None
        replay = _replay(answer, key)
        if isinstance(replay, IdempotencyKeyReused):
            raise replay
        return replay

    async def apply(
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
            elif answer.created <= now - self.ttl:  # as if never used
                expired.append(key.id)
                fresh.append(i)
            else:
                results[i] = _replay(answer, key)
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
            raise KeyTaken  # look again, first: one of them is a repeat (of a delete, say)
        if new and not await keys.store(session, new):
            raise KeyTaken
        if now - self._purged_at >= PURGE_EVERY:
            self._purged_at = now
            await keys.purge(session, now - self.ttl, PURGE_LIMIT)
        return results


def _replay(answer: StoredAnswer, key: RequestKey) -> Answer | IdempotencyKeyReused:
    """A live stored answer, replayed to a repeat of its request; another request's: a 422."""
    if answer.fingerprint != key.fingerprint:
        return IdempotencyKeyReused()
    return Answer(answer.status, answer.body, answer.etag, replayed=True)


class KeyTaken(Exception):
    """A key this batch was about to store exists already (or is held by a transaction that
    has since committed it)."""


def same_keys(writes: Sequence[Write]) -> tuple[list[int], dict[int, int]]:
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


def repeat(write: Write, first: Write, result: Written | Exception) -> Written | Exception:
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
