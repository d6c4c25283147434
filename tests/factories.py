"""Typed helpers that create test data through the public API."""

from typing import Any

import httpx


async def make_hero(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"name": "Deadpond", "secret_name": "Dive Wilson", "age": 30}
    payload.update(overrides)
    response = await client.post("/heroes/", json=payload)
    assert response.status_code == 200, response.text
    hero: dict[str, Any] = response.json()
    return hero
