"""PostgreSQL goes away while the service runs: fast 503s with a detail, then recovery by itself.

The service reaches PostgreSQL through a TCP proxy that the test cuts and restores; the shared
PostgreSQL server itself is never touched.
"""

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.databases import PostgresDatabases
from tests.proxy import TcpProxy
from tests.servers import Server

pytestmark = pytest.mark.slow

SECRET = "Oq-Outage-Secret-8812"
UNAVAILABLE = {"detail": "Database unavailable, try again shortly"}
FAST_SECONDS = 5.0  # the longest a request may take to be answered while the database is away
RECOVERY_SECONDS = 10.0


@pytest.fixture
def direct_url(postgres_databases: PostgresDatabases) -> str:
    """The test's database, as the service would reach it without the proxy."""
    return postgres_databases.create()


@pytest.fixture
def proxied(direct_url: str, tmp_path: Path) -> Iterator[tuple[TcpProxy, Server]]:
    url = make_url(direct_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        proxied_url = url.set(host="127.0.0.1", port=proxy.port)
        with Server(proxied_url.render_as_string(hide_password=False), tmp_path) as server:
            yield proxy, server
        log = server.log()
    assert SECRET not in log
    assert "Traceback" not in log, log


async def answered(
    client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
) -> httpx.Response:
    """The response, which must come within FAST_SECONDS: no waiting on a database that is
    gone (TimeoutError otherwise)."""
    async with asyncio.timeout(FAST_SECONDS):
        return await client.request(method, url, **kwargs)


async def recovered(client: httpx.AsyncClient) -> None:
    """Poll /health until it is 200 again; TimeoutError after RECOVERY_SECONDS."""
    async with asyncio.timeout(RECOVERY_SECONDS):
        for _ in itertools.count():
            health = await client.get("/health")
            if health.status_code == 200:
                break
            await asyncio.sleep(0.1)  # pacing only
    assert health.json() == {"status": "ok"}


async def test_database_outage_is_503_then_recovers(proxied: tuple[TcpProxy, Server]) -> None:
    proxy, server = proxied
    body = {"name": "Deadpond", "secret_name": SECRET, "age": 30}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        hero = (await client.post("/heroes/", json=body)).json()

        # Requests racing the cut: each is answered, either normally or with 503.
        async def traffic() -> set[int]:
            statuses = set()
            for _ in range(20):
                statuses.add((await client.get(f"/heroes/{hero['id']}")).status_code)
            return statuses

        racing = asyncio.create_task(traffic())
        await asyncio.to_thread(proxy.cut)
        assert await racing <= {200, 503}

        for _ in range(3):  # repeatedly: pooled connections are dead and new ones refused
            requests: list[tuple[str, str, dict[str, Any]]] = [
                ("GET", f"/heroes/{hero['id']}", {}),
                ("GET", "/heroes/", {}),
                ("POST", "/heroes/", {"json": body}),
                ("PATCH", f"/heroes/{hero['id']}", {"json": {"secret_name": SECRET + "!"}}),
                ("DELETE", f"/heroes/{hero['id']}", {}),
            ]
            for method, url, kwargs in requests:
                response = await answered(client, method, url, **kwargs)
                assert response.status_code == 503, response.text
                assert response.json() == UNAVAILABLE
            health = await answered(client, "GET", "/health")
            assert health.status_code == 503
            assert health.json() == {"status": "unavailable", "detail": "database unreachable"}

        await asyncio.to_thread(proxy.restore)
        await recovered(client)  # without a restart
        # Reads and writes work again, and nothing the outage refused was written.
        assert (await client.get(f"/heroes/{hero['id']}")).json() == hero
        created = await client.post("/heroes/", json=body)
        assert created.status_code == 200, created.text
        assert (await client.get("/heroes/")).json() == [hero, created.json()]


async def test_connection_lost_mid_query_is_503(
    proxied: tuple[TcpProxy, Server], direct_url: str
) -> None:
    """A query already running when the connection drops: asyncpg raises a plain DBAPIError
    (ConnectionDoesNotExistError), which was a 500 before it was classified as "down"."""
    proxy, server = proxied
    dsn = make_url(direct_url).set(drivername="postgresql").render_as_string(hide_password=False)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        hero = (
            await client.post("/heroes/", json={"name": "Locked", "secret_name": SECRET})
        ).json()
        blocker = await asyncpg.connect(dsn, timeout=5)
        try:
            async with blocker.transaction():
                await blocker.execute("SELECT 1 FROM hero WHERE id = $1 FOR UPDATE", hero["id"])
                patch = asyncio.create_task(
                    client.patch(f"/heroes/{hero['id']}", json={"name": "Never"})
                )
                for _ in range(200):  # until the service's UPDATE waits on our row lock
                    waiting = await blocker.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND application_name = 'heroes_api' AND wait_event_type = 'Lock'"
                    )
                    if waiting:
                        break
                    await asyncio.sleep(0.05)
                assert waiting == 1
                await asyncio.to_thread(proxy.cut)
                response = await asyncio.wait_for(patch, timeout=FAST_SECONDS)
            assert response.status_code == 503, response.text
            assert response.json() == UNAVAILABLE
            stored = await blocker.fetchval("SELECT name FROM hero WHERE id = $1", hero["id"])
            assert stored == "Locked"  # the interrupted, uncommitted update did not land
        finally:
            await blocker.close()
        await asyncio.to_thread(proxy.restore)
        await recovered(client)
        # The hero is as it was, and the write the cut interrupted now goes through.
        assert (await client.get(f"/heroes/{hero['id']}")).json() == hero
        patched = await client.patch(f"/heroes/{hero['id']}", json={"name": "Later"})
        assert patched.json() == {**hero, "name": "Later"}
