"""Fixtures: every test runs on each backend, against its own freshly migrated database."""

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from heroes_api.app import create_app
from heroes_api.config import Settings
from heroes_api.state import app_state
from tests.databases import (
    NO_POSTGRES,
    Databases,
    PostgresDatabases,
    SqliteDatabases,
    postgres_server_url,
)
from tests.helpers import MakeApp, MakeClient, failing_app, running_client

# Throwaway PostgreSQL clusters and PgBouncer (tests/pg_cluster.py): pg_primary, pg_pair.
pytest_plugins = ["tests.pg_fixtures"]
# A developer's settings must not reach the tests: neither HEROES_ variables (but the suite's own
# HEROES_TEST_ ones) nor a .env, here or in the servers the tests start (they inherit this
# environment). Nothing imported above reads settings; tests build their Settings explicitly.
for _name in [name for name in os.environ if name.startswith("HEROES_")]:
    if not _name.startswith("HEROES_TEST_"):
        del os.environ[_name]
os.environ["HEROES_ENV_FILE"] = ""


@pytest.fixture(scope="session")
def sqlite_databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqliteDatabases]:
    backend = SqliteDatabases(tmp_path_factory.mktemp("sqlite"))
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    server_url, reason = postgres_server_url()
    if server_url is None:
        pytest.skip(reason)
    backend = PostgresDatabases(server_url)
    yield backend
    backend.close()


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def databases(request: pytest.FixtureRequest) -> Databases:
    """The backend this test runs on; every database test runs once per backend."""
    backend: Databases = request.getfixturevalue(f"{request.param}_databases")
    return backend


@pytest.fixture
def database_url(databases: Databases) -> Iterator[str]:
    """A database of this test's own, at Alembic head, dropped after the test."""
    url = databases.create()
    yield url
    databases.drop(url)


@pytest.fixture
def empty_database_url(databases: Databases) -> Iterator[str]:
    """A database of this test's own that Alembic has never touched, dropped after the test."""
    url = databases.create(migrated=False)
    yield url
    databases.drop(url)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url)


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app, with its lifespan (schema check, engine disposal) running."""
    async with running_client(app) as client:
        yield client


@pytest.fixture
async def make_app(database_url: str) -> AsyncIterator[MakeApp]:
    """Apps on this test's database with settings of the test's choosing, without lifespan (for
    tests of what happens before or without it); their engines are disposed at teardown."""
    apps: list[FastAPI] = []

    def make(**overrides: Any) -> FastAPI:
        apps.append(create_app(Settings(**{"database_url": database_url, **overrides})))
        return apps[-1]

    yield make
    for app in apps:
        await app_state(app).engine.dispose()
        await app_state(app).write_engine.dispose()


@pytest.fixture
async def make_client(make_app: MakeApp) -> AsyncIterator[MakeClient]:
    """Clients on apps of the test's settings (``await make_client(batching=False)``), each with
    its lifespan running until teardown, which closes them in reverse order."""
    async with AsyncExitStack() as stack:

        async def make(**overrides: Any) -> httpx.AsyncClient:
            return await stack.enter_async_context(running_client(make_app(**overrides)))

        yield make


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Why the PostgreSQL half did not run, once, from the skipped tests' reports (which reach
    this process from ``make test``'s worker processes too)."""
    reasons = {
        str(report.longrepr[2]).removeprefix("Skipped: ")
        for report in terminalreporter.stats.get("skipped", [])
        if isinstance(report.longrepr, tuple) and NO_POSTGRES in str(report.longrepr[2])
    }
    for reason in sorted(reasons):
        terminalreporter.write_line(f"PostgreSQL tests skipped: {reason}", yellow=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With HEROES_TEST_REQUIRE_ALL set (CI does), a skipped test fails the run."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not os.environ.get("HEROES_TEST_REQUIRE_ALL"):
        return
    skipped = len(reporter.stats.get("skipped", []))
    if skipped and exitstatus == 0:
        reporter.write_sep(
            "=", f"{skipped} skipped; HEROES_TEST_REQUIRE_ALL forbids skips", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(name="failing_app")
def failing_app_fixture() -> FastAPI:
    """An app with routes that fail as the database can (``/fail/{kind}``), or with a bug."""
    return failing_app()
