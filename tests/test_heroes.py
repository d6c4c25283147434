"""The tutorial's HTTP contract, end to end through HTTP."""

import json
from typing import Any

import httpx
import pytest

from heroes_api.db import make_sessionmaker
from heroes_api.models import INT32_MAX, INT32_MIN, INT64_MAX
from heroes_api.state import app_state
from tests.helpers import make_hero

NOT_FOUND = {"detail": "Hero not found"}
JSON = {"content-type": "application/json"}


async def all_heroes(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await client.get("/heroes/", params={"limit": 100})
    assert response.status_code == 200
    heroes: list[dict[str, Any]] = response.json()
    return heroes


async def test_create_returns_public_hero(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/heroes/", json={"name": "Deadpond", "secret_name": "Dive Wilson", "age": 30}
    )
    assert response.status_code == 200
    assert response.json() == {"name": "Deadpond", "age": 30, "id": 1}


async def test_create_without_age(client: httpx.AsyncClient) -> None:
    hero = await make_hero(client, age=None)
    assert hero["age"] is None
    del_age: dict[str, Any] = {"name": "Rusty-Man", "secret_name": "Tommy Sharp"}
    response = await client.post("/heroes/", json=del_age)
    assert response.json()["age"] is None


async def test_create_ignores_client_id(client: httpx.AsyncClient) -> None:
    first = await make_hero(client)
    second = await make_hero(client, id=first["id"])
    assert second["id"] != first["id"]
    assert [h["id"] for h in await all_heroes(client)] == [first["id"], second["id"]]


@pytest.mark.parametrize(
    "payload",
    [
        {"secret_name": "Dive Wilson"},
        {"name": "Deadpond"},
        {"name": None, "secret_name": "Dive Wilson"},
        {"name": "Deadpond", "secret_name": None},
        {"name": "Deadpond", "secret_name": "Dive Wilson", "age": "old"},
        {"name": "Deadpond", "secret_name": "Dive Wilson", "age": -1},
        {"name": "Deadpond", "secret_name": "Dive Wilson", "age": INT32_MAX + 1},
        {"name": "Deadpond", "secret_name": "Dive Wilson", "age": 2**64},
        {"name": "Dead\x00pond", "secret_name": "Dive Wilson"},
        {"name": "Deadpond", "secret_name": "Dive\ud800Wilson"},
        {"name": "x" * 256, "secret_name": "Dive Wilson"},
        {"name": ["Deadpond"], "secret_name": "Dive Wilson"},
    ],
)
async def test_create_rejects_bad_input(client: httpx.AsyncClient, payload: dict[str, Any]) -> None:
    # json.dumps escapes lone surrogates as \\ud800, which httpx's own encoder refuses to send.
    response = await client.post("/heroes/", content=json.dumps(payload), headers=JSON)
    assert response.status_code == 422
    assert response.json()["detail"]
    assert await all_heroes(client) == []


async def test_create_accepts_edge_values(client: httpx.AsyncClient) -> None:
    hero = await make_hero(client, name="デッドプール 🦸" + "x" * 245, age=INT32_MAX)
    assert (await client.get(f"/heroes/{hero['id']}")).json() == hero


async def test_secret_name_is_never_returned(client: httpx.AsyncClient) -> None:
    hero = await make_hero(client, secret_name="Dive Wilson")
    responses = [
        await client.get(f"/heroes/{hero['id']}"),
        await client.get("/heroes/"),
        await client.patch(f"/heroes/{hero['id']}", json={"secret_name": "Wade"}),
        await client.post("/heroes/", json={"secret_name": "Dive Wilson"}),
        await client.post("/heroes/", json={"name": "x", "secret_name": "Dive Wilson\x00"}),
    ]
    for response in responses:
        assert "secret_name" not in response.text or response.status_code == 422
        assert "Dive Wilson" not in response.text
        assert "Wade" not in response.text


async def test_list_is_ordered_and_paged(client: httpx.AsyncClient) -> None:
    ids = [(await make_hero(client, name=f"hero {n}"))["id"] for n in range(5)]
    assert [h["id"] for h in await all_heroes(client)] == ids
    page = (await client.get("/heroes/", params={"offset": 1, "limit": 2})).json()
    assert [h["id"] for h in page] == ids[1:3]
    assert set(page[0]) == {"name", "age", "id"}
    beyond = await client.get("/heroes/", params={"offset": INT64_MAX})
    assert beyond.status_code == 200
    assert beyond.json() == []


async def test_list_defaults_to_100(client: httpx.AsyncClient) -> None:
    for n in range(101):
        await make_hero(client, name=f"hero {n}")
    assert len((await client.get("/heroes/")).json()) == 100


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": -1},
        {"offset": -1},
        {"offset": INT64_MAX + 1},
        {"limit": "ten"},
        {"offset": "1.5"},
    ],
)
async def test_list_rejects_bad_paging(client: httpx.AsyncClient, params: dict[str, Any]) -> None:
    response = await client.get("/heroes/", params=params)
    assert response.status_code == 422
    assert response.json()["detail"]


