"""HTTP routes for heroes: parse, call the hero service, return.

Two routers, ``hero_reads`` and ``hero_writes``, so that the app can put either behind the API
keys.
"""

import re
from typing import Annotated, Any, NoReturn
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError

from heroes_api.errors import ErrorDetail
from heroes_api.heroes import consistency, idempotency
from heroes_api.heroes.etags import MAX_TAGS, TAGS_PATTERN, etag, is_not_modified, versions_to_match
from heroes_api.heroes.keyed import Answer
from heroes_api.heroes.repository import HeroRow, Page, VersionedRow
from heroes_api.heroes.schemas import Age, HeroCreate, HeroPublic, HeroUpdate, Text
from heroes_api.heroes.service import HeroService
from heroes_api.models import INT32_MAX, INT32_MIN, INT64_MAX
from heroes_api.responses import RenderedJSON
from heroes_api.state import app_state


async def get_hero_service(request: Request) -> HeroService:
    """``async``: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per
    request."""
    return app_state(request.app).hero_service


HeroServiceDep = Annotated[HeroService, Depends(get_hero_service)]

UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorDetail, "description": "Database unavailable; retry"}
}
hero_reads = APIRouter(prefix="/heroes", tags=["heroes"], responses=UNAVAILABLE)
hero_writes = APIRouter(prefix="/heroes", tags=["heroes"], responses=UNAVAILABLE)

HeroId = Annotated[int, Path(ge=INT32_MIN, le=INT32_MAX, description="The hero's id.")]
NO_AGE = "A hero without an age matches no age bound."
NEXT_LINK = {
    "description": 'When the page is full: `<url>; rel="next"` (RFC 8288), the URL of the next '
    "page, with the same filters and limit and `after_id` set to this page's last id.",
    "schema": {"type": "string"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "Hero not found"}
}
ETAG = {
    "description": 'The hero\'s entity tag, `"<id>-<version>"`: it changes with every change '
    "to the hero.",
    "schema": {"type": "string"},
}
WITH_ETAG: dict[int | str, dict[str, Any]] = {200: {"headers": {"ETag": ETAG}}}
WRITTEN: dict[int | str, dict[str, Any]] = {
    200: {"headers": {"ETag": ETAG, **consistency.RESPONSE_HEADER}}
}
CONDITIONAL: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    412: {"model": ErrorDetail, "description": "The hero's ETag no longer matches If-Match"},
}


def _header(name: str, description: str) -> dict[str, Any]:
    """An optional precondition header, as documented; read from the request by
    ``_precondition`` (a nullable ``Header`` parameter would be documented as taking null)."""
    schema = {"type": "string", "pattern": TAGS_PATTERN}
    return {"name": name, "in": "header", "description": description, "schema": schema}


IF_MATCH = _header(
    "If-Match",
    'Only change the hero if its ETag is one of these (`"7-2"`), or `*`. Without it the '
    "change is unconditional.",
)
IF_NONE_MATCH = _header(
    "If-None-Match", "Answer 304 without a body if the hero's ETag is one of these, or `*`."
)
_TAGS = re.compile(TAGS_PATTERN)


def _precondition(request: Request, name: str) -> str | None:
    """The header's value, or None; one that is not ``*`` or a list of quoted entity tags is a
    422 naming it, like any other invalid parameter."""
    value = None
    raw = name.encode("latin-1")  # from the scope: building request.headers costs more
    for key, header in request.scope["headers"]:
        if key == raw:
            value = header.decode("latin-1")
            break
    if value is None or _TAGS.match(value):
        return value
    error = {
        "type": "string_pattern_mismatch",
        "loc": ("header", name),
        "msg": f'{name} must be "*" or up to {MAX_TAGS} comma-separated quoted entity tags',
    }
    raise RequestValidationError([error])


def _tagged(found: VersionedRow | Answer) -> Response:
    if isinstance(found, Answer):
        return idempotency.sent(found)
    return RenderedJSON(found.hero, etag=etag(found.hero["id"], found.version))


def _page(
    offset: int,
    limit: int,
    name: str | None,
    min_age: int | None,
    max_age: int | None,
    after: int | None,
) -> Page:
    """The page asked for, once the rules between parameters hold (OpenAPI cannot state them)."""
    if min_age is not None and max_age is not None and min_age > max_age:
        _reject("min_age must not be greater than max_age")
    if after is not None and offset:
        _reject("use after_id or offset, not both")
    return Page(offset, limit, name, min_age, max_age, after)


def _reject(message: str) -> NoReturn:
    error = {"type": "value_error", "loc": ("query",), "msg": f"Value error, {message}"}
    raise RequestValidationError([error])


def _next_page(request: Request, page: Page, heroes: list[HeroRow]) -> dict[str, str] | None:
    """``Link`` to the next page when this one is full: its filters and limit, ``after_id`` set
    to the last id. A relative reference (RFC 8288 allows it): no Host header is echoed."""
    if len(heroes) < page.limit:
        return None
    query = {name: value for name, value in page.params().items() if name != "offset"}
    query["after_id"] = heroes[-1]["id"]
    return {"Link": f'<{request.url.path}?{urlencode(query)}>; rel="next"'}


