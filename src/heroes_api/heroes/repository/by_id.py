"""Heroes by id, the point reads and the writes: plain async functions, session first, each
written for a whole batch.

A single request is a batch of one. Writes are ``INSERT/UPDATE/DELETE ... RETURNING``: atomic
under concurrency, and a hero deleted by a concurrent request is simply "not found".

Every change adds one to ``hero.version``; a write may be conditional on it (``If-Match``): the
check is part of the write's own ``WHERE`` (``AND CASE id WHEN :id THEN version IN (:v) ...``),
so check and write are one atomic statement, in a batch as alone. A conditional write whose
hero was not written is told apart afterwards, in the same transaction: 412 if the hero
exists, else 404.
"""

from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from sqlalchemy import and_, case, delete, false, insert, literal, true, update
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from heroes_api.heroes.errors import PreconditionFailed
from heroes_api.heroes.repository.keys import RequestKey
from heroes_api.heroes.repository.rows import (
    HERO,
    PUBLIC_FIELDS,
    VERSIONED_COLUMNS,
    VersionedRow,
    keyed_by_id,
    versioned_row,
)
from heroes_api.heroes.schemas import HeroCreate

# Bind parameters one UPDATE or DELETE may use: both backends allow 32,766 or more.
MAX_PARAMETERS = 30_000


@dataclass(frozen=True, slots=True)
class Create:
    hero: HeroCreate
    # Idempotency-Key: read by the service, which answers a repeat from the stored answer.
    key: RequestKey | None = None


@dataclass(frozen=True, slots=True)
class Update:
    hero_id: int
    changes: dict[str, Any]
    # The versions the hero must be at for the write to happen (If-Match); None: any.
    versions: frozenset[int] | None = None
    key: RequestKey | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    hero_id: int
    versions: frozenset[int] | None = None
    key: RequestKey | None = None


Write = Create | Update | Delete
W = TypeVar("W", Update, Delete)
# What a write comes to: the hero it created, changed or deleted; None when its hero does not
# exist (404); PreconditionFailed when the hero is not at a version its If-Match allows (412).
WriteResult = VersionedRow | None | PreconditionFailed


async def get_heroes(session: AsyncSession, ids: Collection[int]) -> dict[int, VersionedRow]:
    """The heroes among ``ids`` that exist, by id: one ``SELECT ... WHERE id IN (...)``."""
    return keyed_by_id(await session.exec(select(*VERSIONED_COLUMNS).where(HERO.c.id.in_(ids))))


async def apply_writes(session: AsyncSession, writes: Sequence[Write]) -> list[WriteResult]:
    """Run ``writes`` in the session's transaction (the caller commits); each gets the hero it
    created, changed or deleted, None when its hero does not exist, or ``PreconditionFailed``
    when the hero is not at a version its ``If-Match`` allows.

    A batch costs a few statements, not one per write: the creates are one multi-row
    ``INSERT ... RETURNING``; the updates and deletes run in rounds in which each hero appears
    once (its k-th write in round k, so writes to one hero keep their order), each round one
    ``UPDATE ... SET col = CASE id WHEN ... END ... RETURNING`` and one
    ``DELETE ... WHERE id IN (...) RETURNING``.
    """
    outcomes: list[WriteResult] = [None] * len(writes)
    creates = [i for i, write in enumerate(writes) if isinstance(write, Create)]
    if creates:
        created = await _insert(session, [cast(Create, writes[i]) for i in creates])
        for i, hero in zip(creates, created, strict=True):
            outcomes[i] = hero
    changes = (i for i, write in enumerate(writes) if not isinstance(write, Create))
    for round_ in _rounds(writes, changes):
        updates = [cast(Update, writes[i]) for i in round_ if isinstance(writes[i], Update)]
        deletes = [cast(Delete, writes[i]) for i in round_ if isinstance(writes[i], Delete)]
        found = {
            **(await _update(session, updates) if updates else {}),
            **(await _delete(session, deletes) if deletes else {}),
        }
        both: list[Update | Delete] = [*updates, *deletes]
        conditional = [write for write in both if write.versions is not None]
        missed = [write for write in conditional if write.hero_id not in found]
        # A conditional write that wrote nothing: 412 if its hero exists (at another version).
        stale = await _existing(session, {w.hero_id for w in missed}) if missed else set()
        for i in round_:
            hero_id = cast(Update | Delete, writes[i]).hero_id
            outcomes[i] = found.get(hero_id) or (PreconditionFailed() if hero_id in stale else None)
    return outcomes


