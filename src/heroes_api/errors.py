"""The app's error family (``AppError`` -> ``{"detail": ...}``) and its app-wide handlers.

Handlers here cover the app's own errors, validation and the last-resort 500. Driver exceptions
never reach them: ``heroes_api.db.translate_errors`` turns those into ``DatabaseError`` where
sessions are used, so no built-in exception type (``OSError``, ``TimeoutError``) is classified
app-wide.
"""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from heroes_api.logs import request_id
from heroes_api.metrics import Metrics

logger = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    detail: str


class AppError(Exception):
    """A failure with an HTTP status and a message meant for the client."""

    status_code = 500
    detail = "Internal server error"
    headers: dict[str, str] | None = None
    # Seconds a client should wait before trying again (the Retry-After header), if it should.
    retry_after: int | None = None


class DatabaseError(AppError):
    """A database failure, translated from the driver's exception (its ``__cause__``)."""


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached now: a refused or dropped connection, a pool or command
    timeout, a server shutting down or out of connections."""

    status_code = 503
    detail = "Database unavailable, try again shortly"
    retry_after = 1


class WriteConflict(DatabaseError):
    """The database undid the transaction to resolve a conflict with another one (a deadlock, a
    serialization failure); the same request may well succeed now."""

    status_code = 503
    detail = DatabaseUnavailable.detail
    retry_after = 1


class DatabaseRefusesWrites(DatabaseError):
    """The database will not store anything until someone fixes it: a read-only file, a full
    disk. Not a 503: retrying will not help."""

    status_code = 500
    detail = (
        "The database cannot store changes (it is read-only or full): retrying will not help "
        "until an operator fixes it"
    )


class ValueNotStorable(DatabaseError):
    """The database refused a value that passed validation (say, a character its encoding lacks)."""

    status_code = 422
    detail = "A value in the request cannot be stored by the database"


def _public_errors(errors: Any) -> list[dict[str, Any]]:
    """Validation errors without ``input`` or ``ctx``: they may echo a client's secret back."""
    return [{"type": e["type"], "loc": list(e["loc"]), "msg": e["msg"]} for e in errors]


def _answer(error: AppError) -> JSONResponse:
    headers = error.headers
    if error.retry_after is not None:
        headers = {**(headers or {}), "Retry-After": str(error.retry_after)}
    return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": _public_errors(exc.errors())}, status_code=422)


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


def install_error_handlers(app: FastAPI, metrics: Metrics | None) -> None:
    async def app_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AppError)
        if isinstance(exc, DatabaseError):
            # The driver's class only: its message may quote a value from the request. A
            # database that refuses every write says why, in words of its own, with no values.
            cause = type(exc.__cause__ or exc).__name__
            own = getattr(exc.__cause__, "orig", exc.__cause__)  # the driver's, not SQLAlchemy's
            reason = f" ({own})" if isinstance(exc, DatabaseRefusesWrites) else ""
            logger.warning("database error answered %d: %s%s", exc.status_code, cause, reason)
            if metrics is not None:
                metrics.count_db_error(cause, exc.status_code)
        return _answer(exc)

    app.add_exception_handler(AppError, app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _internal_error)
