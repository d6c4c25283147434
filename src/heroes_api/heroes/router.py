"""HTTP routes for heroes: parse, call the hero store, return."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from heroes_api.errors import ErrorDetail
from heroes_api.heroes.pages import Page
from heroes_api.heroes.schemas import (
    INT32_MAX,
    INT32_MIN,
    HeroCreate,
    HeroPublic,
    HeroQuery,
    HeroUpdate,
)
from heroes_api.heroes.service import PublicHero
from heroes_api.heroes.store import HeroStoreDep
from heroes_api.responses import RenderedJSON

router = APIRouter(
    prefix="/heroes",
    tags=["heroes"],
    responses={503: {"model": ErrorDetail, "description": "Database unavailable; retry"}},
)

HeroId = Annotated[int, Path(ge=INT32_MIN, le=INT32_MAX, description="The hero's id.")]
NEXT_LINK = {
    "description": 'When the page is full: `<url>; rel="next"` (RFC 8288), the URL of the next '
    "page, with the same filters and limit and `after_id` set to this page's last id.",
    "schema": {"type": "string"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "Hero not found"}
}


def _next_page(request: Request, page: list[PublicHero], limit: int) -> dict[str, str] | None:
    if len(page) < limit:
        return None
    url = request.url.remove_query_params("offset").include_query_params(after_id=page[-1]["id"])
    return {"Link": f'<{url}>; rel="next"'}


@router.post("/", response_model=HeroPublic, summary="Create a hero")
async def create_hero(heroes: HeroStoreDep, hero: HeroCreate) -> RenderedJSON:
    """Store a new hero; a client-sent ``id`` is ignored."""
    return RenderedJSON(await heroes.create(hero))


@router.get(
    "/",
    response_model=list[HeroPublic],
    responses={200: {"headers": {"Link": NEXT_LINK}}},
    summary="List heroes",
)
async def read_heroes(
    request: Request, heroes: HeroStoreDep, query: Annotated[HeroQuery, Query()]
) -> RenderedJSON:
    """A page of heroes ordered by id: by ``offset``, or after an id (``after_id``, as cheap at
    any depth), optionally only those with a ``name`` or an age in ``min_age..max_age``."""
    page = await heroes.page(Page(**query.model_dump()))
    return RenderedJSON(page, headers=_next_page(request, page, query.limit))


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
