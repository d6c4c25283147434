"""PostgreSQL goes away while the service runs: fast 503s with a detail, then recovery by itself.

The service reaches PostgreSQL through a TCP proxy that the test cuts and restores; the shared
PostgreSQL server itself is never touched.
"""

import asyncio
import time
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

SECRET = "Oq-Outage-Secret-8812"
UNAVAILABLE = {"detail": "Database unavailable, try again shortly"}
FAST_SECONDS = 5.0


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


async def timed(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    started = time.monotonic()
    response = await client.request(method, url, **kwargs)
    assert time.monotonic() - started < FAST_SECONDS, (method, url)
    return response


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
                response = await timed(client, method, url, **kwargs)
                assert response.status_code == 503, response.text
                assert response.json() == UNAVAILABLE
            health = await timed(client, "GET", "/health")
            assert health.status_code == 503
            assert health.json() == {"status": "unavailable", "detail": "database unreachable"}

        await asyncio.to_thread(proxy.restore)
        for _ in range(100):  # recovers without a restart
            if (await client.get("/health")).status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert (await client.get(f"/heroes/{hero['id']}")).json() == hero
        assert (await client.post("/heroes/", json=body)).status_code == 200
        assert len((await client.get("/heroes/")).json()) == 2


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
                started = time.monotonic()
                response = await asyncio.wait_for(patch, timeout=FAST_SECONDS)
                assert time.monotonic() - started < FAST_SECONDS
            assert response.status_code == 503, response.text
            assert response.json() == UNAVAILABLE
            stored = await blocker.fetchval("SELECT name FROM hero WHERE id = $1", hero["id"])
            assert stored == "Locked"  # the interrupted, uncommitted update did not land
        finally:
            await blocker.close()
        await asyncio.to_thread(proxy.restore)
        for _ in range(100):
            if (await client.get("/health")).status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert (await client.get(f"/heroes/{hero['id']}")).json() == hero
