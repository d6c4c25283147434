"""The app around the routes: settings, startup schema check, health, engine setup, OpenAPI."""

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import text

from heroes_api.app import SchemaNotMigrated, create_app
from heroes_api.config import Settings, get_settings, to_async_url
from heroes_api.db import SCHEMA_REVISION
from heroes_api.state import app_state
from tests.databases import ROOT, SqliteDatabases, alembic_config, migrate
from tests.helpers import aiosqlite_threads_joined, asgi_client, running_client


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///./database.db", "sqlite+aiosqlite:///./database.db"),
        ("sqlite:////abs/heroes.db", "sqlite+aiosqlite:////abs/heroes.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgres://u:p@h:5432/d", "postgresql+asyncpg://u:p@h:5432/d"),
        ("postgresql://u@h/d?sslmode=require", "postgresql+asyncpg://u@h/d?ssl=require"),
        ("postgresql+psycopg2://u:p%40ss@h/d", "postgresql+asyncpg://u:p%40ss@h/d"),
        ("postgresql+asyncpg://u@h/d", "postgresql+asyncpg://u@h/d"),
    ],
)
def test_database_urls_map_to_async_drivers(url: str, expected: str) -> None:
    assert to_async_url(url) == expected
    assert Settings(database_url=url).database_url == expected


def test_settings_come_from_heroes_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEROES_DATABASE_URL", "sqlite:///./from-env.db")
    monkeypatch.setenv("HEROES_DB_POOL_SIZE", "3")
    settings = Settings()
    assert settings.database_url == "sqlite+aiosqlite:///./from-env.db"
    assert settings.db_pool_size == 3
    assert settings.is_sqlite


def test_default_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEROES_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        assert get_settings().database_url == "sqlite+aiosqlite:///./heroes.db"
    finally:
        get_settings.cache_clear()


def test_bad_database_url_is_refused() -> None:
    with pytest.raises(ValueError, match="not a database URL"):
        Settings(database_url="heroes.db")


def test_the_served_app_is_built_from_settings_and_frozen(tmp_path: Path) -> None:
    """``heroes_api.main`` builds the app from the environment and freezes the collector: in a
    process of its own, since the test process never imports it (next test)."""
    program = (
        "import gc; from heroes_api.main import app; from heroes_api.state import app_state; "
        "print(app_state(app).settings.database_url, gc.get_freeze_count() > 0)"
    )
    migrate(f"sqlite+aiosqlite:///{tmp_path}/served.db")
    env = {**os.environ, "HEROES_DATABASE_URL": "sqlite:///./served.db", "HEROES_ENV_FILE": ""}
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.stdout.split() == ["sqlite+aiosqlite:///./served.db", "True"], result.stderr


def test_the_test_process_never_builds_the_served_app() -> None:
    assert "heroes_api.main" not in sys.modules


def test_tests_never_see_a_developers_env_or_environment(tmp_path: Path) -> None:
    """A run of the suite's settings tests from a folder holding a hostile ``.env``, with hostile
    HEROES_ variables set: conftest keeps both away, so the defaults hold and nothing crashes."""
    (tmp_path / ".env").write_text("HEROES_BATCH_MAX_SIZE=abc\nHEROES_DATABASE_URL=mysql://x/y\n")
    hostile = {
        "HEROES_DATABASE_URL": "postgresql://nobody@192.0.2.1/none",
        "HEROES_ENV_FILE": ".env",
    }
    tests = [f"{ROOT / 'tests' / 'test_app.py'}::{name}" for name in ("test_default_settings",)]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *tests, "-p", "no:cacheprovider", "--no-cov", "-q"],
        cwd=tmp_path,
        env={**os.environ, **hostile},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


@pytest.mark.slow
def test_without_postgresql_its_half_is_skipped_and_the_run_says_why(tmp_path: Path) -> None:
    """Where no PostgreSQL answers (a fresh laptop), its half of a test is skipped and the end of
    the run says why, once, with the tests in worker processes as ``make test`` runs them; with
    HEROES_TEST_REQUIRE_ALL (CI), the skip fails the run."""
    (tmp_path / "no_postgres.py").write_text(
        "import tests.databases\n"
        "tests.databases.DEFAULT_POSTGRES_URL = 'postgresql+asyncpg://postgres@127.0.0.1:1/x'\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEROES_TEST_", "PYTEST_"))}
    env.update(PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}", HEROES_TEST_REQUIRE_ALL="1")
    test = f"{ROOT / 'tests' / 'test_heroes.py'}::test_create_without_age"
    plugins = ["-p", "no_postgres", "-p", "no:cacheprovider"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", test, *plugins, "-n", "2", "--no-cov"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    output = result.stdout + result.stderr
    assert output.count("PostgreSQL tests skipped: no PostgreSQL at") == 1, output
    assert "1 passed, 1 skipped" in output, output
    assert "1 skipped; HEROES_TEST_REQUIRE_ALL forbids skips" in output, output
    assert result.returncode == 1, output


@pytest.fixture
def sqlite_url(sqlite_databases: SqliteDatabases) -> str:
    return sqlite_databases.create()


async def test_sqlite_connections_get_pragmas(sqlite_url: str) -> None:
    app = create_app(Settings(database_url=sqlite_url))
    async with app_state(app).engine.connect() as connection:
        pragmas = {
            name: (await connection.execute(text(f"PRAGMA {name}"))).scalar()
            for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous", "mmap_size")
        }
    assert pragmas == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "busy_timeout": 30000,
        "synchronous": 1,
        "mmap_size": 0,
    }
    await app_state(app).engine.dispose()