@hero_writes.post(
    "/",
    response_model=HeroPublic,
    responses={**WRITTEN, **idempotency.RESPONSES},
    summary="Create a hero",
    openapi_extra={"parameters": [idempotency.PARAMETER]},
)
async def create_hero(request: Request, service: HeroServiceDep, hero: HeroCreate) -> Response:
    """Store a new hero; a client-sent ``id`` is ignored."""
    key = idempotency.request_key(request, "POST /heroes/", hero.model_dump)
    return consistency.with_token(service, _tagged(await service.create(hero, key)))


@hero_reads.get(
    "/",
    response_model=list[HeroPublic],
    responses={200: {"headers": {"Link": NEXT_LINK}}},
    summary="List heroes",
    openapi_extra={"parameters": [consistency.PARAMETER]},
)
async def read_heroes(
    request: Request,
    service: HeroServiceDep,
    offset: Annotated[int, Query(ge=0, le=INT64_MAX, description="Heroes to skip.")] = 0,
    limit: Annotated[int, Query(ge=1, le=100, description="Most heroes to return.")] = 100,
    name: Annotated[
        Text | None, Query(description="Only heroes with exactly this name (case-sensitive).")
    ] = None,
    min_age: Annotated[
        Age | None,
        Query(description="Only heroes at least this old (a hero without an age is out)."),
    ] = None,
    max_age: Annotated[
        Age | None,
        Query(description="Only heroes at most this old (a hero without an age is out)."),
    ] = None,
    after_id: Annotated[
        int | None,
        Query(
            ge=INT32_MIN,
            le=INT32_MAX,
            description="Keyset paging: only heroes whose id is greater, still ordered by id. "
            "Costs the same at any depth; the `Link` header of a full page points at the next "
            "one. Not with a non-zero `offset`.",
        ),
    ] = None,
) -> RenderedJSON:
    """A page of heroes ordered by id: by ``offset``, or after an id (``after_id``, as cheap at
    any depth), optionally only those with a ``name`` or an age in ``min_age..max_age``.
    \f
    Filters are plain query parameters, not a model: that parses 45 µs faster a request."""
    page = _page(offset, limit, name, min_age, max_age, after_id)
    found = await service.page(page, consistency.read_token(request))
    return RenderedJSON(found, headers=_next_page(request, page, found))


@hero_reads.get(
    "/{hero_id}",
    response_model=HeroPublic,
    responses={
        **NOT_FOUND,
        **WITH_ETAG,
        304: {"description": "Not modified: If-None-Match names the hero's current ETag"},
    },
    summary="Read a hero",
    openapi_extra={"parameters": [IF_NONE_MATCH, consistency.PARAMETER]},
)
async def read_hero(request: Request, service: HeroServiceDep, hero_id: HeroId) -> Response:
    if_none_match = _precondition(request, "if-none-match")
    found = await service.get(hero_id, consistency.read_token(request))
    if is_not_modified(if_none_match, hero_id, found.version):
        return Response(status_code=304, headers={"ETag": etag(hero_id, found.version)})
    return _tagged(found)


@hero_writes.patch(
    "/{hero_id}",
    response_model=HeroPublic,
    responses={**CONDITIONAL, **WRITTEN, **idempotency.RESPONSES},
    summary="Update a hero",
    openapi_extra={"parameters": [IF_MATCH, idempotency.PARAMETER]},
)
async def update_hero(
    request: Request, service: HeroServiceDep, hero_id: HeroId, hero: HeroUpdate
) -> Response:
    """Change only the fields sent; ``age`` may be set to null. With ``If-Match``, only if the
    hero is still at that ETag (else 412, and nothing changes)."""
    versions = versions_to_match(_precondition(request, "if-match"), hero_id)
    key = idempotency.request_key(
        request, f"PATCH /heroes/{hero_id}", lambda: hero.model_dump(exclude_unset=True)
    )
    updated = await service.update(hero_id, hero, versions, key)
    return consistency.with_token(service, _tagged(updated))


@hero_writes.delete(
    "/{hero_id}",
    response_model=dict[str, bool],
    responses={
        **CONDITIONAL,
        200: {"headers": consistency.RESPONSE_HEADER},
        **idempotency.RESPONSES,
    },
    summary="Delete a hero",
    openapi_extra={"parameters": [IF_MATCH, idempotency.PARAMETER]},
)
async def delete_hero(
    request: Request, service: HeroServiceDep, hero_id: HeroId
) -> dict[str, bool] | Response:
    """With ``If-Match``, only if the hero is still at that ETag (else 412)."""
    versions = versions_to_match(_precondition(request, "if-match"), hero_id)
    key = idempotency.request_key(request, f"DELETE /heroes/{hero_id}")
    answer = await service.delete(hero_id, versions, key)
    sent = RenderedJSON({"ok": True}) if answer is None else idempotency.sent(answer)
    return consistency.with_token(service, sent)
