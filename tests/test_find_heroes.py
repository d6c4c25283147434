"""Finding heroes: name and age filters, keyset paging, and the Link header, on each backend."""

import asyncio
import re
from typing import Any

import httpx
import pytest

from heroes_api.models import INT32_MAX, INT32_MIN
from tests.helpers import make_hero

SECRET = "Fh-Find-Secret-2203"
LINK = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')


async def find(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/heroes/", params=params)
    assert response.status_code == 200, response.text
    heroes: list[dict[str, Any]] = response.json()
    return heroes


@pytest.fixture
async def cast(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Twelve heroes: names repeat (and differ only by case), ages 0..50, some without an age."""
    people = [
        ("Deadpond", 30),
        ("deadpond", 30),
        ("Rusty-Man", 48),
        ("Spider-Boy", None),
        ("Deadpond", 0),
        ("Tarantula", 32),
        ("Black Lion", 50),
        ("Dr. Weird", None),
        ("Captain North America", 29),
        ("Deadpond", 31),
        ("Spider-Youngster", 16),
        ("Rusty-Man", 50),
    ]
    return [await make_hero(client, name=name, age=age, secret_name=SECRET) for name, age in people]


def ids(heroes: list[dict[str, Any]]) -> list[int]:
    return [hero["id"] for hero in heroes]


async def test_name_is_an_exact_case_sensitive_match(
    client: httpx.AsyncClient, cast: list[dict[str, Any]]
) -> None:
    assert await find(client, name="Deadpond") == [h for h in cast if h["name"] == "Deadpond"]
    assert ids(await find(client, name="deadpond")) == [cast[1]["id"]]
    assert await find(client, name="Deadpon") == []
    assert await find(client, name="Deadpond ") == []


async def test_age_bounds_are_inclusive_and_skip_heroes_without_an_age(
    client: httpx.AsyncClient, cast: list[dict[str, Any]]
) -> None:
    def aged(low: int, high: int) -> list[dict[str, Any]]:
        return [h for h in cast if h["age"] is not None and low <= h["age"] <= high]

    assert await find(client, min_age=30) == aged(30, INT32_MAX)
    assert await find(client, max_age=30) == aged(0, 30)
    assert await find(client, min_age=30, max_age=32) == aged(30, 32)
    assert await find(client, min_age=50, max_age=50) == aged(50, 50)
    assert await find(client, min_age=0) == aged(0, INT32_MAX)  # no null ages
    assert await find(client, min_age=51) == []


async def test_filters_combine_with_and_and_page(
    client: httpx.AsyncClient, cast: list[dict[str, Any]]
) -> None:
    deadponds = [h for h in cast if h["name"] == "Deadpond"]
    assert await find(client, name="Deadpond", min_age=30) == [deadponds[0], deadponds[2]]
    assert await find(client, name="Deadpond", max_age=0) == [deadponds[1]]
    assert await find(client, name="Rusty-Man", min_age=49, max_age=50) == [cast[11]]
    assert await find(client, name="Deadpond", limit=2) == deadponds[:2]
    assert await find(client, name="Deadpond", offset=1, limit=1) == deadponds[1:2]
    after = deadponds[0]["id"]
    assert await find(client, name="Deadpond", after_id=after) == deadponds[1:]
    assert await find(client, name="Deadpond", after_id=after, min_age=1) == deadponds[2:]


async def test_after_id_pages_by_key(client: httpx.AsyncClient, cast: list[dict[str, Any]]) -> None:
    assert await find(client, after_id=cast[4]["id"]) == cast[5:]
    assert await find(client, after_id=cast[4]["id"], limit=3) == cast[5:8]
    assert await find(client, after_id=cast[-1]["id"]) == []
    assert await find(client, after_id=INT32_MIN) == cast
    assert await find(client, after_id=INT32_MAX) == []
    assert await find(client, after_id=0, offset=0) == cast  # offset 0 is no offset


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"min_age": 31, "max_age": 30}, "min_age must not be greater than max_age"),
        ({"after_id": 3, "offset": 1}, "use after_id or offset, not both"),
        ({"min_age": -1}, None),
        ({"max_age": INT32_MAX + 1}, None),
        ({"min_age": "old"}, None),
        ({"max_age": "1.5"}, None),
        ({"after_id": INT32_MAX + 1}, None),
        ({"after_id": INT32_MIN - 1}, None),
        ({"after_id": "x"}, None),
        ({"name": "x" * 256}, None),
        ({"name": "Dead\x00pond"}, None),
        ({"name": SECRET + "\x00"}, None),
    ],
)
async def test_bad_filters_are_422_with_a_detail(
    client: httpx.AsyncClient, params: dict[str, Any], message: str | None
) -> None:
    response = await client.get("/heroes/", params=params)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail
    assert all(set(error) == {"type", "loc", "msg"} for error in detail)
    if message:
        assert any(message in error["msg"] for error in detail), detail
    assert SECRET not in response.text


async def test_a_full_page_links_to_the_next_keeping_filters_and_limit(
    client: httpx.AsyncClient, cast: list[dict[str, Any]]
) -> None:
    response = await client.get("/heroes/", params={"name": "Deadpond", "limit": 2, "offset": 1})
    heroes = response.json()
    assert len(heroes) == 2
    link = LINK.match(response.headers["link"])
    assert link, response.headers["link"]
    url = httpx.URL(link["url"])
    assert url.path == "/heroes/"
    assert dict(url.params) == {"name": "Deadpond", "limit": "2", "after_id": str(heroes[-1]["id"])}
    following = await client.get(link["url"])
    assert following.json() == [h for h in cast if h["name"] == "Deadpond"][3:]
    assert "link" not in following.headers  # a short page is the last one

    exact = await client.get("/heroes/", params={"min_age": 50})
    assert len(exact.json()) == 2
    assert "link" not in exact.headers  # not full: limit is 100
    full = await client.get("/heroes/", params={"min_age": 50, "limit": 2})
    assert "link" in full.headers
    beyond = await client.get(LINK.match(full.headers["link"])["url"])  # type: ignore[index]
    assert beyond.json() == []


async def walk(client: httpx.AsyncClient, url: str) -> list[int]:
    """Follow Link from ``url`` to the last page; the ids seen, in order."""
    seen: list[int] = []
    for _ in range(10_000):  # bounded
        response = await client.get(url)
        assert response.status_code == 200, response.text
        seen += ids(response.json())
        if "link" not in response.headers:
            return seen
        url = LINK.match(response.headers["link"])["url"]  # type: ignore[index]
    raise AssertionError("the walk did not end")  # pragma: no cover


async def test_following_link_sees_every_stable_hero_once_while_others_change(
    client: httpx.AsyncClient,
) -> None:
    """Other clients create and delete heroes during the walk: every hero that existed for the
    whole walk is seen exactly once, and the walk is in id order."""
    stable = ids(list(await asyncio.gather(*(make_hero(client, name=f"s{n}") for n in range(150)))))
    doomed = ids(list(await asyncio.gather(*(make_hero(client, name=f"d{n}") for n in range(60)))))
    done = asyncio.Event()

    async def churn() -> None:
        for n in range(400):  # bounded; stops when the walk is done
            if done.is_set():
                return
            if n % 2 and doomed:
                assert (await client.delete(f"/heroes/{doomed.pop()}")).status_code == 200
            else:
                await make_hero(client, name=f"new {n}")

    churners = [asyncio.create_task(churn()) for _ in range(4)]
    try:
        seen = await walk(client, "/heroes/?limit=7")
    finally:
        done.set()
        await asyncio.gather(*churners)
    assert seen == sorted(set(seen))  # id order, nobody twice
    assert set(stable) <= set(seen)


async def test_link_walk_with_filters(client: httpx.AsyncClient) -> None:
    heroes = [await make_hero(client, name=f"n{n % 3}", age=n) for n in range(40)]
    expected = [h["id"] for h in heroes if h["name"] == "n1" and 5 <= h["age"] <= 30]
    assert await walk(client, "/heroes/?name=n1&min_age=5&max_age=30&limit=3") == expected


async def test_openapi_describes_the_parameters_and_the_link_header(
    client: httpx.AsyncClient,
) -> None:
    operation = (await client.get("/openapi.json")).json()["paths"]["/heroes/"]["get"]
    parameters = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
    assert set(parameters) == {"offset", "limit", "name", "min_age", "max_age", "after_id"}
    assert all(p.get("description") for p in parameters.values())
    headers = [p["name"] for p in operation["parameters"] if p["in"] == "header"]
    assert headers == ["Consistency-Token"]
    assert "Link" in operation["responses"]["200"]["headers"]
