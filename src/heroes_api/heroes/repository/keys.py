"""The stored answers of keyed writes (``Idempotency-Key``), read and written inside the write
batch's own transaction: a few statements a batch, whatever its number of keyed writes.

The primary key ``(scope, key)`` is what makes a key's write happen once across processes: two
transactions that insert the same key cannot both commit. On PostgreSQL an insert waits for a
competing transaction that holds the key to end, so a key ``store`` reports as taken is
committed, and the next transaction reads its answer.
"""

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, and_, delete, func, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from heroes_api.models import IdempotencyKey

KEYS: Table = IdempotencyKey.metadata.tables["idempotency_key"]
# (scope, key): a key as stored, one per API key holder.
KeyId = tuple[str, str]


@dataclass(frozen=True, slots=True)
class RequestKey:
    """A write's ``Idempotency-Key``, whose it is, and what the write asked for."""

    scope: str
    key: str
    fingerprint: str

    @property
    def id(self) -> KeyId:
        return self.scope, self.key


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """A keyed write's answer, exactly as it was sent."""

    fingerprint: str
    status: int
    body: bytes
    etag: str | None
    created: float


def _among(ids: Collection[KeyId]) -> Any:
    """``ids`` as a condition the primary key's index serves: ``scope = :s AND key IN (...)``
    for each scope (a batch has one, unless API keys are set). A row-value ``(scope, key) IN``
    list makes SQLite scan the whole table."""
    by_scope: defaultdict[str, list[str]] = defaultdict(list)
    for scope, key in ids:
        by_scope[scope].append(key)
    return or_(*(and_(KEYS.c.scope == s, KEYS.c.key.in_(keys)) for s, keys in by_scope.items()))


async def find(session: AsyncSession, ids: Collection[KeyId]) -> dict[KeyId, StoredAnswer]:
    """The stored answers among ``ids``, expired ones included (the caller decides)."""
    columns = (KEYS.c.scope, KEYS.c.key, KEYS.c.fingerprint, KEYS.c.status, KEYS.c.body)
    statement: Any = select(*columns, KEYS.c.etag, KEYS.c.created).where(_among(ids))
    rows = await session.exec(statement)
    return {(scope, key): StoredAnswer(*answer) for scope, key, *answer in rows}


async def store(session: AsyncSession, answers: Sequence[tuple[KeyId, StoredAnswer]]) -> bool:
    """Insert the answers in one statement; False, and the transaction unusable, if a key among
    them exists already (on PostgreSQL, after waiting for a transaction that holds it)."""
    values: list[dict[str, Any]] = [
        {
            "scope": scope,
            "key": key,
            "fingerprint": answer.fingerprint,
            "status": answer.status,
            "body": answer.body,
            "etag": answer.etag,
            "created": answer.created,
        }
        for (scope, key), answer in answers
    ]
    try:
        await session.exec(insert(KEYS), params=values)
    except IntegrityError:
        return False
    return True


async def forget(session: AsyncSession, ids: Collection[KeyId]) -> None:
    """Delete these keys (expired ones, about to be used again)."""
    await session.exec(delete(KEYS).where(_among(ids)))


async def purge(session: AsyncSession, created_before: float, limit: int) -> int:
    """Delete the ``limit`` oldest keys stored before ``created_before`` (and any stored at the
    same moment as the last of them: a batch's keys share it); how many. Two ranges of
    ``ix_idempotency_key_created``: the ``limit``-th oldest key's time (none when fewer are that
    old: then all of them), then every key up to it."""
    boundary = (
        select(KEYS.c.created)
        .where(KEYS.c.created < created_before)
        .order_by(KEYS.c.created)
        .offset(limit - 1)
        .limit(1)
        .scalar_subquery()
    )
    statement = delete(KEYS).where(
        KEYS.c.created <= func.coalesce(boundary, created_before), KEYS.c.created < created_before
    )
    result = await session.exec(statement)
    return int(result.rowcount)
