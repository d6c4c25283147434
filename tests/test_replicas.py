"""Reads from a streaming replica (HEROES_READ_DATABASE_URL), against a real primary and replica.

Each test builds its own throwaway primary and replica (``pg_pair``, tests/pg_cluster.py) and
runs apps in this process on them. Two apps on the same databases stand for two server
processes: writes go to one (``writer``), reads to the other (``reader``), which has committed
nothing itself, so only a ``Consistency-Token`` tells it how new its answer must be. The
replica's lag is real: ``recovery_min_apply_delay`` holds back every COMMIT it replays. One
test adds a second replica, far behind, behind a multi-host URL.

Which server answered is shown by the servers' own statistics (``pg_stat_user_tables``: a hot
standby counts the scans its queries make) and by the statements each of the app's engines
ran. Every wait is a poll with a deadline.
"""

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from heroes_api.app import create_app
from heroes_api.client import HeroesClient, NotFound
from heroes_api.config import Settings
from heroes_api.replicas import REPLICA_POSITION, TOKEN_HEADER, parse_token, token
from heroes_api.state import AppState, app_state
from tests.helpers import hero_selects, make_hero, running_client, scrape, value
from tests.pg_cluster import SERVER_USER, PgCluster, PgServer, _bindir, _run

pytestmark = pytest.mark.slow

DATABASE = "heroes"
LAG_MS = 500  # the replica's replay delay where a test wants it behind
CLIENTS = 16
ROUNDS = 13  # x CLIENTS: 208 creates and 208 patches, each read back
DEADLINE_SECONDS = 30.0
_ETAG = re.compile(r'"(-?[0-9]+)-([0-9]+)"')


# --- the servers ---------------------------------------------------------------------------


def primary_position(cluster: PgCluster) -> int:
    return int(cluster.primary.query("SELECT pg_current_wal_lsn() - '0/0'"))


def replayed(cluster: PgCluster) -> int:
    return int(cluster.replica.query("SELECT pg_last_wal_replay_lsn() - '0/0'"))


