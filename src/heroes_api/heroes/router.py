"""HTTP routes for heroes: parse, call one service function, return."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from heroes_api.errors import ErrorDetail
from heroes_api.heroes.schemas import (
    INT32_MAX,
    INT32_MIN,
    INT64_MAX,
    HeroCreate,
    HeroPublic,
    HeroUpdate,
)
from heroes_api.heroes.store import HeroStoreDep
from heroes_api.responses import RenderedJSON

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
async def create_hero(heroes: HeroStoreDep, hero: HeroCreate) -> RenderedJSON:
    """Store a new hero; a client-sent ``id`` is ignored."""
    return RenderedJSON(await heroes.create(hero))


@router.get("/", response_model=list[HeroPublic], summary="List heroes")
async def read_heroes(
    heroes: HeroStoreDep,
    offset: Annotated[int, Query(ge=0, le=INT64_MAX, description="Heroes to skip.")] = 0,
    limit: Annotated[int, Query(ge=1, le=100, description="Most heroes to return.")] = 100,
) -> RenderedJSON:
    """A page of heroes, ordered by id."""
    return RenderedJSON(await heroes.page(offset=offset, limit=limit))


@router.get("/{hero_id}", response_model=HeroPublic, responses=NOT_FOUND, summary="Read a hero")
async def read_hero(heroes: HeroStoreDep, hero_id: HeroId) -> RenderedJSON:
    return RenderedJSON(await heroes.get(hero_id))


@router.patch("/{hero_id}", response_model=HeroPublic, responses=NOT_FOUND, summary="Update a hero")
async def update_hero(heroes: HeroStoreDep, hero_id: HeroId, hero: HeroUpdate) -> RenderedJSON:
    """Change only the fields sent; ``age`` may be set to null."""
    return RenderedJSON(await heroes.update(hero_id, hero))


@router.delete("/{hero_id}", responses=NOT_FOUND, summary="Delete a hero")
async def delete_hero(heroes: HeroStoreDep, hero_id: HeroId) -> dict[str, bool]:
    await heroes.delete(hero_id)
    return {"ok": True}
