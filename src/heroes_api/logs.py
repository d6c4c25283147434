"""Log lines as text or JSON, each carrying the id of the request that wrote it.

``configure`` wires these into Python's logging; the served app (``heroes_api.main``) and Alembic
(``alembic/env.py``) call it, so the app, the server and the migrations log alike, however the
app is served. ``HEROES_LOG_FORMAT`` picks the format.

Nothing here logs request bodies, headers or SQL parameters: the access line holds the method,
the route template (``/heroes/{hero_id}``, never the raw path or query), the status, the duration,
the client address and the request id.
"""

import json
import logging
import logging.config
import time
from contextvars import ContextVar
from typing import Any

# The id of the request the current task serves ("-" outside any request). The middleware sets
# it and never resets it: uvicorn runs every request in a task of its own, and the 500 handler
# and uvicorn's error log run in that task after the middleware has returned.
request_id: ContextVar[str] = ContextVar("request_id", default="-")

access_logger = logging.getLogger("heroes_api.access")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s [%(request_id)s] %(message)s"
# Attributes the access line passes as ``extra``: JSON lines carry them as fields of their own.
ACCESS_FIELDS = ("method", "route", "status", "duration_ms", "client")


class RequestIdFilter(logging.Filter):
    """Stamps every record with the current request's id (a handler filter: it sees them all)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, pid, logger, message, request_id, the access
    fields, and the traceback (``exc_info``) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "pid": record.process,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        for field in ACCESS_FIELDS:
            if (value := record.__dict__.get(field)) is not None:
                line[field] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):  # a handler without RequestIdFilter
            record.request_id = request_id.get()
        return super().format(record)


def logging_config(log_format: str) -> dict[str, Any]:
    """The service's logging, for ``logging.config.dictConfig``: every line (the app's, uvicorn's,
    Alembic's) through one handler, in ``log_format`` (``text`` or ``json``), stamped with the
    request id. uvicorn's own access log is silenced: the app writes a better one (the route
    template, the request id), and a request is never logged twice."""
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    quiet = {"level": "WARNING"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"heroes": {"()": formatter}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "heroes",
                "filters": ["request_id"],
            }
        },
        "loggers": {
            # uvicorn's default configuration gives these handlers of their own and stops them
            # propagating: here they go to the one handler.
            "uvicorn": {"level": "INFO", "handlers": [], "propagate": True},
            "uvicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
            "uvicorn.access": {**quiet, "handlers": [], "propagate": True},
            "sqlalchemy": quiet,
            # The service keeps Alembic quiet (its schema check would log on every /health);
            # alembic/env.py lets a migration say what it runs.
            "alembic": quiet,
        },
        "root": {"level": "INFO", "handlers": ["console"]},
    }


def configure(log_format: str) -> None:
    logging.config.dictConfig(logging_config(log_format))
