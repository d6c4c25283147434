"""Which failures are "database down" (503), and that everything else is a JSON 500, not a leak."""

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi

from heroes_api.config import Settings
from heroes_api.errors import is_database_down
from heroes_api.main import create_app

dbapi = AsyncAdapt_asyncpg_dbapi(asyncpg)  # type: ignore[no-untyped-call]


def dbapi_error(
    orig: Exception, *, invalidated: bool = False, cls: type[sa_exc.DBAPIError] = sa_exc.DBAPIError
) -> sa_exc.DBAPIError:
    return cls("SELECT 1", {"secret": "x"}, orig, connection_invalidated=invalidated)


def pg_error(error: type[asyncpg.PostgresError]) -> Exception:
    """What SQLAlchemy's asyncpg adapter raises for an asyncpg error."""
    error_class: type[Exception] = dbapi.Error
    return error_class("boom", error("boom"))


@pytest.mark.parametrize(
    ("exc", "down"),
    [
        (dbapi_error(pg_error(asyncpg.ConnectionDoesNotExistError), invalidated=True), True),
        (dbapi_error(pg_error(asyncpg.CannotConnectNowError)), True),  # 57P03, server starting
        (dbapi_error(pg_error(asyncpg.AdminShutdownError)), True),  # 57P01
        (dbapi_error(pg_error(asyncpg.TooManyConnectionsError)), True),  # 53300
        (dbapi_error(ValueError(), cls=sa_exc.OperationalError), True),  # database is locked
        (dbapi_error(ValueError(), cls=sa_exc.InterfaceError), True),
        (sa_exc.TimeoutError("QueuePool limit reached"), True),
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (dbapi_error(pg_error(asyncpg.NumericValueOutOfRangeError)), False),  # 22003: a bug
        (dbapi_error(ValueError(), cls=sa_exc.IntegrityError), False),
        (ValueError(), False),
    ],
)
def test_database_down_classification(exc: Exception, down: bool) -> None:
    assert is_database_down(exc) is down


@pytest.fixture
def failing_app() -> FastAPI:
    app = create_app(Settings(database_url="sqlite://"))

    @app.get("/fail/{kind}")
    async def fail(kind: str) -> None:
        if kind == "dropped":
            raise dbapi_error(pg_error(asyncpg.ConnectionDoesNotExistError), invalidated=True)
        if kind == "sql":
            raise dbapi_error(pg_error(asyncpg.NumericValueOutOfRangeError))
        raise RuntimeError("a bug")

    return app


@pytest.mark.parametrize(
    ("kind", "status", "detail"),
    [
        ("dropped", 503, "Database unavailable, try again shortly"),
        ("sql", 500, "Internal server error"),
        ("bug", 500, "Internal server error"),
    ],
)
async def test_errors_become_json_with_detail(
    failing_app: FastAPI, kind: str, status: int, detail: str
) -> None:
    transport = httpx.ASGITransport(app=failing_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get(f"/fail/{kind}")
    assert response.status_code == status
    assert response.json() == {"detail": detail}
