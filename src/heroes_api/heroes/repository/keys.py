"""The stored answers of keyed writes (``Idempotency-Key``), read and written inside the write
batch's own transaction: a few statements a batch, whatever its number of keyed writes.

The primary key ``(scope, key)`` is what makes a key's write happen once across processes: two
transactions that insert the same key cannot both commit. ``store`` inserts with ``ON CONFLICT
DO NOTHING``; on PostgreSQL that waits for a competing transaction holding the key to end, so a
key it reports as taken is committed, and the next transaction reads its answer.
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, delete, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
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


async def find(session: AsyncSession, ids: Collection[KeyId]) -> dict[KeyId, StoredAnswer]:
    """The stored answers among ``ids``, expired ones included (the caller decides)."""
    columns = (KEYS.c.scope, KEYS.c.key, KEYS.c.fingerprint, KEYS.c.status, KEYS.c.body)
    statement: Any = select(*columns, KEYS.c.etag, KEYS.c.created).where(
        tuple_(KEYS.c.scope, KEYS.c.key).in_(list(ids))
    )
    rows = await session.exec(statement)
    return {(scope, key): StoredAnswer(*answer) for scope, key, *answer in rows}


async def store(session: AsyncSession, answers: Sequence[tuple[KeyId, StoredAnswer]]) -> set[KeyId]:
    """Insert the answers in one statement; the ids among them another transaction holds."""
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
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(KEYS).on_conflict_do_nothing().returning(KEYS.c.scope, KEYS.c.key)
    inserted = {(scope, key) for scope, key in await session.exec(statement, params=values)}
    return {key_id for key_id, _ in answers} - inserted


async def forget(session: AsyncSession, ids: Collection[KeyId]) -> None:
    """Delete these keys (expired ones, about to be used again)."""
    await session.exec(delete(KEYS).where(tuple_(KEYS.c.scope, KEYS.c.key).in_(list(ids))))


async def purge(session: AsyncSession, created_before: float, limit: int) -> int:
    """Delete up to ``limit`` keys stored before ``created_before``, oldest first; how many."""
    oldest = (
        select(KEYS.c.scope, KEYS.c.key)
        .where(KEYS.c.created < created_before)
        .order_by(KEYS.c.created)
        .limit(limit)
    )
    statement = delete(KEYS).where(tuple_(KEYS.c.scope, KEYS.c.key).in_(oldest))
    result = await session.exec(statement)
    return int(result.rowcount)
