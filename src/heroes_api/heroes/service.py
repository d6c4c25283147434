"""Hero use cases: plain async functions, session first, committing before they return.

Writes are single statements (``INSERT``/``UPDATE``/``DELETE ... RETURNING``): one round trip,
atomic under concurrency, and a hero deleted by a concurrent request is simply "not found"
instead of a stale-row error.
"""

from sqlmodel import col, delete, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from heroes_api.errors import HeroNotFound
from heroes_api.heroes.schemas import HeroCreate, HeroUpdate
from heroes_api.models import Hero


async def list_heroes(session: AsyncSession, *, offset: int, limit: int) -> list[Hero]:
    result = await session.exec(select(Hero).order_by(col(Hero.id)).offset(offset).limit(limit))
    return list(result.all())


async def get_hero(session: AsyncSession, hero_id: int) -> Hero:
    hero = await session.get(Hero, hero_id)
    if hero is None:
        raise HeroNotFound
    return hero


async def create_hero(session: AsyncSession, hero_in: HeroCreate) -> Hero:
    hero = Hero.model_validate(hero_in)
    session.add(hero)
    await session.commit()
    return hero


async def update_hero(session: AsyncSession, hero_id: int, hero_in: HeroUpdate) -> Hero:
    changes = hero_in.model_dump(exclude_unset=True)
    if not changes:
        return await get_hero(session, hero_id)
    statement = update(Hero).where(col(Hero.id) == hero_id).values(changes).returning(Hero)
    hero: Hero | None = (await session.exec(statement)).scalar_one_or_none()
    if hero is None:
        raise HeroNotFound
    await session.commit()
    return hero


async def delete_hero(session: AsyncSession, hero_id: int) -> None:
    statement = delete(Hero).where(col(Hero.id) == hero_id).returning(col(Hero.id))
    deleted = (await session.exec(statement)).scalar_one_or_none()
    if deleted is None:
        raise HeroNotFound
    await session.commit()
