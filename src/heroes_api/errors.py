"""One error family for the service and the handlers that turn errors into ``{"detail": ...}``."""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc

from heroes_api.logs import request_id

logger = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    detail: str


class AppError(Exception):
    """A failure with an HTTP status and a message meant for the client."""

    status_code = 500
    detail = "Internal server error"
    headers: dict[str, str] | None = None


class HeroNotFound(AppError):
    status_code = 404
    detail = "Hero not found"


class ValueNotStorable(AppError):
    """The database refused a value that passed validation (say, a character its encoding lacks)."""

    status_code = 422
    detail = "A value in the request cannot be stored by the database"


class DatabaseUnavailable(AppError):
    status_code = 503
    detail = "Database unavailable, try again shortly"


# Failures outside the driver that mean "the database cannot be reached now": a pool timeout,
# a refused or reset socket, a connect or command timeout.
DATABASE_DOWN_ERRORS: tuple[type[Exception], ...] = (sa_exc.TimeoutError, OSError, TimeoutError)
# SQLSTATE classes: 22 data exception; 08 connection exception, 40 transaction rollback,
# 53 insufficient resources (too many connections), 57 operator intervention (shutdown).
_DATA_SQLSTATE = "22"
TRANSACTION_ROLLBACK = "40"  # deadlock, serialization failure: the transaction was undone
_RETRYABLE_SQLSTATES = ("08", TRANSACTION_ROLLBACK, "53", "57")


def sqlstate(exc: BaseException) -> str:
    """The SQLSTATE of a database error, or "" (SQLite's errors carry none)."""
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else None
    return getattr(orig, "sqlstate", None) or ""


def database_error(exc: BaseException) -> AppError | None:
    """The client-facing error for a failure talking to the database, or None for a bug (500).

    asyncpg reports a dropped connection or a data error as a plain ``DBAPIError``, not as
    ``OperationalError`` / ``DataError``: SQLAlchemy marks the first ``connection_invalidated``,
    and both carry a SQLSTATE.
    """
    if not isinstance(exc, sa_exc.DBAPIError):
        return DatabaseUnavailable() if isinstance(exc, DATABASE_DOWN_ERRORS) else None
    state = sqlstate(exc)
    if isinstance(exc, sa_exc.DataError) or state.startswith(_DATA_SQLSTATE):
        return ValueNotStorable()
    if (
        exc.connection_invalidated
        or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
        or state.startswith(_RETRYABLE_SQLSTATES)
    ):
        return DatabaseUnavailable()
    return None


def is_database_down(exc: BaseException) -> bool:
    return isinstance(database_error(exc), DatabaseUnavailable)


def _public_errors(errors: Any) -> list[dict[str, Any]]:
    """Validation errors without ``input`` or ``ctx``: they may echo a client's secret back."""
    return [{"type": e["type"], "loc": list(e["loc"]), "msg": e["msg"]} for e in errors]


async def _app_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": _public_errors(exc.errors())}, status_code=422)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    if (error := database_error(exc)) is None:
        raise exc  # a bug: the 500 handler answers, and the server logs the traceback
    # The class only: a driver message may quote a value from the request.
    logger.warning("database error answered %d: %s", error.status_code, type(exc).__name__)
    count_db_error(request, exc, error.status_code)
    return await _app_error(request, error)


def count_db_error(request: Request, exc: BaseException, status: int) -> None:
    if (metrics := request.app.state.metrics) is not None:
        metrics.count_db_error(exc, status)


async def _internal_error(request: Request, _exc: Exception) -> JSONResponse:
    """A JSON 500 instead of Starlette's plain text; Starlette still logs the traceback.

    This handler runs outside every middleware (Starlette's ServerErrorMiddleware), so it adds
    the request id itself; the request-id middleware left it in the task's context."""
    error = AppError()
    return JSONResponse(
        {"detail": error.detail},
        status_code=error.status_code,
        headers={"x-request-id": request_id.get()},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    database_errors: tuple[type[Exception], ...] = (sa_exc.DBAPIError, *DATABASE_DOWN_ERRORS)
    for error in database_errors:
        app.add_exception_handler(error, _database_error)
    app.add_exception_handler(Exception, _internal_error)
