"""Batching on the real stack, on each backend: shared round trips, and every caller's own truth."""

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from heroes_api.app import create_app
from heroes_api.config import BATCH_MAX_SIZE_LIMIT, Settings
from heroes_api.db import make_sessionmaker
from heroes_api.heroes import repository
from heroes_api.heroes.errors import PreconditionFailed
from heroes_api.heroes.etags import MAX_TAGS
from heroes_api.heroes.repository import Create, Delete, Page, Update, VersionedRow
from heroes_api.heroes.schemas import HeroCreate
from heroes_api.heroes.service import HeroService
from heroes_api.state import app_state
from tests.helpers import (
    asgi_client,
    executed,
    hero_selects,
    make_hero,
    read_all_heroes,
    running_client,
)

NOT_FOUND = {"detail": "Hero not found"}


def service(app: FastAPI) -> HeroService:
    return app_state(app).hero_service


async def test_concurrent_reads_share_selects_and_read_each_id_once(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    heroes = [await make_hero(client, name=f"hero {n}", age=n) for n in range(5)]
    ids = [hero["id"] for hero in heroes]
    wanted = [*ids, *ids, 9999, *ids, 9999]  # duplicates and a missing id in one burst
    with hero_selects(app_state(app).engine) as selects:
        responses = await asyncio.gather(*(client.get(f"/heroes/{i}") for i in wanted))
    by_id = {hero["id"]: hero for hero in heroes}
    for hero_id, response in zip(wanted, responses, strict=True):
        if hero_id in by_id:
            assert (response.status_code, response.json()) == (200, by_id[hero_id])
        else:
            assert (response.status_code, response.json()) == (404, NOT_FOUND)
    assert len(selects) < len(wanted) / 2, selects  # shared round trips
    for _, parameters in selects:  # the same id twice in a batch is read once
        assert len(parameters) == len(set(parameters)), parameters
    reads = service(app).batch_stats()["reads"]
    assert reads.largest > 1


async def test_a_read_after_a_write_sees_it_while_batches_run(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Other readers keep the read batcher busy, so each check lands in a queued batch; it must
    still see the write that was acknowledged before it started (SQLite reads and writes use
    different connections)."""
    hero = await make_hero(client, age=0)
    url = f"/heroes/{hero['id']}"
    done = asyncio.Event()

    async def noise() -> None:
        for _ in range(5000):  # bounded; ends when the checks are done
            if done.is_set():
                return
            assert (await client.get(url)).status_code in (200, 404)

    readers = [asyncio.create_task(noise()) for _ in range(8)]
    try:
        for n in range(1, 31):
            assert (await client.patch(url, json={"age": n})).json()["age"] == n
            assert (await client.get(url)).json()["age"] == n
            created = await make_hero(client, name=f"new {n}")
            assert (await client.get(f"/heroes/{created['id']}")).json() == created
        assert (await client.delete(url)).json() == {"ok": True}
        for _ in range(10):  # a deleted hero never comes back
            assert (await client.get(url)).status_code == 404
    finally:
        done.set()
        await asyncio.gather(*readers)
    assert service(app).batch_stats()["reads"].largest > 1


async def test_concurrent_creates_get_their_own_rows_and_all_are_listed(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    bodies = [{"name": f"hero {n}", "secret_name": "s", "age": n % 7} for n in range(150)]
    responses = await asyncio.gather(*(client.post("/heroes/", json=body) for body in bodies))
    created = [response.json() for response in responses]
    assert [response.status_code for response in responses] == [200] * len(bodies)
    for body, hero in zip(bodies, created, strict=True):  # rows matched to their requests
        assert (hero["name"], hero["age"]) == (body["name"], body["age"])
    assert len({hero["id"] for hero in created}) == len(bodies)
    assert await read_all_heroes(client) == {hero["id"]: hero for hero in created}
    writes = service(app).batch_stats()["writes"]
    assert writes.largest > 1
    assert writes.batches < len(bodies)


async def test_writes_in_one_batch_each_get_their_own_answer(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    existing = [await make_hero(client, name=f"old {n}") for n in range(3)]
    first, second, third = (hero["id"] for hero in existing)
    requests = [
        client.post("/heroes/", json={"name": "fresh", "secret_name": "s"}),
        client.patch(f"/heroes/{first}", json={"age": 41}),
        client.patch("/heroes/9999", json={"age": 1}),
        client.delete(f"/heroes/{second}"),
        client.delete("/heroes/9998"),
        client.patch(f"/heroes/{second}", json={"age": 2}),  # deleted just before, same batch
        client.patch(f"/heroes/{third}", json={}),  # an empty PATCH is a read
    ]
    responses = await asyncio.gather(*requests)
    statuses = [response.status_code for response in responses]
    assert statuses == [200, 200, 404, 200, 404, 404, 200]
    assert responses[1].json() == {**existing[0], "age": 41}
    assert responses[6].json() == existing[2]
    stored = await read_all_heroes(client)
    assert sorted(stored) == sorted([first, third, responses[0].json()["id"]])
    assert stored[first]["age"] == 41


REFUSE_BOOM = {
    "sqlite": [
        "CREATE TRIGGER refuse_boom BEFORE INSERT ON hero WHEN NEW.name = 'Boom' "
        "BEGIN SELECT RAISE(ABORT, 'boom'); END",
        "CREATE TRIGGER refuse_boom_update BEFORE UPDATE ON hero WHEN NEW.name = 'Boom' "
        "BEGIN SELECT RAISE(ABORT, 'boom'); END",
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.name = 'Boom' THEN RAISE EXCEPTION 'boom' USING ERRCODE = '22023'; END IF; "
        "RETURN NEW; END $$",
        "CREATE TRIGGER refuse_boom BEFORE INSERT OR UPDATE ON hero "
        "FOR EACH ROW EXECUTE FUNCTION refuse_boom()",
    ],
}


async def test_a_write_the_database_refuses_does_not_fail_its_batch_mates(app: FastAPI) -> None:
    """A trigger refuses the name 'Boom' (PostgreSQL: a data error, 422; SQLite: a constraint
    error, which this service treats as a bug, 500). The batch holding it is rolled back and
    replayed write by write: only that request fails, and nothing of it is stored."""
    engine: AsyncEngine = app_state(app).write_engine
    async with engine.begin() as connection:
        for statement in REFUSE_BOOM[engine.dialect.name]:
            await connection.execute(text(statement))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            target = await make_hero(client, name="target")
            names = [f"ok {n}" for n in range(20)]
            names[7] = names[13] = "Boom"
            creates = [client.post("/heroes/", json={"name": n, "secret_name": "s"}) for n in names]
            patches = [
                client.patch(f"/heroes/{target['id']}", json={"name": "Boom"}),
                client.patch(f"/heroes/{target['id']}", json={"age": 5}),
            ]
            responses = await asyncio.gather(*creates, *patches)
            refused = 422 if engine.dialect.name == "postgresql" else 500
            expected = [refused if name == "Boom" else 200 for name in names] + [refused, 200]
            assert [response.status_code for response in responses] == expected
            stored = await read_all_heroes(client)
    assert service(app).batch_stats()["writes"].largest > 1
    assert sorted(hero["name"] for hero in stored.values()) == sorted(
        ["target", *(name for name in names if name != "Boom")]
    )
    assert stored[target["id"]] == {**target, "age": 5}


async def test_batch_size_is_capped(database_url: str) -> None:
    app = create_app(Settings(database_url=database_url, batch_max_size=3))
    async with running_client(app) as client:
        hero = await make_hero(client)
        responses = await asyncio.gather(*(client.get(f"/heroes/{hero['id']}") for _ in range(30)))
        assert {response.status_code for response in responses} == {200}
        created = await asyncio.gather(*(make_hero(client, name=f"h{n}") for n in range(30)))
        assert len({hero["id"] for hero in created}) == 30
    stats = service(app).batch_stats()
    assert stats["reads"].largest == 3
    assert stats["writes"].largest == 3


async def test_a_batch_at_the_largest_cap_stays_within_the_databases_limits(
    database_url: str,
) -> None:
    """The biggest batch the settings allow, of each kind, in one transaction: within both
    backends' bind-parameter limits (a create binds three values, an update up to seven) and
    SQLite's 500-term limit on compound SELECTs. Statements this big may take longer than the
    default 3 s statement timeout on a busy machine (a service configured for such batches
    raises HEROES_DB_COMMAND_TIMEOUT too): what is tested here is the limits, not the time."""
    app = create_app(Settings(database_url=database_url, db_command_timeout=60))
    async with running_client(app) as client:
        await _largest_batches(app, client)


async def _largest_batches(app: FastAPI, client: httpx.AsyncClient) -> None:
    size = BATCH_MAX_SIZE_LIMIT
    creates = [Create(HeroCreate(name=f"h{n}", secret_name="s", age=n)) for n in range(size)]
    async with make_sessionmaker(app_state(app).write_engine)() as session:
        created = await repository.apply_writes(session, creates)
        await session.commit()
    heroes = [outcome for outcome in created if isinstance(outcome, VersionedRow)]
    assert [found.hero["name"] for found in heroes] == [f"h{n}" for n in range(size)]
    assert {found.version for found in heroes} == {1}
    ids = sorted(found.hero["id"] for found in heroes)
    assert len(set(ids)) == size

    changes = {"name": "x", "age": None, "secret_name": "y"}
    async with make_sessionmaker(app_state(app).write_engine)() as session:
        updated = await repository.apply_writes(session, [Update(i, changes) for i in ids])
        await session.commit()
    assert updated == [VersionedRow({"id": i, "name": "x", "age": None}, 2) for i in ids]

    # Conditional, with the most entity tags an If-Match may carry: many statements' worth of
    # bind parameters, cut into statements both backends accept.
    versions = frozenset(range(2, 2 + MAX_TAGS))
    conditional = [Update(i, changes, versions) for i in ids]
    async with make_sessionmaker(app_state(app).write_engine)() as session:
        updated = await repository.apply_writes(session, conditional)
        await session.commit()
    assert updated == [VersionedRow({"id": i, "name": "x", "age": None}, 3) for i in ids]

    pages = [Page(offset=n, limit=3) for n in range(size)]
    async with make_sessionmaker(app_state(app).engine)() as session:
        found = await repository.get_heroes(session, ids)
        listed = await repository.list_pages(session, pages)
    assert found == {i: VersionedRow({"id": i, "name": "x", "age": None}, 3) for i in ids}
    assert [[hero["id"] for hero in page] for page in listed] == [
        ids[n : n + 3] for n in range(size)
    ]

    stale = frozenset(range(4, 4 + MAX_TAGS))
    async with make_sessionmaker(app_state(app).write_engine)() as session:
        refused = await repository.apply_writes(session, [Delete(i, stale) for i in ids])
        deleted = await repository.apply_writes(session, [Delete(i) for i in ids])
        await session.commit()
    assert all(isinstance(outcome, PreconditionFailed) for outcome in refused)
    assert deleted == updated
    assert await read_all_heroes(client) == {}


async def test_shutdown_finishes_the_batches_in_flight(database_url: str) -> None:
    """60 writes queued in batches of 5 when shutdown begins: all of them run before it ends."""
    app = create_app(Settings(database_url=database_url, batch_max_size=5))
    heroes = service(app)
    async with LifespanManager(app) as manager, asgi_client(manager.app) as client:
        tasks = [asyncio.create_task(make_hero(client, name=f"h{n}")) for n in range(60)]
        writes = heroes.batch_stats()["writes"]
        for _ in range(100_000):  # until every write has reached the batcher
            if writes.items + writes.queued == len(tasks) and writes.queued:
                break
            await asyncio.sleep(0)
        else:
            raise AssertionError(f"writes never all queued: {writes}")  # pragma: no cover
    # The lifespan has shut down: every queued write ran before the engines were disposed.
    assert heroes.batch_stats()["writes"].items == 60
    created = await asyncio.gather(*tasks)
    async with running_client(create_app(Settings(database_url=database_url))) as client:
        assert sorted(await read_all_heroes(client)) == sorted(hero["id"] for hero in created)


async def test_batching_off_runs_one_statement_per_request(database_url: str) -> None:
    app = create_app(Settings(database_url=database_url, batching=False))
    async with running_client(app) as client:
        created = await asyncio.gather(*(make_hero(client, name=f"h{n}") for n in range(20)))
        with hero_selects(app_state(app).engine) as selects:
            responses = await asyncio.gather(*(client.get(f"/heroes/{h['id']}") for h in created))
        assert [response.json() for response in responses] == created
        assert len(selects) == len(created)
        assert (await client.get("/heroes/9999")).json() == NOT_FOUND
        assert (await client.patch("/heroes/9999", json={"age": 1})).json() == NOT_FOUND
    assert service(app).batch_stats() == {}


@pytest.fixture
async def unbatched_client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with running_client(
        create_app(Settings(database_url=database_url, batching=False))
    ) as client:
        yield client


async def test_batching_off_keeps_the_contract(unbatched_client: httpx.AsyncClient) -> None:
    hero = await make_hero(unbatched_client)
    url = f"/heroes/{hero['id']}"
    assert (await unbatched_client.patch(url, json={"age": None})).json() == {**hero, "age": None}
    assert (await unbatched_client.patch(url, json={})).json() == {**hero, "age": None}
    assert (await unbatched_client.delete(url)).json() == {"ok": True}
    assert (await unbatched_client.delete(url)).status_code == 404


async def test_creates_differing_only_in_secret_name_get_their_own_rows(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Rows of a multi-row INSERT are matched to requests by content: even requests that differ
    only in the secret, and identical ones, each get the id of a row holding exactly their data."""
    secrets = [f"secret {n % 12}" for n in range(40)]  # duplicates too
    bodies = [{"name": "Twin", "age": 7, "secret_name": secret} for secret in secrets]
    responses = await asyncio.gather(*(client.post("/heroes/", json=body) for body in bodies))
    ids = [response.json()["id"] for response in responses]
    assert len(set(ids)) == len(bodies)
    async with app_state(app).engine.connect() as connection:
        rows = await connection.execute(text("SELECT id, secret_name FROM hero"))
        stored: dict[int, str] = dict(rows.all())
    assert [stored[hero_id] for hero_id in ids] == secrets
    assert service(app).batch_stats()["writes"].largest > 1


async def test_patches_of_one_hero_in_one_batch_each_see_their_own_change(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    hero = await make_hero(client, name="start", age=0)
    url = f"/heroes/{hero['id']}"
    changes = [{"name": f"n{k}"} if k % 2 == 0 else {"age": k} for k in range(20)]
    responses = await asyncio.gather(*(client.patch(url, json=change) for change in changes))
    for change, response in zip(changes, responses, strict=True):
        assert response.status_code == 200
        assert response.json().items() >= change.items()  # the state right after this PATCH
    final = (await client.get(url)).json()
    assert final in [response.json() for response in responses]
    assert service(app).batch_stats()["writes"].largest > 1


async def test_concurrent_pages_share_one_statement(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    created = await asyncio.gather(*(make_hero(client, name=f"h{n}", age=n) for n in range(40)))
    ids = sorted(hero["id"] for hero in created)
    by_id = {hero["id"]: hero for hero in created}
    pages = [(offset, limit) for offset in (0, 3, 17, 38, 45) for limit in (1, 7, 100)]
    pages += pages[:5]  # the same page twice in one batch
    with hero_selects(app_state(app).engine) as selects:
        responses = await asyncio.gather(
            *(client.get("/heroes/", params={"offset": o, "limit": n}) for o, n in pages)
        )
    for (offset, limit), response in zip(pages, responses, strict=True):
        assert response.status_code == 200
        assert response.json() == [by_id[i] for i in ids[offset : offset + limit]]
    assert len(selects) < len(pages) / 2
    assert service(app).batch_stats()["pages"].largest > 1


@pytest.mark.parametrize("batch", [4, 7, 12, 20])  # the first runs alone, the rest together
async def test_page_batches_of_any_size_run_as_few_statements(
    app: FastAPI, client: httpx.AsyncClient, batch: int
) -> None:
    """SQLite runs a batch as one UNION ALL padded to a power of two with pages that read
    nothing, so a shape needs ten statements, not one per batch size; the padding never shows
    in an answer. (PostgreSQL runs one statement a shape whatever the size.)"""
    created = await asyncio.gather(*(make_hero(client, name=f"h{n}", age=n % 3) for n in range(12)))
    by_age = {age: sorted(h["id"] for h in created if h["age"] == age) for age in range(3)}
    wanted = [(k % 3, k % 4 + 1) for k in range(batch)]  # (age, limit)
    batched = executed(app_state(app).engine, lambda s: "UNION ALL" in s or "unnest" in s)
    with batched as statements:
        responses = await asyncio.gather(
            *(
                client.get("/heroes/", params={"min_age": a, "max_age": a, "limit": n})
                for a, n in wanted
            )
        )
    for (age, limit), response in zip(wanted, responses, strict=True):
        assert [hero["id"] for hero in response.json()] == by_age[age][:limit]
    assert statements, "the pages were not batched"
    for statement, _ in statements:
        terms = statement.count("UNION ALL") + 1
        assert "unnest" in statement or terms & (terms - 1) == 0, terms
