"""Idempotency-Key on every write: a repeat gets the first answer back and writes nothing again.

Every test runs on both backends, with batching on and off."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from heroes_api.app import create_app
from heroes_api.config import Settings
from heroes_api.heroes import keyed as keyed_writes
from heroes_api.state import app_state
from tests.helpers import make_hero, read_all_heroes, running_client

HERO = {"name": "Deadpond", "secret_name": "Dive Wilson", "age": 30}
KEY_A = "a-key-for-the-first-holder-0001"
KEY_B = "a-key-for-the-other-holder-002"
REUSED = {"detail": "Idempotency-Key was already used for a different request"}


def keyed(key: str, **headers: str) -> dict[str, str]:
    return {"Idempotency-Key": key, **headers}


@pytest.fixture(params=[True, False], ids=["batched", "unbatched"])
def batching(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def app(database_url: str, batching: bool) -> FastAPI:
    return create_app(Settings(database_url=database_url, batching=batching))


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with running_client(app) as client:
        yield client


async def stored_keys(app: FastAPI) -> int:
    async with app_state(app).engine.connect() as connection:
        return int(
            (await connection.execute(text("SELECT count(*) FROM idempotency_key"))).scalar_one()
        )


async def test_a_repeated_create_gets_the_first_answer_and_writes_nothing(
    client: httpx.AsyncClient,
) -> None:
    first = await client.post("/heroes/", json=HERO, headers=keyed("create-1"))
    again = await client.post("/heroes/", json=HERO, headers=keyed("create-1"))
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert list(await read_all_heroes(client)) == [first.json()["id"]]


async def test_the_quoted_form_is_the_same_key(client: httpx.AsyncClient) -> None:
    first = await client.post("/heroes/", json=HERO, headers=keyed("abc"))
    again = await client.post("/heroes/", json=HERO, headers=keyed('"abc"'))
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"


async def test_a_key_reused_for_another_request_is_a_422_and_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    hero = (await client.post("/heroes/", json=HERO, headers=keyed("k"))).json()
    other_body = await client.post("/heroes/", json={**HERO, "age": 31}, headers=keyed("k"))
    other_route = await client.patch(f"/heroes/{hero['id']}", json={"age": 1}, headers=keyed("k"))
    other_hero = await client.delete(f"/heroes/{hero['id']}", headers=keyed("k"))
    for response in (other_body, other_route, other_hero):
        assert (response.status_code, response.json()) == (422, REUSED)
    assert await read_all_heroes(client) == {hero["id"]: hero}


async def test_concurrent_same_key_creates_make_one_hero(
    app: FastAPI, client: httpx.AsyncClient, batching: bool
) -> None:
    """25 at once: one write; every other request waits for it and gets its answer (the same
    key in one batch is settled before any SQL runs)."""
    responses = await asyncio.gather(
        *(client.post("/heroes/", json=HERO, headers=keyed("burst")) for _ in range(25))
    )
    assert {response.status_code for response in responses} == {200}
    assert len({response.content for response in responses}) == 1
    assert sum("idempotent-replayed" in response.headers for response in responses) == 24
    assert len(await read_all_heroes(client)) == 1
    if batching:  # the repeats shared batches: settled inside the batch, before SQL
        assert app_state(app).hero_service.batch_stats()["writes"].largest > 1


async def test_a_batch_with_a_key_twice_asking_different_things(client: httpx.AsyncClient) -> None:
    same = client.post("/heroes/", json=HERO, headers=keyed("twice"))
    other = client.post("/heroes/", json={**HERO, "name": "Other"}, headers=keyed("twice"))
    responses = await asyncio.gather(same, other)
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200, 422]
    assert len(await read_all_heroes(client)) == 1


async def test_an_empty_patch_writes_nothing_but_still_honours_its_key(
    client: httpx.AsyncClient,
) -> None:
    hero = (await client.post("/heroes/", json=HERO, headers=keyed("used"))).json()
    reused = await client.patch(f"/heroes/{hero['id']}", json={}, headers=keyed("used"))
    assert (reused.status_code, reused.json()) == (422, REUSED)
    fresh = await client.patch(f"/heroes/{hero['id']}", json={}, headers=keyed("unused"))
    again = await client.patch(f"/heroes/{hero['id']}", json={}, headers=keyed("unused"))
    assert fresh.json() == again.json() == hero  # a read: nothing stored, nothing replayed
    assert "idempotent-replayed" not in again.headers


async def test_a_failure_is_not_stored_and_the_key_may_be_used_again(
    client: httpx.AsyncClient,
) -> None:
    invalid = await client.post("/heroes/", json={"name": "x"}, headers=keyed("retry-me"))
    missing = await client.patch("/heroes/9999", json={"age": 1}, headers=keyed("retry-me"))
    assert (invalid.status_code, missing.status_code) == (422, 404)
    created = await client.post("/heroes/", json=HERO, headers=keyed("retry-me"))
    assert created.status_code == 200
    assert "idempotent-replayed" not in created.headers


async def test_patch_and_delete_replay_without_writing_again(client: httpx.AsyncClient) -> None:
    hero = await make_hero(client)
    path = f"/heroes/{hero['id']}"
    patched = await client.patch(path, json={"age": 40}, headers=keyed("patch-1"))
    replayed = await client.patch(path, json={"age": 40}, headers=keyed("patch-1"))
    assert replayed.content == patched.content
    assert replayed.headers["etag"] == patched.headers["etag"] == f'"{hero["id"]}-2"'
    assert (await client.get(path)).headers["etag"] == f'"{hero["id"]}-2"'  # no second bump

    deleted = await client.delete(path, headers=keyed("delete-1"))
    again = await client.delete(path, headers=keyed("delete-1"))
    assert (deleted.status_code, deleted.json()) == (200, {"ok": True})
    assert (again.status_code, again.content) == (200, deleted.content)
    assert again.headers["idempotent-replayed"] == "true"
    assert (await client.delete(path, headers=keyed("delete-2"))).status_code == 404


async def test_a_replay_after_the_hero_changed_is_the_first_answer(
    client: httpx.AsyncClient,
) -> None:
    first = await client.post("/heroes/", json=HERO, headers=keyed("then-changed"))
    hero_id = first.json()["id"]
    assert (await client.patch(f"/heroes/{hero_id}", json={"name": "Renamed"})).is_success
    again = await client.post("/heroes/", json=HERO, headers=keyed("then-changed"))
    assert again.content == first.content
    assert again.json()["name"] == "Deadpond"
    assert (await client.get(f"/heroes/{hero_id}")).json()["name"] == "Renamed"


async def test_without_a_key_nothing_changes(client: httpx.AsyncClient, app: FastAPI) -> None:
    first = await make_hero(client)
    second = await make_hero(client)
    assert first["id"] != second["id"]
    assert await stored_keys(app) == 0


@pytest.mark.parametrize(
    "value",
    ["", " ", "x" * 256, "héros", "a b", '"unterminated', '""'],
    ids=["empty", "blank", "too-long", "non-ascii", "space", "unterminated", "empty-quoted"],
)
async def test_a_malformed_key_is_a_422_naming_the_header(
    client: httpx.AsyncClient, value: str
) -> None:
    raw = [(b"idempotency-key", value.encode())]
    response = await client.post("/heroes/", json=HERO, headers=raw)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert await read_all_heroes(client) == {}


async def test_a_repeated_header_is_a_422(client: httpx.AsyncClient) -> None:
    raw = [(b"idempotency-key", b"one"), (b"idempotency-key", b"two")]
    response = await client.post("/heroes/", json=HERO, headers=raw)
    assert response.status_code == 422
    assert "Idempotency-Key" in response.json()["detail"][0]["msg"]
    assert await read_all_heroes(client) == {}


async def test_keys_belong_to_the_api_key_that_sent_them(database_url: str, batching: bool) -> None:
    settings = Settings(database_url=database_url, batching=batching, api_keys=f"{KEY_A},{KEY_B}")
    async with running_client(create_app(settings)) as client:
        as_a = {"Authorization": f"Bearer {KEY_A}", "Idempotency-Key": "shared"}
        as_b = {"Authorization": f"Bearer {KEY_B}", "Idempotency-Key": "shared"}
        first = await client.post("/heroes/", json=HERO, headers=as_a)
        other = await client.post("/heroes/", json=HERO, headers=as_b)  # not a's answer
        changed = await client.post("/heroes/", json={**HERO, "age": 1}, headers=as_b)
        assert first.status_code == other.status_code == 200
        assert other.json()["id"] != first.json()["id"]
        assert "idempotent-replayed" not in other.headers
        assert (changed.status_code, changed.json()) == (422, REUSED)  # b's own key, reused
        replay = await client.post("/heroes/", json=HERO, headers=as_a)
        assert replay.content == first.content


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_an_expired_key_counts_as_never_used(app: FastAPI, client: httpx.AsyncClient) -> None:
    service = app_state(app).hero_service.keyed
    assert service.ttl == app_state(app).settings.idempotency_ttl == 86_400
    service.clock = clock = Clock()
    first = await client.post("/heroes/", json=HERO, headers=keyed("expiring"))
    clock.now += service.ttl - 1
    assert (await client.post("/heroes/", json=HERO, headers=keyed("expiring"))).content == (
        first.content
    )
    clock.now += 2
    fresh = await client.post("/heroes/", json=HERO, headers=keyed("expiring"))
    assert fresh.json()["id"] != first.json()["id"]
    assert "idempotent-replayed" not in fresh.headers


async def test_expired_keys_are_purged_in_bounded_batches(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keyed_writes, "PURGE_LIMIT", 2)
    service = app_state(app).hero_service.keyed
    service.clock = clock = Clock()
    for n in range(5):
        await make_hero(client, headers=keyed(f"old-{n}"))
        clock.now += 1
    assert await stored_keys(app) == 5
    clock.now += service.ttl + keyed_writes.PURGE_EVERY - 5
    await make_hero(client, headers=keyed("new-0"))  # purges at most 2 of the 5 expired
    assert await stored_keys(app) == 5 - 2 + 1
    await make_hero(client, headers=keyed("new-1"))  # too soon for another purge
    assert await stored_keys(app) == 5 - 2 + 2
    clock.now += keyed_writes.PURGE_EVERY
    await make_hero(client, headers=keyed("new-2"))  # the next 2 (the unexpired stay)
    assert await stored_keys(app) == 5 - 4 + 3


async def test_the_openapi_document_describes_the_header(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path, method in (
        ("/heroes/", "post"),
        ("/heroes/{hero_id}", "patch"),
        ("/heroes/{hero_id}", "delete"),
    ):
        operation: dict[str, Any] = paths[path][method]
        names = [parameter["name"] for parameter in operation["parameters"]]
        assert "Idempotency-Key" in names
        assert {"409", "422"} <= set(operation["responses"])
        policy = next(p for p in operation["parameters"] if p["name"] == "Idempotency-Key")
        assert "HEROES_IDEMPOTENCY_TTL" in policy["description"]
    assert "Idempotency-Key" not in str(paths["/heroes/"]["get"])


async def test_a_503_carries_retry_after(failing_app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=failing_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/fail/dropped")
    assert (response.status_code, response.headers["retry-after"]) == (503, "1")


def test_the_ttl_is_a_setting(database_url: str) -> None:
    app = create_app(Settings(database_url=database_url, idempotency_ttl=5))
    assert app_state(app).hero_service.keyed.ttl == 5