async def test_read_one(client: httpx.AsyncClient) -> None:
    hero = await make_hero(client)
    response = await client.get(f"/heroes/{hero['id']}")
    assert response.status_code == 200
    assert response.json() == hero


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
@pytest.mark.parametrize("hero_id", [999, 0, -5, INT32_MIN, INT32_MAX])
async def test_unknown_id_is_404(client: httpx.AsyncClient, method: str, hero_id: int) -> None:
    body = {"json": {"age": 1}} if method == "PATCH" else {}
    response = await client.request(method, f"/heroes/{hero_id}", **body)  # type: ignore[arg-type]
    assert response.status_code == 404
    assert response.json() == NOT_FOUND


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
@pytest.mark.parametrize("hero_id", [str(INT32_MAX + 1), str(INT32_MIN - 1), str(2**70), "abc"])
async def test_out_of_range_id_is_422(client: httpx.AsyncClient, method: str, hero_id: str) -> None:
    body = {"json": {"age": 1}} if method == "PATCH" else {}
    response = await client.request(method, f"/heroes/{hero_id}", **body)  # type: ignore[arg-type]
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "hero_id"]


async def test_patch_changes_only_fields_sent(client: httpx.AsyncClient) -> None:
    hero = await make_hero(client, name="Deadpond", age=30)
    response = await client.patch(f"/heroes/{hero['id']}", json={"name": "Deadpool"})
    assert response.status_code == 200
    assert response.json() == {"id": hero["id"], "name": "Deadpool", "age": 30}
    response = await client.patch(f"/heroes/{hero['id']}", json={"age": None})
    assert response.json() == {"id": hero["id"], "name": "Deadpool", "age": None}
    response = await client.patch(f"/heroes/{hero['id']}", json={})
    assert response.json() == {"id": hero["id"], "name": "Deadpool", "age": None}
    assert (await client.get(f"/heroes/{hero['id']}")).json() == response.json()


async def test_patch_ignores_id(client: httpx.AsyncClient) -> None:
    hero = await make_hero(client)
    response = await client.patch(f"/heroes/{hero['id']}", json={"id": 77, "age": 5})
    assert response.json() == {**hero, "age": 5}


async def test_patch_secret_name_is_stored(client: httpx.AsyncClient, app: Any) -> None:
    hero = await make_hero(client)
    await client.patch(f"/heroes/{hero['id']}", json={"secret_name": "Wade Wilson"})
    from heroes_api.models import Hero

    async with make_sessionmaker(app_state(app).engine)() as session:
        stored = await session.get(Hero, hero["id"])
    assert stored is not None
    assert stored.secret_name == "Wade Wilson"


@pytest.mark.parametrize(
    "payload",
    [
        {"name": None},
        {"secret_name": None},
        {"age": -3},
        {"age": INT32_MAX + 1},
        {"age": "x"},
        {"name": "a\x00"},
        {"name": "y" * 256},
        {"secret_name": "z\udfff"},
    ],
)
async def test_patch_rejects_bad_input(client: httpx.AsyncClient, payload: dict[str, Any]) -> None:
    hero = await make_hero(client)
    response = await client.patch(
        f"/heroes/{hero['id']}", content=json.dumps(payload), headers=JSON
    )
    assert response.status_code == 422
    assert response.json()["detail"]
    assert (await client.get(f"/heroes/{hero['id']}")).json() == hero


async def test_delete(client: httpx.AsyncClient) -> None:
    hero = await make_hero(client)
    keep = await make_hero(client, name="Spider-Boy")
    response = await client.delete(f"/heroes/{hero['id']}")
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert (await client.get(f"/heroes/{hero['id']}")).status_code == 404
    assert (await client.delete(f"/heroes/{hero['id']}")).json() == NOT_FOUND
    assert await all_heroes(client) == [keep]


async def test_validation_errors_do_not_echo_input(client: httpx.AsyncClient) -> None:
    response = await client.post("/heroes/", json={"name": 5, "secret_name": ["Dive Wilson"]})
    assert response.status_code == 422
    for error in response.json()["detail"]:
        assert set(error) == {"type", "loc", "msg"}
