"""PostgreSQL-only behaviour: pools, and values a PostgreSQL database cannot store."""

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from heroes_api import db
from heroes_api.state import app_state
from tests.databases import PostgresDatabases
from tests.helpers import MakeApp, MakeClient, make_hero, running_client


@pytest.fixture
def database_url(postgres_databases: PostgresDatabases) -> Iterator[str]:
    """PostgreSQL only: this module's tests run once, on a database of their own."""
    url = postgres_databases.create()
    yield url
    postgres_databases.drop(url)


@pytest.fixture
def latin1_url(postgres_databases: PostgresDatabases) -> str:
    return postgres_databases.create(
        options="ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
    )


async def test_value_the_database_cannot_encode_is_422(
    make_client: MakeClient, latin1_url: str
) -> None:
    client = await make_client(database_url=latin1_url)
    ok = await client.post("/heroes/", json={"name": "Zoë", "secret_name": "s"})
    assert ok.status_code == 200
    refused = await client.post("/heroes/", json={"name": "デッドプール", "secret_name": "s"})
    assert refused.status_code == 422
    assert refused.json() == {"detail": "A value in the request cannot be stored by the database"}
    patch = await client.patch(f"/heroes/{ok.json()['id']}", json={"secret_name": "秘密"})
    assert patch.status_code == 422
    heroes: list[dict[str, Any]] = (await client.get("/heroes/")).json()
    assert heroes == [ok.json()]


async def test_postgres_engine_uses_pool_settings(make_app: MakeApp) -> None:
    app = make_app(db_pool_size=2, db_max_overflow=1)
    pool: Any = app_state(app).engine.pool
    assert (pool.size(), pool._max_overflow) == (2, 1)
    assert app_state(app).write_engine is app_state(app).engine
    async with running_client(app) as client:
        assert (await client.get("/health")).status_code == 200


async def terminate_service_connections(postgres_url: str) -> int:
    """Terminate the service's connections to the database, waiting (up to 5 s each) until
    their server processes have exited; returns how many there were."""
    dsn = make_url(postgres_url).set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(dsn, timeout=5)
    try:
        ended: list[bool] = [
            row[0]
            for row in await admin.fetch(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = 'heroes_api'"
            )
        ]
    finally:
        await admin.close()
    assert all(ended), ended
    return len(ended)


class Clock:
    """The monotonic clock the pool's idle check reads, moved by the test alone."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.mark.parametrize(("ping_after", "status"), [(0.2, 200), (0.0, 200), (60.0, 503)])
async def test_a_connection_dropped_while_idle_is_replaced_after_its_ping_window(
    make_client: MakeClient,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    ping_after: float,
    status: int,
) -> None:
    """The server drops the pooled connection while it is idle for 0.3 s. Pinged (idle past the
    window, or every checkout with 0), it is replaced unseen; inside the window the next
    request gets a 503, and the one after it a fresh connection."""
    clock = Clock()
    monkeypatch.setattr(db, "time", SimpleNamespace(monotonic=clock.monotonic))
    client = await make_client(db_pool_ping_after=ping_after)
    hero = await make_hero(client)
    assert await terminate_service_connections(database_url) >= 1
    clock.now += 0.3
    assert (await client.get(f"/heroes/{hero['id']}")).status_code == status
    assert (await client.get(f"/heroes/{hero['id']}")).json() == hero
