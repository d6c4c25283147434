"""PostgreSQL-only behaviour: pools, and values a PostgreSQL database cannot store."""

from typing import Any

import pytest

from heroes_api.config import Settings
from heroes_api.main import create_app
from tests.databases import PostgresDatabases
from tests.factories import running_client


@pytest.fixture
def postgres_url(postgres_databases: PostgresDatabases) -> str:
    return postgres_databases.create()


@pytest.fixture
def latin1_url(postgres_databases: PostgresDatabases) -> str:
    return postgres_databases.create(
        options="ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
    )


async def test_value_the_database_cannot_encode_is_422(latin1_url: str) -> None:
    app = create_app(Settings(database_url=latin1_url))
    async with running_client(app) as client:
        ok = await client.post("/heroes/", json={"name": "Zoë", "secret_name": "s"})
        assert ok.status_code == 200
        refused = await client.post("/heroes/", json={"name": "デッドプール", "secret_name": "s"})
        assert refused.status_code == 422
        assert refused.json() == {
            "detail": "A value in the request cannot be stored by the database"
        }
        patch = await client.patch(f"/heroes/{ok.json()['id']}", json={"secret_name": "秘密"})
        assert patch.status_code == 422
        heroes: list[dict[str, Any]] = (await client.get("/heroes/")).json()
        assert heroes == [ok.json()]


async def test_postgres_engine_uses_pool_settings(postgres_url: str) -> None:
    app = create_app(Settings(database_url=postgres_url, db_pool_size=2, db_max_overflow=1))
    pool: Any = app.state.engine.pool
    assert (pool.size(), pool._max_overflow) == (2, 1)
    assert app.state.write_engine is app.state.engine
    async with running_client(app) as client:
        assert (await client.get("/health")).status_code == 200
