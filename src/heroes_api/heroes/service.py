"""Hero queries: plain async functions, session first, each written for a whole batch.

A single request is a batch of one. Reads select the public columns only and return them as
plain rows (``PublicHero``): no ORM identity map, no per-row model validation, and no way for
``secret_name`` to reach a response. Writes are ``INSERT/UPDATE/DELETE ... RETURNING``: atomic
under concurrency, and a hero deleted by a concurrent request is simply "not found".
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, cast

from sqlmodel import col, delete, insert, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from heroes_api.heroes.schemas import HeroCreate
from heroes_api.models import Hero

PUBLIC_COLUMNS = (col(Hero.id), col(Hero.name), col(Hero.age))


class PublicHero(TypedDict):
    """A hero as clients see it (``HeroPublic``'s fields), straight from a database row."""

    id: int
    name: str
    age: int | None


@dataclass(frozen=True, slots=True)
class Create:
    hero: HeroCreate


@dataclass(frozen=True, slots=True)
class Update:
    hero_id: int
    changes: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Delete:
    hero_id: int


Write = Create | Update | Delete


def _public(row: tuple[int | None, str, int | None]) -> PublicHero:
    hero_id, name, age = row
    return {"id": cast(int, hero_id), "name": name, "age": age}


async def list_heroes(session: AsyncSession, *, offset: int, limit: int) -> list[PublicHero]:
    statement = select(*PUBLIC_COLUMNS).order_by(col(Hero.id)).offset(offset).limit(limit)
    return [_public(row) for row in await session.exec(statement)]


async def get_heroes(session: AsyncSession, ids: Collection[int]) -> dict[int, PublicHero]:
    """The heroes among ``ids`` that exist, by id: one ``SELECT ... WHERE id IN (...)``."""
    statement = select(*PUBLIC_COLUMNS).where(col(Hero.id).in_(ids))
    heroes = (_public(row) for row in await session.exec(statement))
    return {hero["id"]: hero for hero in heroes}


async def apply_writes(session: AsyncSession, writes: Sequence[Write]) -> list[PublicHero | None]:
    """Run ``writes`` in the session's transaction (the caller commits); each gets the hero it
    created, changed or deleted, or None when its hero does not exist.

    Creates go first, as one multi-row ``INSERT ... RETURNING`` whose rows SQLAlchemy matches to
    their parameters. Updates and deletes then run in hero-id order (a stable sort, so writes to
    one hero keep their order): every transaction takes row locks in the same order, so
    concurrent batches in several processes cannot deadlock.
    """
    outcomes: list[PublicHero | None] = [None] * len(writes)
    creates = [i for i, write in enumerate(writes) if isinstance(write, Create)]
    if creates:
        statement = insert(Hero).returning(*PUBLIC_COLUMNS, sort_by_parameter_order=True)
        values = [cast(Create, writes[i]).hero.model_dump() for i in creates]
        rows = await session.exec(statement, params=values)
        for i, row in zip(creates, rows, strict=True):
            outcomes[i] = _public(row)
    changes = sorted(
        (i for i, write in enumerate(writes) if not isinstance(write, Create)),
        key=lambda i: cast(Update | Delete, writes[i]).hero_id,
    )
    for i in changes:
        outcomes[i] = await _change(session, cast(Update | Delete, writes[i]))
    return outcomes


async def _change(session: AsyncSession, write: Update | Delete) -> PublicHero | None:
    where = col(Hero.id) == write.hero_id
    statement = (
        update(Hero).where(where).values(write.changes)
        if isinstance(write, Update)
        else delete(Hero).where(where)
    )
    row = (await session.exec(statement.returning(*PUBLIC_COLUMNS))).one_or_none()
    return None if row is None else _public(row)
