"""ETags and conditional requests: If-None-Match on reads, If-Match on PATCH and DELETE."""

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from heroes_api.heroes.etags import MAX_TAGS
from heroes_api.state import app_state
from tests.helpers import MakeClient, make_hero

STALE = {"detail": "Hero has changed since the ETag in If-Match: read it again, then retry"}
NOT_FOUND = {"detail": "Hero not found"}


def tag(hero: dict[str, Any], version: int) -> str:
    return f'"{hero["id"]}-{version}"'


async def test_reads_and_writes_carry_the_etag_and_the_body_is_unchanged(
    client: httpx.AsyncClient,
) -> None:
    created = await client.post("/heroes/", json={"name": "A", "secret_name": "s", "age": 3})
    hero = created.json()
    assert hero == {"id": hero["id"], "name": "A", "age": 3}
    assert created.headers["etag"] == tag(hero, 1)
    read = await client.get(f"/heroes/{hero['id']}")
    assert (read.json(), read.headers["etag"]) == (hero, tag(hero, 1))
    for version in (2, 3):
        patched = await client.patch(f"/heroes/{hero['id']}", json={"age": version})
        assert patched.headers["etag"] == tag(hero, version)
    empty = await client.patch(f"/heroes/{hero['id']}", json={})  # a read: no new version
    assert empty.headers["etag"] == tag(hero, 3)
    assert "etag" not in (await client.get("/heroes/")).headers


@pytest.mark.parametrize(
    "header", ['"{id}-1"', 'W/"{id}-1"', '"other", "{id}-1"', "*", '  "{id}-1" ']
)
async def test_if_none_match_with_the_current_tag_is_304_without_a_body(
    client: httpx.AsyncClient, header: str
) -> None:
    hero = await make_hero(client)
    url = f"/heroes/{hero['id']}"
    response = await client.get(url, headers={"If-None-Match": header.format(id=hero["id"])})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == tag(hero, 1)


async def test_if_none_match_with_an_old_tag_is_the_hero(client: httpx.AsyncClient) -> None:
    hero = await make_hero(client)
    url = f"/heroes/{hero['id']}"
    changed = (await client.patch(url, json={"age": 1})).json()
    for old in (tag(hero, 1), f'"{hero["id"] + 1}-2"', '"anything"'):
        response = await client.get(url, headers={"If-None-Match": old})
        assert (response.status_code, response.json()) == (200, changed)
    missing = await client.get("/heroes/9999", headers={"If-None-Match": "*"})
    assert (missing.status_code, missing.json()) == (404, NOT_FOUND)


async def test_if_match_with_the_current_tag_writes(client: httpx.AsyncClient) -> None:
    hero = await make_hero(client)
    url = f"/heroes/{hero['id']}"
    patched = await client.patch(url, json={"age": 1}, headers={"If-Match": tag(hero, 1)})
    assert (patched.status_code, patched.json()) == (200, {**hero, "age": 1})
    assert patched.headers["etag"] == tag(hero, 2)
    listed = await client.patch(url, json={"age": 2}, headers={"If-Match": f'"x", {tag(hero, 2)}'})
    assert listed.status_code == 200
    empty = await client.patch(url, json={}, headers={"If-Match": tag(hero, 3)})
    assert (empty.status_code, empty.headers["etag"]) == (200, tag(hero, 3))
    deleted = await client.delete(url, headers={"If-Match": tag(hero, 3)})
    assert (deleted.status_code, deleted.json()) == (200, {"ok": True})
    assert (await client.get(url)).status_code == 404


async def test_a_stale_if_match_is_412_and_changes_nothing(client: httpx.AsyncClient) -> None:
    hero = await make_hero(client)
    url = f"/heroes/{hero['id']}"
    current = (await client.patch(url, json={"age": 7})).json()
    other = await make_hero(client)
    for stale in (tag(hero, 1), f"W/{tag(hero, 2)}", tag(other, 2), '"nonsense"', '"1-2-3"'):
        patched = await client.patch(url, json={"name": "X"}, headers={"If-Match": stale})
        assert (patched.status_code, patched.json()) == (412, STALE), stale
        empty = await client.patch(url, json={}, headers={"If-Match": stale})
        assert (empty.status_code, empty.json()) == (412, STALE), stale
        deleted = await client.delete(url, headers={"If-Match": stale})
        assert (deleted.status_code, deleted.json()) == (412, STALE), stale
    read = await client.get(url)
    assert (read.json(), read.headers["etag"]) == (current, tag(hero, 2))


async def test_if_match_star_and_missing_heroes(client: httpx.AsyncClient) -> None:
    """``*`` matches any version of a hero that exists; a hero that does not exist is a 404
    whatever If-Match says (the tutorial's answer, and more useful than RFC 9110's 412)."""
    hero = await make_hero(client)
    url = f"/heroes/{hero['id']}"
    patched = await client.patch(url, json={"age": 9}, headers={"If-Match": "*"})
    assert (patched.status_code, patched.headers["etag"]) == (200, tag(hero, 2))
    assert (await client.delete(url, headers={"If-Match": "*"})).json() == {"ok": True}
    for header in ("*", tag(hero, 3), '"x"'):
        for response in (
            await client.patch(url, json={"age": 1}, headers={"If-Match": header}),
            await client.patch(url, json={}, headers={"If-Match": header}),
            await client.delete(url, headers={"If-Match": header}),
        ):
            assert (response.status_code, response.json()) == (404, NOT_FOUND)


