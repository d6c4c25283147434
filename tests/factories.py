"""Typed helpers that create test data through the public API."""

from typing import Any

import httpx
from starlette.types import ASGIApp


def asgi_client(app: ASGIApp) -> httpx.AsyncClient:
    """An HTTP client calling the app in-process. Wrap the app in LifespanManager for startup."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def make_hero(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"name": "Deadpond", "secret_name": "Dive Wilson", "age": 30}
    payload.update(overrides)
    response = await client.post("/heroes/", json=payload)
    assert response.status_code == 200, response.text
    hero: dict[str, Any] = response.json()
    return hero
