"""Database failures, translated where sessions are used, become a 422/503 the client can act
on; everything else (a bare OSError or TimeoutError elsewhere included) is a JSON 500."""

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import exc as sa_exc

from heroes_api.db import translated
from heroes_api.errors import DatabaseUnavailable, ValueNotStorable, WriteConflict
from heroes_api.heroes.service import is_replayable
from tests.helpers import dbapi_error, pg_error


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (pg_error(asyncpg.UntranslatableCharacterError), ValueNotStorable),  # 22P05
        (pg_error(asyncpg.NumericValueOutOfRangeError), ValueNotStorable),  # 22003
        (dbapi_error(ValueError(), cls=sa_exc.DataError), ValueNotStorable),
        (dbapi_error(ValueError(), invalidated=True), DatabaseUnavailable),  # dropped connection
        (pg_error(asyncpg.ConnectionFailureError), DatabaseUnavailable),  # 08006
        (pg_error(asyncpg.CannotConnectNowError), DatabaseUnavailable),  # 57P03, starting up
        (pg_error(asyncpg.AdminShutdownError), DatabaseUnavailable),  # 57P01
        (pg_error(asyncpg.TooManyConnectionsError), DatabaseUnavailable),  # 53300
        (pg_error(asyncpg.ReadOnlySQLTransactionError), DatabaseUnavailable),  # 25006, a standby
        (asyncpg.TargetServerAttributeNotMatched("no primary"), DatabaseUnavailable),
        (pg_error(asyncpg.SerializationError), WriteConflict),  # 40001
        (pg_error(asyncpg.DeadlockDetectedError), WriteConflict),  # 40P01
        (dbapi_error(ValueError(), cls=sa_exc.OperationalError), DatabaseUnavailable),  # locked
        (dbapi_error(ValueError(), cls=sa_exc.InterfaceError), DatabaseUnavailable),
        (sa_exc.TimeoutError("QueuePool limit reached"), DatabaseUnavailable),
        (ConnectionRefusedError(), DatabaseUnavailable),
        (TimeoutError(), DatabaseUnavailable),
        (pg_error(asyncpg.PostgresSyntaxError), None),  # 42601: a bug
        (dbapi_error(ValueError(), cls=sa_exc.IntegrityError), None),
        (ValueError(), None),
    ],
)
def test_database_errors_are_classified(exc: Exception, expected: type[Exception] | None) -> None:
    result = translated(exc)
    assert (type(result) if result else None) is expected


@pytest.mark.parametrize(
    ("kind", "status", "detail"),
    [
        ("data", 422, "A value in the request cannot be stored by the database"),
        ("dropped", 503, "Database unavailable, try again shortly"),
        ("pool", 503, "Database unavailable, try again shortly"),
        ("sql", 500, "Internal server error"),
        ("bug", 500, "Internal server error"),
    ],
)
async def test_errors_become_json_with_detail(
    failing_app: FastAPI, kind: str, status: int, detail: str
) -> None:
    transport = httpx.ASGITransport(app=failing_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get(f"/fail/{kind}")
    assert response.status_code == status
    assert response.json() == {"detail": detail}


async def test_an_os_error_outside_the_database_boundary_is_a_500(failing_app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=failing_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/os-error")
    assert (response.status_code, response.json()) == (500, {"detail": "Internal server error"})


@pytest.mark.parametrize(
    ("exc", "replay"),
    [
        (pg_error(asyncpg.UntranslatableCharacterError), True),  # one write's value: replay
        (pg_error(asyncpg.DeadlockDetectedError), True),  # 40P01: rolled back, replay alone
        (pg_error(asyncpg.SerializationError), True),  # 40001
        (dbapi_error(ValueError(), cls=sa_exc.IntegrityError), True),
        (pg_error(asyncpg.ConnectionFailureError), False),  # down: every replay would fail too
        (dbapi_error(ValueError(), invalidated=True), False),
        (sa_exc.TimeoutError("QueuePool limit reached"), False),
        (ConnectionRefusedError(), False),
    ],
)
def test_a_failed_write_batch_is_replayed_unless_the_database_is_down(
    exc: Exception, replay: bool
) -> None:
    assert is_replayable(translated(exc) or exc) is replay
