"""One error family for the service and the handlers that turn errors into ``{"detail": ...}``."""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc


class ErrorDetail(BaseModel):
    detail: str


class AppError(Exception):
    """A failure with an HTTP status and a message meant for the client."""

    status_code = 500
    detail = "Internal server error"


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


# Failures of the database connection rather than of the request: the client may retry.
DATABASE_DOWN_ERRORS: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    OSError,
    TimeoutError,
)
# SQLSTATE classes: 22 data exception; 08 connection, 40 transaction rollback, 53 insufficient
# resources, 57 operator intervention (e.g. the server shutting down).
_DATA_SQLSTATE = "22"
_RETRYABLE_SQLSTATES = ("08", "40", "53", "57")


def database_error(exc: sa_exc.DBAPIError) -> AppError | None:
    """The client-facing error for a database failure, or None when it is a bug (a 500)."""
    sqlstate: str = getattr(exc.orig, "sqlstate", None) or ""
    if isinstance(exc, sa_exc.DataError) or sqlstate.startswith(_DATA_SQLSTATE):
        return ValueNotStorable()
    if (
        exc.connection_invalidated
        or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
        or sqlstate.startswith(_RETRYABLE_SQLSTATES)
    ):
        return DatabaseUnavailable()
    return None


def _public_errors(errors: Any) -> list[dict[str, Any]]:
    """Validation errors without ``input`` or ``ctx``: they may echo a client's secret back."""
    return [{"type": e["type"], "loc": list(e["loc"]), "msg": e["msg"]} for e in errors]


async def _app_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": _public_errors(exc.errors())}, status_code=422)


async def _database_down(request: Request, _exc: Exception) -> JSONResponse:
    return await _app_error(request, DatabaseUnavailable())


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, sa_exc.DBAPIError)
    if (error := database_error(exc)) is None:
        raise exc
    return await _app_error(request, error)


async def _internal_error(request: Request, _exc: Exception) -> JSONResponse:
    """A bug: answer in the API's shape; Starlette still logs the traceback and re-raises."""
    return await _app_error(request, AppError())


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Exception, _internal_error)
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(sa_exc.DBAPIError, _database_error)
    for error in (sa_exc.TimeoutError, OSError, TimeoutError):
        app.add_exception_handler(error, _database_down)