async def test_sqlite_memory_map_is_a_setting(sqlite_url: str) -> None:
    app = create_app(Settings(database_url=sqlite_url, sqlite_mmap_mb=64))
    async with app_state(app).engine.connect() as connection:
        assert (await connection.execute(text("PRAGMA mmap_size"))).scalar() == 64 * 2**20
    await app_state(app).engine.dispose()


async def test_sqlite_reads_on_a_pool_writes_on_one_connection(sqlite_url: str) -> None:
    app = create_app(Settings(database_url=sqlite_url, sqlite_pool_size=3))
    readers: Any = app_state(app).engine.pool
    writer: Any = app_state(app).write_engine.pool
    assert (readers.size(), readers._max_overflow) == (3, 0)
    assert (writer.size(), writer._max_overflow) == (1, 0)
    async with running_client(app) as client:
        hero = (await client.post("/heroes/", json={"name": "a", "secret_name": "b"})).json()
        assert writer.checkedin() == 1  # the write used, and gave back, the writer connection
        assert (await client.get(f"/heroes/{hero['id']}")).json() == hero


async def test_health_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_unmigrated_database_refuses_to_start(empty_database_url: str) -> None:
    app = create_app(Settings(database_url=empty_database_url))
    with pytest.raises(SchemaNotMigrated, match=r"run `alembic upgrade head`"):
        async with LifespanManager(app):
            pass  # pragma: no cover


async def test_unmigrated_database_fails_health(empty_database_url: str) -> None:
    app = create_app(Settings(database_url=empty_database_url))
    async with asgi_client(app) as client:
        response = await client.get("/health")
    await app_state(app).engine.dispose()
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert "has no Alembic revision" in response.json()["detail"]
    assert "alembic upgrade head" in response.json()["detail"]


async def test_database_behind_head_fails_health(database_url: str, app: FastAPI) -> None:
    async with running_client(app) as client:
        await app_state(app).engine.dispose()  # let the downgrade take the tables without waiting
        await asyncio.to_thread(command.downgrade, alembic_config(database_url), "base")
        response = await client.get("/health")
    assert response.status_code == 503
    assert "has no Alembic revision" in response.json()["detail"]


async def test_unreachable_database_is_503(tmp_path: Any) -> None:
    missing = tmp_path / "no-such-dir" / "heroes.db"
    app = create_app(Settings(database_url=f"sqlite:///{missing}"))
    async with aiosqlite_threads_joined(), asgi_client(app) as client:
        health = await client.get("/health")
        read = await client.get("/heroes/1")
        await app_state(app).engine.dispose()
    assert health.status_code == 503
    assert health.json() == {"status": "unavailable", "detail": "database unreachable"}
    assert read.status_code == 503
    assert read.json() == {"detail": "Database unavailable, try again shortly"}


def test_openapi_documents_the_contract() -> None:
    schema = create_app(Settings(database_url="sqlite://")).openapi()
    assert schema["info"]["title"] == "Heroes API"
    paths = schema["paths"]
    for method in ("get", "patch", "delete"):
        operation = paths["/heroes/{hero_id}"][method]
        assert {"200", "404", "422", "503"} <= set(operation["responses"]), method
        assert operation["summary"]
        assert operation["tags"] == ["heroes"]
    assert "422" in paths["/heroes/"]["post"]["responses"]
    assert "503" in paths["/health"]["get"]["responses"]
    hero_public = schema["components"]["schemas"]["HeroPublic"]
    assert "secret_name" not in hero_public["properties"]
    update = schema["components"]["schemas"]["HeroUpdate"]["properties"]
    assert update["name"] == {
        "type": "string",
        "maxLength": 255,
        "pattern": "^[^\\x00]*$",
        "title": "Name",
    }
    assert SCHEMA_REVISION == "0004"
