"""One error family for the service and the handlers that turn errors into ``{"detail": ...}``."""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc

logger = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    detail: str


class AppError(Exception):
    """A failure with an HTTP status and a message meant for the client."""

    status_code = 500
    detail = "Internal server error"


class HeroNotFound(AppError):
    status_code = 404
    detail = "Hero not found"


class DatabaseUnavailable(AppError):
    status_code = 503
    detail = "Database unavailable, try again shortly"


# Failures of the database connection rather than of the request: the client may retry.
DATABASE_DOWN_ERRORS: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    OSError,
    TimeoutError,
)
# SQLSTATE classes of a server that is going away or cannot take us: connection exception (08),
# insufficient resources (53: too many connections), operator intervention (57: shutdown).
_DATABASE_DOWN_SQLSTATE_CLASSES = ("08", "53", "57")


def is_database_down(exc: BaseException) -> bool:
    """Whether ``exc`` means "the database cannot be reached now" rather than a bad request.

    asyncpg reports a dropped connection as a plain ``DBAPIError``, not ``OperationalError``;
    SQLAlchemy marks those ``connection_invalidated``. Failed connects carry a SQLSTATE.
    """
    if isinstance(exc, sa_exc.DBAPIError):
        sqlstate = getattr(exc.orig, "sqlstate", None) or ""
        return (
            exc.connection_invalidated
            or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
            or sqlstate.startswith(_DATABASE_DOWN_SQLSTATE_CLASSES)
        )
    return isinstance(exc, DATABASE_DOWN_ERRORS)


def _public_errors(errors: Any) -> list[dict[str, Any]]:
    """Validation errors without ``input`` or ``ctx``: they may echo a client's secret back."""
    return [{"type": e["type"], "loc": list(e["loc"]), "msg": e["msg"]} for e in errors]


async def _app_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": _public_errors(exc.errors())}, status_code=422)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """503 when the database is down; any other database error is a bug: a bare 500."""
    if is_database_down(exc):
        # The class only: a driver message may quote a value from the request.
        logger.warning("database unavailable: %s", type(exc).__name__)
        return await _app_error(request, DatabaseUnavailable())
    return await _internal_error(request, exc)


async def _internal_error(_request: Request, exc: Exception) -> JSONResponse:
    """A JSON 500 instead of Starlette's plain text; the server still logs the traceback."""
    return JSONResponse({"detail": AppError.detail}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    database_errors: tuple[type[Exception], ...] = (sa_exc.DBAPIError, *DATABASE_DOWN_ERRORS)
    for error in database_errors:
        app.add_exception_handler(error, _database_error)
    app.add_exception_handler(Exception, _internal_error)
