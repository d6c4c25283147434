"""HTTP routes for heroes: parse, call one service function, return."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from heroes_api.db import SessionDep, WriteSessionDep
from heroes_api.errors import ErrorDetail
from heroes_api.heroes import service
from heroes_api.heroes.schemas import (
    INT32_MAX,
    INT32_MIN,
    INT64_MAX,
    HeroCreate,
    HeroPublic,
    HeroUpdate,
)
from heroes_api.models import Hero

router = APIRouter(
    prefix="/heroes",
    tags=["heroes"],
    responses={503: {"model": ErrorDetail, "description": "Database unavailable; retry"}},
)

HeroId = Annotated[int, Path(ge=INT32_MIN, le=INT32_MAX, description="The hero's id.")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "Hero not found"}
}


@router.post("/", response_model=HeroPublic, summary="Create a hero")
async def create_hero(session: WriteSessionDep, hero: HeroCreate) -> Hero:
    """Store a new hero; a client-sent ``id`` is ignored."""
    return await service.create_hero(session, hero)


@router.get("/", response_model=list[HeroPublic], summary="List heroes")
async def read_heroes(
    session: SessionDep,
    offset: Annotated[int, Query(ge=0, le=INT64_MAX, description="Heroes to skip.")] = 0,
    limit: Annotated[int, Query(ge=1, le=100, description="Most heroes to return.")] = 100,
) -> list[Hero]:
    """A page of heroes, ordered by id."""
    return await service.list_heroes(session, offset=offset, limit=limit)


@router.get("/{hero_id}", response_model=HeroPublic, responses=NOT_FOUND, summary="Read a hero")
async def read_hero(session: SessionDep, hero_id: HeroId) -> Hero:
    return await service.get_hero(session, hero_id)


@router.patch("/{hero_id}", response_model=HeroPublic, responses=NOT_FOUND, summary="Update a hero")
async def update_hero(session: WriteSessionDep, hero_id: HeroId, hero: HeroUpdate) -> Hero:
    """Change only the fields sent; ``age`` may be set to null."""
    return await service.update_hero(session, hero_id, hero)


@router.delete("/{hero_id}", responses=NOT_FOUND, summary="Delete a hero")
async def delete_hero(session: WriteSessionDep, hero_id: HeroId) -> dict[str, bool]:
    await service.delete_hero(session, hero_id)
    return {"ok": True}