# A create's fields (in model_dump's order): the public ones come back in VERSIONED_COLUMNS, the
# others (secret_name) are returned after them; where each is in a returned row.
_CREATE_FIELDS = tuple(HeroCreate.model_fields)
_PRIVATE_FIELDS = tuple(name for name in _CREATE_FIELDS if name not in PUBLIC_FIELDS)
_INSERT = insert(HERO).returning(*VERSIONED_COLUMNS, *(HERO.c[name] for name in _PRIVATE_FIELDS))
_CREATE_AT = tuple(
    PUBLIC_FIELDS.index(name)
    if name in PUBLIC_FIELDS
    else len(VERSIONED_COLUMNS) + _PRIVATE_FIELDS.index(name)
    for name in _CREATE_FIELDS
)


async def _insert(session: AsyncSession, creates: Sequence[Create]) -> list[VersionedRow]:
    """One multi-row INSERT. RETURNING's row order is not guaranteed (and SQLAlchemy can only
    promise it on SQLite by inserting row by row), so rows are matched to their creates by
    content: creates with identical content are interchangeable, any other pairing is exact."""
    values = [create.hero.model_dump() for create in creates]
    rows: defaultdict[tuple[Any, ...], list[VersionedRow]] = defaultdict(list)
    for row in await session.exec(_INSERT, params=values):
        rows[tuple(row[i] for i in _CREATE_AT)].append(versioned_row(row))
    return [rows[tuple(v.values())].pop() for v in values]


async def _update(session: AsyncSession, updates: Sequence[Update]) -> dict[int, VersionedRow]:
    """UPDATEs for heroes with distinct ids (one, unless the bind parameters would exceed
    MAX_PARAMETERS); each column sent by any of them is set through a ``CASE id``, the others
    keep their value, and every hero written gets one more version."""
    found: dict[int, VersionedRow] = {}
    for chunk in _chunks(updates, lambda w: 1 + 2 * len(w.changes)):
        found.update(await _update_chunk(session, chunk))
    return found


async def _update_chunk(
    session: AsyncSession, updates: Sequence[Update]
) -> dict[int, VersionedRow]:
    columns: dict[str, dict[int, Any]] = defaultdict(dict)
    for write in updates:
        for name, value in write.changes.items():
            columns[name][write.hero_id] = value
    values: dict[str, Any] = {
        name: case(
            {literal(hero_id): literal(value, HERO.c[name].type) for hero_id, value in new.items()},
            value=HERO.c.id,
            else_=HERO.c[name],
        )
        for name, new in columns.items()
    }
    values["version"] = HERO.c.version + 1
    statement = update(HERO).where(_targets(updates)).values(values).returning(*VERSIONED_COLUMNS)
    return keyed_by_id(await session.exec(statement))


async def _delete(session: AsyncSession, deletes: Sequence[Delete]) -> dict[int, VersionedRow]:
    found: dict[int, VersionedRow] = {}
    for chunk in _chunks(deletes, lambda _: 1):
        statement = delete(HERO).where(_targets(chunk)).returning(*VERSIONED_COLUMNS)
        found.update(keyed_by_id(await session.exec(statement)))
    return found


def _targets(writes: Sequence[Update] | Sequence[Delete]) -> Any:
    """The rows ``writes`` may change: each by id, and for the conditional ones only at a
    version they allow, through one ``CASE id WHEN :id THEN version IN (:v, ...) ... ELSE
    true END`` (a row-value ``(id, version) IN (...)`` list of thousands overflows PostgreSQL's
    parser stack)."""
    by_id = HERO.c.id.in_([write.hero_id for write in writes])
    checks = {
        literal(w.hero_id): HERO.c.version.in_(sorted(w.versions)) if w.versions else false()
        for w in writes
        if w.versions is not None
    }
    if not checks:
        return by_id
    return and_(by_id, case(checks, value=HERO.c.id, else_=true()))


def _chunks(writes: Sequence[W], parameters: Callable[[W], int]) -> Iterable[list[W]]:
    """``writes`` in order, cut so that no statement binds more than MAX_PARAMETERS values
    (``parameters(write)`` of its own, two more for a conditional write, and each version)."""
    chunk: list[W] = []
    used = 0
    for write in writes:
        cost = parameters(write) + (0 if write.versions is None else 2 + len(write.versions))
        if chunk and used + cost > MAX_PARAMETERS:
            yield chunk
            chunk, used = [], 0
        chunk.append(write)
        used += cost
    if chunk:
        yield chunk


async def _existing(session: AsyncSession, ids: Collection[int]) -> set[int]:
    return set(await session.exec(select(HERO.c.id).where(HERO.c.id.in_(ids))))


def _rounds(writes: Sequence[Write], changes: Iterable[int]) -> list[list[int]]:
    """Split the updates and deletes (indexes into ``writes``) into rounds in which each hero
    appears at most once: a hero's k-th write goes to round k, so its writes keep their order."""
    rounds: list[list[int]] = []
    seen: Counter[int] = Counter()
    for i in changes:
        hero_id = cast(Update | Delete, writes[i]).hero_id
        if seen[hero_id] == len(rounds):
            rounds.append([])
        rounds[seen[hero_id]].append(i)
        seen[hero_id] += 1
    return rounds
