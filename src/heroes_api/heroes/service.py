"""Hero queries: plain async functions, session first, each written for a whole batch.

A single request is a batch of one. Reads select the public columns only and return them as
plain rows (``PublicHero``): no ORM identity map, no per-row model validation, and no way for
``secret_name`` to reach a response. Writes are ``INSERT/UPDATE/DELETE ... RETURNING``: atomic
under concurrency, and a hero deleted by a concurrent request is simply "not found".
"""

from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, cast

from sqlalchemy import Table, case, delete, insert, literal, update
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from heroes_api.heroes.schemas import HeroCreate
from heroes_api.models import Hero

# Core statements on the table: the ORM's bulk paths cost ~50% more per row here.
HERO: Table = Hero.metadata.tables["hero"]
HERO_PUBLIC = (HERO.c.id, HERO.c.name, HERO.c.age)


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


def public_hero(row: Sequence[Any]) -> PublicHero:
    hero_id, name, age = row
    return {"id": cast(int, hero_id), "name": name, "age": age}


async def get_heroes(session: AsyncSession, ids: Collection[int]) -> dict[int, PublicHero]:
    """The heroes among ``ids`` that exist, by id: one ``SELECT ... WHERE id IN (...)``."""
    return _by_id(await session.exec(select(*HERO_PUBLIC).where(HERO.c.id.in_(ids))))


async def apply_writes(session: AsyncSession, writes: Sequence[Write]) -> list[PublicHero | None]:
    """Run ``writes`` in the session's transaction (the caller commits); each gets the hero it
    created, changed or deleted, or None when its hero does not exist.

    A batch costs a few statements, not one per write: the creates are one multi-row
    ``INSERT ... RETURNING``; the updates and deletes run in rounds in which each hero appears
    once (its k-th write in round k, so writes to one hero keep their order), each round one
    ``UPDATE ... SET col = CASE id WHEN ... END ... RETURNING`` and one
    ``DELETE ... WHERE id IN (...) RETURNING``.
    """
    outcomes: list[PublicHero | None] = [None] * len(writes)
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
        for i in round_:
            outcomes[i] = found.get(cast(Update | Delete, writes[i]).hero_id)
    return outcomes


async def _insert(session: AsyncSession, creates: Sequence[Create]) -> list[PublicHero]:
    """One multi-row INSERT. RETURNING's row order is not guaranteed (and SQLAlchemy can only
    promise it on SQLite by inserting row by row), so rows are matched to their creates by
    content: creates with identical content are interchangeable, any other pairing is exact."""
    values = [create.hero.model_dump() for create in creates]
    statement = insert(HERO).returning(*HERO_PUBLIC, HERO.c.secret_name)
    ids: defaultdict[tuple[Any, ...], list[int]] = defaultdict(list)
    for hero_id, name, age, secret_name in await session.exec(statement, params=values):
        ids[name, age, secret_name].append(hero_id)
    return [
        {"id": ids[v["name"], v["age"], v["secret_name"]].pop(), "name": v["name"], "age": v["age"]}
        for v in values
    ]


async def _update(session: AsyncSession, updates: Sequence[Update]) -> dict[int, PublicHero]:
    """One UPDATE for heroes with distinct ids; each column sent by any of them is set through a
    ``CASE id``, and the others keep their value."""
    columns: dict[str, dict[int, Any]] = defaultdict(dict)
    for write in updates:
        for name, value in write.changes.items():
            columns[name][write.hero_id] = value
    values = {
        name: case(
            {literal(hero_id): literal(value, HERO.c[name].type) for hero_id, value in new.items()},
            value=HERO.c.id,
            else_=HERO.c[name],
        )
        for name, new in columns.items()
    }
    ids = [write.hero_id for write in updates]
    statement = update(HERO).where(HERO.c.id.in_(ids)).values(values).returning(*HERO_PUBLIC)
    return _by_id(await session.exec(statement))


async def _delete(session: AsyncSession, deletes: Sequence[Delete]) -> dict[int, PublicHero]:
    ids = [write.hero_id for write in deletes]
    return _by_id(
        await session.exec(delete(HERO).where(HERO.c.id.in_(ids)).returning(*HERO_PUBLIC))
    )


def _by_id(rows: Iterable[Any]) -> dict[int, PublicHero]:
    heroes = (public_hero(row) for row in rows)
    return {hero["id"]: hero for hero in heroes}


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