MALFORMED: list[str | bytes] = [
    "",
    "1-1",  # unquoted
    '"1-1',
    'W/"1-1" garbage',
    '"a", , "b"',
    'w/"1-1"',
    '"in"side"',
    '"1-1",',
    '"caf\u00e9"'.encode("latin-1"),  # obs-text: not accepted
    ", ".join(f'"1-{n}"' for n in range(MAX_TAGS + 1)),
]


@pytest.mark.parametrize("header", MALFORMED)
async def test_malformed_preconditions_are_422_and_change_nothing(
    client: httpx.AsyncClient, header: str | bytes
) -> None:
    hero = await make_hero(client)
    url = f"/heroes/{hero['id']}"
    value = header if isinstance(header, bytes) else header.encode()
    responses = [
        await client.patch(url, json={"age": 1}, headers={b"If-Match": value}),
        await client.delete(url, headers={b"If-Match": value}),
        await client.get(url, headers={b"If-None-Match": value}),
    ]
    for response, name in zip(responses, ["if-match", "if-match", "if-none-match"], strict=True):
        assert response.status_code == 422, (header, response.text)
        (error,) = response.json()["detail"]
        assert error["loc"] == ["header", name]
    assert (await client.get(url)).headers["etag"] == tag(hero, 1)


async def test_the_most_tags_an_if_match_may_carry(client: httpx.AsyncClient) -> None:
    hero = await make_hero(client)
    header = ", ".join(tag(hero, n) for n in range(MAX_TAGS, 0, -1))
    response = await client.patch(
        f"/heroes/{hero['id']}", json={"age": 1}, headers={"If-Match": header}
    )
    assert response.status_code == 200


CONCURRENT = 50


async def concurrent_conditional_patches(client: httpx.AsyncClient) -> None:
    """50 clients PATCH one hero at once, all with the ETag they read: exactly one wins each
    round, the others get 412, and the hero holds the winner's change."""
    hero = await make_hero(client, age=0)
    url = f"/heroes/{hero['id']}"
    for version in range(1, 4):
        responses = await asyncio.gather(
            *(
                client.patch(url, json={"age": n}, headers={"If-Match": tag(hero, version)})
                for n in range(CONCURRENT)
            )
        )
        statuses = sorted(response.status_code for response in responses)
        assert statuses == [200] + [412] * (CONCURRENT - 1)
        (winner,) = (response for response in responses if response.status_code == 200)
        assert winner.headers["etag"] == tag(hero, version + 1)
        read = await client.get(url)
        assert (read.json(), read.headers["etag"]) == (winner.json(), tag(hero, version + 1))
    deletes = await asyncio.gather(
        *(client.delete(url, headers={"If-Match": tag(hero, 4)}) for _ in range(CONCURRENT))
    )
    # One deletes it; the others find it gone (404), never a 412 or a second success.
    statuses = sorted(response.status_code for response in deletes)
    assert statuses == [200] + [404] * (CONCURRENT - 1)


async def test_stale_if_match_under_50_concurrent_patches(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await concurrent_conditional_patches(client)
    assert app_state(app).hero_service.batch_stats()["writes"].largest > 1  # decided inside batches


async def test_stale_if_match_under_50_concurrent_patches_unbatched(
    make_client: MakeClient,
) -> None:
    await concurrent_conditional_patches(await make_client(batching=False))


async def test_conditional_and_plain_writes_share_a_batch(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    heroes = [await make_hero(client, name=f"h{n}") for n in range(4)]
    a, b, c, d = heroes
    requests = [
        client.patch(f"/heroes/{a['id']}", json={"age": 1}, headers={"If-Match": tag(a, 1)}),
        client.patch(f"/heroes/{b['id']}", json={"age": 1}, headers={"If-Match": tag(b, 5)}),
        client.patch(f"/heroes/{c['id']}", json={"age": 1}),
        client.delete(f"/heroes/{d['id']}", headers={"If-Match": tag(d, 2)}),
        client.patch("/heroes/9999", json={"age": 1}, headers={"If-Match": '"9999-1"'}),
        client.patch(f"/heroes/{a['id']}", json={"age": 2}, headers={"If-Match": tag(a, 1)}),
        client.patch(f"/heroes/{a['id']}", json={"age": 3}, headers={"If-Match": tag(a, 2)}),
    ]
    responses = await asyncio.gather(*requests)
    assert [response.status_code for response in responses] == [200, 412, 200, 412, 404, 412, 200]
    read = await client.get(f"/heroes/{a['id']}")
    assert (read.json()["age"], read.headers["etag"]) == (3, tag(a, 3))
    assert (await client.get(f"/heroes/{d['id']}")).status_code == 200
    assert app_state(app).hero_service.batch_stats()["writes"].largest > 1
