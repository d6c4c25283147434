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


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for error in DATABASE_DOWN_ERRORS:
        app.add_exception_handler(error, _database_down)
