"""Database failures become a 4xx/503 the client can act on; bugs become a JSON 500."""

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import exc as sa_exc

from heroes_api.config import Settings
from heroes_api.errors import DatabaseUnavailable, ValueNotStorable, database_error
from heroes_api.main import create_app


class DriverError(Exception):
    def __init__(self, sqlstate: str | None) -> None:
        super().__init__(f"driver error {sqlstate}")
        self.sqlstate = sqlstate


def dbapi_error(
    cls: type[sa_exc.DBAPIError] = sa_exc.DBAPIError,
    sqlstate: str | None = None,
    *,
    invalidated: bool = False,
) -> sa_exc.DBAPIError:
    return cls("SELECT 1", None, DriverError(sqlstate), connection_invalidated=invalidated)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (dbapi_error(sa_exc.DataError), ValueNotStorable),
        (dbapi_error(sqlstate="22021"), ValueNotStorable),  # untranslatable character
        (dbapi_error(sqlstate="22003"), ValueNotStorable),  # numeric value out of range
        (dbapi_error(sa_exc.OperationalError), DatabaseUnavailable),
        (dbapi_error(sa_exc.InterfaceError), DatabaseUnavailable),
        (dbapi_error(invalidated=True), DatabaseUnavailable),
        (dbapi_error(sqlstate="08006"), DatabaseUnavailable),  # connection failure
        (dbapi_error(sqlstate="40001"), DatabaseUnavailable),  # serialization failure
        (dbapi_error(sqlstate="53300"), DatabaseUnavailable),  # too many connections
        (dbapi_error(sqlstate="57P01"), DatabaseUnavailable),  # admin shutdown
        (dbapi_error(sqlstate="42601"), None),  # syntax error: a bug
        (dbapi_error(sa_exc.IntegrityError, "23505"), None),
        (dbapi_error(), None),
    ],
)
def test_database_errors_are_classified(
    error: sa_exc.DBAPIError, expected: type[Exception] | None
) -> None:
    result = database_error(error)
    assert (type(result) if result else None) is expected


@pytest.fixture
def failing_app() -> FastAPI:
    app = create_app(Settings(database_url="sqlite://"))
    errors: dict[str, Exception] = {
        "data": dbapi_error(sqlstate="22021"),
        "down": dbapi_error(sa_exc.OperationalError),
        "pool": sa_exc.TimeoutError("QueuePool limit reached"),
        "bug": dbapi_error(sqlstate="42601"),
        "crash": RuntimeError("boom"),
    }

    @app.get("/fail/{kind}")
    async def fail(kind: str) -> None:
        raise errors[kind]

    return app


@pytest.mark.parametrize(
    ("kind", "status", "detail"),
    [
        ("data", 422, "A value in the request cannot be stored by the database"),
        ("down", 503, "Database unavailable, try again shortly"),
        ("pool", 503, "Database unavailable, try again shortly"),
        ("bug", 500, "Internal server error"),
        ("crash", 500, "Internal server error"),
    ],
)
async def test_errors_have_status_and_detail(
    failing_app: FastAPI, kind: str, status: int, detail: str
) -> None:
    transport = httpx.ASGITransport(app=failing_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get(f"/fail/{kind}")
    assert response.status_code == status
    assert response.json() == {"detail": detail}