def poll(condition: Callable[[], bool], what: str, seconds: float = DEADLINE_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def wait_for_replay(cluster: PgCluster, position: int) -> None:
    """Until the replica has replayed up to ``position`` (a token's, say)."""
    poll(lambda: replayed(cluster) >= position, f"the replica at {token(position)}")


def catch_up(cluster: PgCluster) -> None:
    wait_for_replay(cluster, primary_position(cluster))


@asynccontextmanager
async def replay_paused(cluster: PgCluster) -> AsyncIterator[None]:
    """The replica replays nothing written in the block, however long the block takes (a replay
    delay alone holds a write back only for so long, and a busy machine may take longer)."""
    await asyncio.to_thread(cluster.pause_replay)
    try:
        yield
    finally:
        await asyncio.to_thread(cluster.resume_replay)


async def wait_until(
    condition: Callable[[], Awaitable[bool]], what: str, seconds: float = DEADLINE_SECONDS
) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@dataclass(frozen=True)
class HeroStats:
    """``pg_stat_user_tables`` for ``hero`` on one server."""

    scans: int  # seq_scan + idx_scan: every statement that reads the table adds one or more
    inserted: int  # n_tup_ins (a standby counts none)


def hero_stats(server: PgServer) -> HeroStats:
    row = server.query(
        "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0), n_tup_ins "
        "FROM pg_stat_user_tables WHERE relname = 'hero'",
        DATABASE,
    )
    scans, inserted = map(int, row.split("|"))
    return HeroStats(scans, inserted)


def settled_stats(server: PgServer) -> HeroStats:
    """The statistics once every other session on the database has ended: a backend publishes
    the counts it holds back (for up to 10 s while busy) before it leaves pg_stat_activity."""
    others = (
        "SELECT count(*) FROM pg_stat_activity "
        f"WHERE datname = '{DATABASE}' AND pid <> pg_backend_pid()"
    )
    poll(lambda: server.query(others, DATABASE) == "0", f"{server.name}: sessions ended")
    return hero_stats(server)


@pytest.fixture
def pair(pg_pair: PgCluster) -> PgCluster:
    """A primary and its replica, both with the migrated ``heroes`` database."""
    pg_pair.create_database(DATABASE)
    catch_up(pg_pair)
    return pg_pair


def make_app(cluster: PgCluster, **settings: Any) -> FastAPI:
    """An app (a server process) writing to the primary and reading from the replica."""
    settings.setdefault("read_database_url", cluster.url("replica", DATABASE))
    return create_app(
        Settings(database_url=cluster.url("primary", DATABASE), access_log=False, **settings)
    )


@dataclass(frozen=True)
class Process:
    """An app standing for one server process, and an HTTP client on it."""

    app: FastAPI
    client: httpx.AsyncClient

    @property
    def state(self) -> AppState:
        return app_state(self.app)

    @property
    def read_engine(self) -> AsyncEngine:
        engine = self.state.read_engine
        assert engine is not None
        return engine


@asynccontextmanager
async def two_processes(
    cluster: PgCluster, **reader_settings: Any
) -> AsyncIterator[tuple[Process, Process]]:
    """Two apps on the same databases: the one that writes, the one that reads."""
    writer, reader = make_app(cluster), make_app(cluster, **reader_settings)
    async with running_client(writer) as writes, running_client(reader) as reads:
        yield Process(writer, writes), Process(reader, reads)


class ByMethod(httpx.AsyncBaseTransport):
    """A load balancer sending writes to one process and reads to another."""

    def __init__(self, writes: FastAPI, reads: FastAPI) -> None:
        self._writes = httpx.ASGITransport(app=writes)
        self._reads = httpx.ASGITransport(app=reads)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        transport = self._reads if request.method in ("GET", "HEAD") else self._writes
        return await transport.handle_async_request(request)


@asynccontextmanager
async def balanced(cluster: PgCluster) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    """One HTTP client on two processes, writes to the first and reads to the second; and the
    reading app."""
    writes, reads = make_app(cluster), make_app(cluster)
    async with LifespanManager(writes) as w, LifespanManager(reads) as r:
        transport = ByMethod(w.app, r.app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http, reads


def version(response: httpx.Response) -> int:
    """The hero's version, from the answer's ETag."""
    found = _ETAG.fullmatch(response.headers["etag"])
    assert found is not None, response.headers["etag"]
    return int(found[2])


def tokened(response: httpx.Response) -> dict[str, str]:
    """The headers that carry a write's token to a read."""
    return {TOKEN_HEADER: response.headers[TOKEN_HEADER]}


def after(hero_id: int) -> dict[str, int]:
    """Query parameters of the keyset page that starts at ``hero_id``."""
    return {"after_id": hero_id - 1, "limit": 1}


# --- 1. routing ---------------------------------------------------------------------------


async def test_reads_are_served_by_the_replica_and_writes_by_the_primary(
    pair: PgCluster,
) -> None:
    primary_before = settled_stats(pair.primary)
    replica_before = settled_stats(pair.replica)
    app = make_app(pair)
    state = app_state(app)
    assert state.read_engine is not None
    creates = 20
    async with running_client(app) as client:
        heroes = [await make_hero(client, name=f"hero{n}", age=n) for n in range(creates)]
        await asyncio.to_thread(catch_up, pair)
        with hero_selects(state.engine) as on_primary, hero_selects(state.read_engine) as on_rep:
            for _ in range(3):
                reads = await asyncio.gather(
                    *(client.get(f"/heroes/{hero['id']}") for hero in heroes),
                    client.get("/heroes/999999"),
                    client.get("/heroes/", params={"limit": 100}),
                    client.get("/heroes/", params=after(heroes[5]["id"])),
                    client.get("/heroes/", params={"name": "hero7"}),
                    client.get("/heroes/", params={"min_age": 3, "max_age": 4}),
                )
                *points, missing, everything, keyset, named, aged = reads
                assert [read.json() for read in points] == heroes
                assert missing.status_code == 404
                assert everything.json() == heroes
                assert keyset.json() == [heroes[5]]
                assert named.json() == [heroes[7]]
                assert aged.json() == heroes[3:5]
        assert on_primary == [], "a read went to the primary"
        assert len(on_rep) >= 6  # per round: at least one batch of points, one of pages
        metrics = await scrape(client)
        assert ("heroes_db_connections_in_use", frozenset({("pool", "replica")})) in metrics
        assert "heroes_replica_lag_seconds" in {name for name, _ in metrics}
    # The app is closed: its sessions have ended and published their counts.
    primary_after = settled_stats(pair.primary)
    replica_after = settled_stats(pair.replica)
    print(
        f"routing: {len(on_rep)} hero SELECTs on the replica; replica scans "
        f"{replica_before.scans} -> {replica_after.scans}, primary scans "
        f"{primary_before.scans} -> {primary_after.scans}, primary inserts "
        f"{primary_before.inserted} -> {primary_after.inserted}"
    )
    assert replica_after.scans - replica_before.scans >= len(on_rep)
    assert primary_after.scans == primary_before.scans  # no read of hero on the primary
    assert primary_after.inserted - primary_before.inserted == creates
    assert replica_after.inserted == replica_before.inserted  # a standby inserts nothing


async def test_a_malformed_token_is_a_422_naming_the_header(pair: PgCluster) -> None:
    async with running_client(make_app(pair)) as client:
        hero = await make_hero(client)
        for bad in ("", "0", "00000000000000zz", "0000000000000a1b", "0" * 17, " " + "0" * 16):
            for url in (f"/heroes/{hero['id']}", "/heroes/"):
                response = await client.get(url, headers={TOKEN_HEADER: bad})
                assert response.status_code == 422, (bad, url, response.text)
                (error,) = response.json()["detail"]
                assert error["loc"] == ["header", TOKEN_HEADER]
        read = await client.get(f"/heroes/{hero['id']}", headers={TOKEN_HEADER: "0" * 16})
        assert read.json() == hero


# --- 2. tokens under lag ------------------------------------------------------------------


@dataclass
class Freshness:
    """What reads from the process that did not write saw, with the write's token and without."""

    with_token: int = 0
    stale_with_token: list[str] = field(default_factory=list)
    without_token: int = 0
    stale_without_token: int = 0

    def check(self, fresh: bool, what: str, *, tokened: bool) -> None:
        if tokened:
            self.with_token += 1
            if not fresh:
                self.stale_with_token.append(what)
        else:
            self.without_token += 1
            self.stale_without_token += not fresh


async def create_then_read(
    writer: httpx.AsyncClient, reader: httpx.AsyncClient, client: int, seen: Freshness
) -> None:
    for round_ in range(ROUNDS):
        created = await writer.post(
            "/heroes/", json={"name": f"c{client}-{round_}", "secret_name": "s"}
        )
        assert created.status_code == 200, created.text
        hero_id = created.json()["id"]
        url, page = f"/heroes/{hero_id}", after(hero_id)
        # Without the token first, then with it: the replica is only further along by then.
        for headers in ({}, tokened(created)):
            read, listed = await asyncio.gather(
                reader.get(url, headers=headers),
                reader.get("/heroes/", params=page, headers=headers),
            )
            assert read.status_code in (200, 404)
            assert listed.status_code == 200
            fresh = read.status_code == 200 and version(read) >= 1
            seen.check(fresh, f"GET {url}: {read.status_code}", tokened=bool(headers))
            fresh = [hero["id"] for hero in listed.json()] == [hero_id]
            seen.check(fresh, f"page at {hero_id}: {listed.json()}", tokened=bool(headers))

        patched = await writer.patch(url, json={"name": f"p{client}-{round_}"})
        assert patched.status_code == 200, patched.text
        written = version(patched)
        for headers in ({}, tokened(patched)):
            read = await reader.get(url, headers=headers)
            assert read.status_code in (200, 404)  # 404: not even the create is there yet
            fresh = (
                read.status_code == 200
                and read.json()["name"] == f"p{client}-{round_}"
                and version(read) >= written
            )
            seen.check(fresh, f"GET {url} after PATCH: {read.text}", tokened=bool(headers))


async def test_a_read_with_the_token_of_a_write_sees_it_on_another_process(
    pair: PgCluster,
) -> None:
    await asyncio.to_thread(pair.set_replica_delay, LAG_MS)
    seen = Freshness()
    started = time.monotonic()
    async with two_processes(pair) as (writer, reader):
        await asyncio.gather(
            *(create_then_read(writer.client, reader.client, n, seen) for n in range(CLIENTS))
        )
        elapsed = time.monotonic() - started
        # Once the replica has replayed a write, a read with its token is served by the replica.
        await asyncio.to_thread(pair.set_replica_delay, 0)
        last = await writer.client.post("/heroes/", json={"name": "last", "secret_name": "s"})
        await asyncio.to_thread(wait_for_replay, pair, parse_token(last.headers[TOKEN_HEADER]))
        with hero_selects(reader.read_engine) as on_replica:
            read = await reader.client.get(f"/heroes/{last.json()['id']}", headers=tokened(last))
        assert read.json() == last.json()
        assert len(on_replica) == 1
    print(
        f"tokens under {LAG_MS} ms of lag, {CLIENTS} clients x {ROUNDS} rounds ({elapsed:.1f} s): "
        f"with the token {len(seen.stale_with_token)} stale of {seen.with_token} reads; "
        f"without it {seen.stale_without_token} stale of {seen.without_token}"
    )
    assert seen.with_token == seen.without_token == CLIENTS * ROUNDS * 3
    assert seen.stale_with_token == []
    assert seen.stale_without_token > 0  # the lag is real: the token is what made them fresh


# --- 3. one batch, fresh and not-yet-fresh reads --------------------------------------------


async def test_one_batch_sends_each_read_where_it_is_fresh(pair: PgCluster) -> None:
    """Reads of one batch: some with a token the replica has passed (served by the replica),
    some with one it has not (served by the primary), all right."""
    async with two_processes(pair) as (writer, reader):
        old = await writer.client.post("/heroes/", json={"name": "old", "secret_name": "s"})
        await asyncio.to_thread(wait_for_replay, pair, parse_token(old.headers[TOKEN_HEADER]))
        async with replay_paused(pair):
            new = await writer.client.post("/heroes/", json={"name": "new", "secret_name": "s"})
            old_id, old_token = old.json()["id"], parse_token(old.headers[TOKEN_HEADER])
            new_id, new_token = new.json()["id"], parse_token(new.headers[TOKEN_HEADER])

            service = reader.state.hero_service
            before = service.batch_stats()["reads"]
            before_batches, before_items = before.batches, before.items
            reads = [(old_id, old_token), (new_id, new_token)] * 10 + [(old_id, None)] * 5
            with (
                hero_selects(reader.state.engine) as on_primary,
                hero_selects(reader.read_engine) as on_replica,
            ):
                # The first read runs alone; all the others queue behind it: one batch.
                found = await asyncio.gather(
                    service.get(old_id), *(service.get(hero_id, tok) for hero_id, tok in reads)
                )
            assert replayed(pair) < new_token  # the new hero was still held back on the replica
            stats = service.batch_stats()["reads"]
            assert (stats.batches - before_batches, stats.items - before_items) == (
                2,
                len(reads) + 1,
            )
            assert [row.hero["id"] for row in found] == [old_id] + [hero_id for hero_id, _ in reads]
            assert [row.hero["name"] for row in found[1:3]] == ["old", "new"]
            on_replica_ids = {arg for _, args in on_replica for arg in args}
            on_primary_ids = {arg for _, args in on_primary for arg in args}
            assert old_id in on_replica_ids
            assert new_id not in on_replica_ids
            assert new_id in on_primary_ids

            # The same through HTTP, pages too.
            answers = await asyncio.gather(
                *(
                    request
                    for _ in range(5)
                    for request in (
                        reader.client.get(f"/heroes/{old_id}", headers=tokened(old)),
                        reader.client.get(f"/heroes/{new_id}", headers=tokened(new)),
                        reader.client.get("/heroes/", params=after(old_id), headers=tokened(old)),
                        reader.client.get("/heroes/", params=after(new_id), headers=tokened(new)),
                    )
                )
            )
            for number, answer in enumerate(answers):
                expected = [old.json(), new.json()][number % 2]
                assert answer.json() == (expected if number % 4 < 2 else [expected]), number


async def test_a_token_the_replica_has_passed_is_served_by_it_however_far_it_lags(
    pair: PgCluster,
) -> None:
    """HEROES_READ_MAX_LAG is for token-less reads: a read whose token the replica has replayed
    past is fresh enough, whatever the replica's lag."""
    await asyncio.to_thread(pair.set_replica_delay, LAG_MS)
    async with two_processes(pair, read_max_lag=0.05) as (writer, reader):
        old = await writer.client.post("/heroes/", json={"name": "old", "secret_name": "s"})
        await asyncio.to_thread(wait_for_replay, pair, parse_token(old.headers[TOKEN_HEADER]))
        async with replay_paused(pair):
            await make_hero(writer.client)  # held back: the replica lags from now on
            hero_id = old.json()["id"]
            with (
                hero_selects(reader.read_engine) as on_replica,
                hero_selects(reader.state.engine) as on_primary,
            ):
                read = await reader.client.get(f"/heroes/{hero_id}", headers=tokened(old))
                listed = await reader.client.get("/heroes/", params=after(hero_id))
            assert read.json() == old.json()
            assert listed.json() == [old.json()]
            assert len(on_replica) == 1, "a read with a token the replica has passed went elsewhere"
            assert len(on_primary) == 1  # the token-less page: the replica lags more than 0.05 s


async def test_a_token_read_waits_a_moment_for_the_replica(pair: PgCluster) -> None:
    """A replica a little behind a token is waited for (up to HEROES_READ_FRESH_WAIT), so the
    read still runs on it; with no wait allowed, the read goes to the primary at once."""
    await asyncio.to_thread(pair.set_replica_delay, 100)
    impatient_app = make_app(pair, read_fresh_wait=0)
    async with (
        two_processes(pair, read_fresh_wait=DEADLINE_SECONDS) as (writer, waits),
        running_client(impatient_app) as client,
    ):
        impatient = Process(impatient_app, client)

        async def read_back(reader: Process) -> tuple[int, int]:
            """A write read back with its token through ``reader``: (replica, primary) SELECTs."""
            created = await writer.client.post("/heroes/", json={"name": "A", "secret_name": "s"})
            with (
                hero_selects(reader.read_engine) as on_replica,
                hero_selects(reader.state.engine) as on_primary,
            ):
                read = await reader.client.get(
                    f"/heroes/{created.json()['id']}", headers=tokened(created)
                )
            assert read.json() == created.json()
            return len(on_replica), len(on_primary)

        for _ in range(3):
            assert await read_back(waits) == (1, 0)  # 100 ms behind the token: waited for
            async with replay_paused(pair):  # behind the token for as long as it takes
                assert await read_back(impatient) == (0, 1)


async def test_an_empty_patch_is_checked_against_the_primary(pair: PgCluster) -> None:
    """``PATCH {}`` writes nothing but answers under ``If-Match`` like a write: against the
    hero as it is, never as a lagging replica still shows it."""
    async with two_processes(pair) as (writer, other):
        hero = await make_hero(writer.client)
        url = f"/heroes/{hero['id']}"
        first = await writer.client.get(url)
        await asyncio.to_thread(catch_up, pair)
        async with replay_paused(pair):
            patched = await writer.client.patch(url, json={"age": 99})
            created = await writer.client.post("/heroes/", json={"name": "N", "secret_name": "s"})
            stale = await other.client.patch(
                url, json={}, headers={"If-Match": first.headers["etag"]}
            )
            current = await other.client.patch(url, json={}, headers=tokened(patched))
            new = await other.client.patch(f"/heroes/{created.json()['id']}", json={})
            assert replayed(pair) < parse_token(patched.headers[TOKEN_HEADER])  # still lagging
    assert stale.status_code == 412, stale.text  # the hero changed since that ETag
    assert (current.json(), current.headers["etag"]) == (patched.json(), patched.headers["etag"])
    assert new.json() == created.json()


def add_replica(cluster: PgCluster, name: str) -> PgServer:
    """Another replica streaming from the cluster's primary (stop it with ``close()``)."""
    server = PgServer(name, cluster.root)
    conninfo = (
        f"host=127.0.0.1 port={cluster.primary.port} user={SERVER_USER} application_name={name}"
    )
    basebackup = [str(_bindir() / "pg_basebackup"), "-D", str(server.data_dir), "-R"]
    fast = ["-X", "stream", "--checkpoint=fast", "--no-sync"]
    _run([*basebackup, *fast, "-d", conninfo], cwd=cluster.root)
    server.configure(port=server.port)
    server.start()
    return server


async def test_a_token_is_checked_on_the_replica_that_answers(pair: PgCluster) -> None:
    """Two replicas in a multi-host URL, the second far behind the first: once the first fails
    and reads go to the second, a token the first had passed is not taken as passed there."""
    behind = await asyncio.to_thread(add_replica, pair, "behind")
    try:
        behind.query(f"ALTER SYSTEM SET recovery_min_apply_delay = '{DEADLINE_SECONDS}s'")
        behind.query("SELECT pg_reload_conf()")
        hosts = f"host=127.0.0.1:{pair.replica.port}&host=127.0.0.1:{behind.port}"
        replicas = f"postgresql+asyncpg://{SERVER_USER}@/{DATABASE}?{hosts}"
        async with (
            running_client(make_app(pair)) as writer,
            running_client(make_app(pair, read_database_url=replicas)) as reader,
        ):
            created = await writer.post("/heroes/", json={"name": "A", "secret_name": "s"})
            url = f"/heroes/{created.json()['id']}"
            await asyncio.to_thread(catch_up, pair)  # the first replica, not the one behind
            assert (await reader.get(url, headers=tokened(created))).json() == created.json()
            await asyncio.to_thread(pair.stop_replica)
            reads = [await reader.get(url, headers=tokened(created))]
            # The first replica's connections failed: the reads try again after a second.
            assert (await reader.get("/heroes/999999")).status_code == 404

            async def on_the_replica_behind() -> bool:
                answered = await asyncio.to_thread(
                    behind.query,
                    f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{DATABASE}' "
                    "AND application_name = 'heroes_api'",
                )
                reads.append(await reader.get(url, headers=tokened(created)))
                return answered != "0"

            await wait_until(on_the_replica_behind, "reads on the replica behind")
            for _ in range(5):
                reads.append(await reader.get(url, headers=tokened(created)))
        stale = [read.status_code for read in reads if read.status_code != 200]
        print(f"two replicas: {len(stale)} of {len(reads)} token reads stale")
        assert stale == []
    finally:
        behind.close()


# --- 4. the replica stopped and started under read load -------------------------------------


@dataclass
class ReadLoad:
    reads: int = 0
    failures: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)


async def read_loop(
    client: httpx.AsyncClient, heroes: Sequence[dict[str, Any]], number: int, load: ReadLoad
) -> None:
    for n in range(100_000):  # bounded; stopped long before
        if load.stop.is_set():
            return
        hero = heroes[(number + n) % len(heroes)]
        checks = [
            (client.get(f"/heroes/{hero['id']}"), 200, hero),
            (client.get("/heroes/999999"), 404, None),
            (client.get("/heroes/", params=after(hero["id"])), 200, [hero]),
        ]
        for request, status, body in checks:
            try:
                response = await request
            except httpx.HTTPError as error:
                load.failures.append(repr(error))
                continue
            load.reads += 1
            if response.status_code != status or (body is not None and response.json() != body):
                load.failures.append(f"{response.status_code} {response.text}")


async def test_reads_never_fail_while_the_replica_stops_and_starts(pair: PgCluster) -> None:
    app = make_app(pair)
    async with running_client(app) as client:
        heroes = [await make_hero(client, name=f"hero{n}") for n in range(20)]
        await asyncio.to_thread(catch_up, pair)
        load = ReadLoad()
        readers = asyncio.gather(*(read_loop(client, heroes, n, load) for n in range(8)))
        timings: dict[str, float] = {}
        try:
            await wait_until(lambda: _at_least(load, 200), "reads before the stop")
            started = time.monotonic()
            await asyncio.to_thread(pair.stop_replica)
            timings["stopped"] = time.monotonic() - started
            before_stop = load.reads
            await wait_until(lambda: _at_least(load, before_stop + 300), "reads while stopped")
            during = load.reads - before_stop
            await asyncio.to_thread(pair.start_replica)
            await asyncio.to_thread(pair.wait_for_streaming)
            timings["down"] = time.monotonic() - started
            baseline = (await asyncio.to_thread(hero_stats, pair.replica)).scans
            # Caught up (nothing was written meanwhile), it lags by nothing: not by the time
            # since the last commit it replayed, which would keep reads off it while the
            # primary is idle.
            await asyncio.to_thread(catch_up, pair)
            position = await asyncio.to_thread(pair.replica.query, str(REPLICA_POSITION), DATABASE)
            assert position.split("|")[1] == "0"

            async def replica_reads_again() -> bool:
                stats = await asyncio.to_thread(hero_stats, pair.replica)
                return stats.scans > baseline

            await wait_until(replica_reads_again, "reads on the replica again")
            timings["back"] = time.monotonic() - started
        finally:
            load.stop.set()
            await readers
    print(
        f"replica stopped and started under 8 readers: {load.reads} reads, "
        f"{len(load.failures)} failed; {during} while it was down; stopped after "
        f"{timings['stopped']:.2f} s, up again after {timings['down']:.2f} s, its statistics "
        f"grew again after {timings['back']:.2f} s"
    )
    assert load.failures == []


async def _at_least(load: ReadLoad, reads: int) -> bool:
    return load.reads >= reads


# --- 6. the lag metric ----------------------------------------------------------------------


async def test_the_lag_metric_follows_the_replica(pair: PgCluster) -> None:
    await asyncio.to_thread(pair.set_replica_delay, LAG_MS)
    async with two_processes(pair) as (writer, reader):
        hero = await make_hero(writer.client)
        url = f"/heroes/{hero['id']}"
        stop = asyncio.Event()

        async def write_and_read() -> None:
            for n in range(10_000):  # bounded; stopped long before
                if stop.is_set():
                    return
                await writer.client.patch(url, json={"age": n})
                await reader.client.get(url)  # the lag is measured by reads

        async def lag() -> float:
            return value(await scrape(reader.client), "heroes_replica_lag_seconds")

        seen = 0.0

        async def lagging() -> bool:  # a reading right after a replay is less than the delay
            nonlocal seen
            seen = max(seen, await lag())
            return seen >= LAG_MS / 1000 / 2

        load = asyncio.gather(write_and_read(), write_and_read())
        try:
            await wait_until(lagging, f"heroes_replica_lag_seconds >= {LAG_MS / 2000} s")
        finally:
            stop.set()
            await load
        await asyncio.to_thread(pair.set_replica_delay, 0)
        await asyncio.to_thread(catch_up, pair)

        async def caught_up() -> bool:
            await reader.client.get(url)
            return await lag() == 0

        await wait_until(caught_up, "heroes_replica_lag_seconds back to 0")
    print(f"lag metric: {seen:.3f} s while the replica was {LAG_MS} ms behind, then 0")
    assert seen >= LAG_MS / 1000 / 2


# --- 7. and 8. the client -------------------------------------------------------------------


async def test_the_client_reads_its_own_writes_through_another_process(pair: PgCluster) -> None:
    await asyncio.to_thread(pair.set_replica_delay, LAG_MS)
    missed: list[int] = []
    stale_without_token = 0

    async with balanced(pair) as (http, _):

        async def own_writes(number: int) -> None:
            heroes = HeroesClient("http://test", http_client=http)
            for round_ in range(ROUNDS):
                hero = await heroes.create(name=f"c{number}-{round_}", secret_name="s")
                try:
                    found = await heroes.get(hero.id)
                except NotFound:
                    missed.append(hero.id)
                else:
                    assert found == hero

        async def without_token() -> None:
            nonlocal stale_without_token
            for _ in range(ROUNDS):
                created = await http.post("/heroes/", json={"name": "x", "secret_name": "s"})
                read = await http.get(f"/heroes/{created.json()['id']}")
                stale_without_token += read.status_code == 404

        await asyncio.gather(*(own_writes(n) for n in range(CLIENTS)), without_token())
    print(
        f"client: {len(missed)} of {CLIENTS * ROUNDS} own creates not found; without a token "
        f"{stale_without_token} of {ROUNDS} not found"
    )
    assert missed == []
    assert stale_without_token > 0  # the same reads without the token miss


async def test_a_client_never_sees_a_version_older_than_its_own_write(pair: PgCluster) -> None:
    await asyncio.to_thread(pair.set_replica_delay, LAG_MS)
    older: list[str] = []
    reads = 0

    async with balanced(pair) as (http, _):

        async def patch_and_read(number: int) -> None:
            nonlocal reads
            heroes = HeroesClient("http://test", http_client=http)
            hero = await heroes.create(name=f"c{number}", secret_name="s")
            for round_ in range(ROUNDS):
                written = await heroes.update(hero.id, age=round_)
                assert written.etag is not None
                for _ in range(2):
                    found = await heroes.get(hero.id)
                    reads += 1
                    assert found.etag is not None
                    if _version(found.etag) < _version(written.etag) or found.age != round_:
                        older.append(f"{found.etag} after {written.etag}")

        await asyncio.gather(*(patch_and_read(n) for n in range(CLIENTS)))
    print(f"ETags: {len(older)} of {reads} reads older than the client's last write")
    assert older == []


def _version(etag: str) -> int:
    found = _ETAG.fullmatch(etag)
    assert found is not None, etag
    return int(found[2])
