"""Typed helpers that create test data through the public API."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from starlette.types import ASGIApp


def asgi_client(app: ASGIApp, base_url: str = "http://test") -> httpx.AsyncClient:
    """An HTTP client calling the app in-process, without its lifespan; ``base_url``'s host is
    the address the app sees the request arrive on (``scope["server"]``)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


@asynccontextmanager
async def running_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client on the app with its lifespan running: schema check first, engines disposed last."""
    async with LifespanManager(app) as manager, asgi_client(manager.app) as client:
        yield client


async def make_hero(
    client: httpx.AsyncClient, *, headers: dict[str, str] | None = None, **overrides: Any
) -> dict[str, Any]:
    payload: dict[str, Any] = {"name": "Deadpond", "secret_name": "Dive Wilson", "age": 30}
    payload.update(overrides)
    response = await client.post("/heroes/", json=payload, headers=headers)
    assert response.status_code == 200, response.text
    hero: dict[str, Any] = response.json()
    return hero


async def read_all_heroes(client: httpx.AsyncClient) -> dict[int, dict[str, Any]]:
    """Every hero, by id, paging through ``GET /heroes/`` (bounded: at most 100,000 heroes)."""
    heroes: dict[int, dict[str, Any]] = {}
    for offset in range(0, 100_000, 100):
        response = await client.get("/heroes/", params={"offset": offset})
        assert response.status_code == 200, response.text
        page = response.json()
        heroes.update((hero["id"], hero) for hero in page)
        if len(page) < 100:
            return heroes
    raise AssertionError("more than 100,000 heroes")  # pragma: no cover
