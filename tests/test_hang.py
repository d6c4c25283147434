"""PostgreSQL hangs under a running service: every request is a 503 within seconds, then the
service recovers by itself when the database answers again.

A hang is not an outage that refuses (tests/test_outage.py): connections stay open, new ones
are accepted, and nothing ever comes back. Only timeouts end the wait: the statement timeout
for a connection in use, the ping and a reconnect for a pooled connection that sat idle, the
connect timeout for a new one (``HEROES_DB_COMMAND_TIMEOUT``, ``HEROES_DB_CONNECT_TIMEOUT``).
The shared PostgreSQL server is never touched: the freeze is in a proxy in front of it.
"""

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from heroes_api.app import create_app
from heroes_api.config import Settings
from tests.databases import PostgresDatabases
from tests.freezing_proxy import FreezingTcpProxy
from tests.helpers import make_hero, running_client

UNAVAILABLE = {"detail": "Database unavailable, try again shortly"}
HEALTH_UNAVAILABLE = {"status": "unavailable", "detail": "database unreachable"}
# The bound the defaults are chosen for (the slowest path, ping then reconnect, takes 4 s). The
# defaults before it took 12 s for the first request on a busy connection, 5 s for each next.
FAST_SECONDS = 5.0
RECOVERY_SECONDS = 10.0

pytestmark = pytest.mark.slow


@pytest.fixture
def freezable(postgres_databases: PostgresDatabases) -> Iterator[tuple[FreezingTcpProxy, str]]:
    """A freezable proxy in front of this test's database, and the URL through it."""
    url = make_url(postgres_databases.create())
    with FreezingTcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(False)


async def timed(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> float:
    """Seconds until ``method url`` was answered 503, as a database outage is."""
    started = time.monotonic()
    response = await client.request(method, url, **kwargs)
    took = time.monotonic() - started
    assert response.status_code == 503, (method, url, response.text)
    expected = HEALTH_UNAVAILABLE if url == "/health" else UNAVAILABLE
    assert response.json() == expected, response.text
    return took


@pytest.mark.parametrize(
    "ping_after",
    [
        pytest.param(1.0, id="connection-in-use"),  # the default: used a moment ago, no ping
        pytest.param(0.0, id="pinged-connection"),  # every checkout pings first
    ],
)
async def test_a_hung_database_is_503_within_seconds_then_recovers(
    freezable: tuple[FreezingTcpProxy, str], ping_after: float
) -> None:
    proxy, url = freezable
    app = create_app(Settings(database_url=url, db_pool_ping_after=ping_after))
    async with running_client(app) as client:
        hero = await make_hero(client)
        await asyncio.to_thread(proxy.freeze)

        first = await timed(client, "GET", f"/heroes/{hero['id']}")
        later = [
            await timed(client, "POST", "/heroes/", json={"name": "Late", "secret_name": "s"}),
            await timed(client, "GET", "/heroes/"),
            await timed(client, "GET", "/health"),
        ]
        then = ", ".join(f"{t:.2f}" for t in later)
        print(f"hung database, {ping_after=}: first 503 after {first:.2f} s, then {then} s")
        assert first < FAST_SECONDS
        assert max(later) < FAST_SECONDS

        await asyncio.to_thread(proxy.unfreeze)
        deadline = time.monotonic() + RECOVERY_SECONDS
        while (await client.get("/health")).status_code != 200:  # recovers without a restart
            assert time.monotonic() < deadline, "no recovery after the database answered again"
            await asyncio.sleep(0.05)
        assert (await client.get(f"/heroes/{hero['id']}")).json() == hero
        await make_hero(client, name="After")
        names = [h["name"] for h in (await client.get("/heroes/")).json()]
        assert names == [hero["name"], "After"]  # the write sent into the hang did not land
