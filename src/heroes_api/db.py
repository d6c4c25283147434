"""Engines, sessions, the schema-revision check, and the translation of driver errors.

Driver errors are translated once, where sessions are used (the hero service and the health
check wrap their database work in ``translate_errors``), into the app's ``DatabaseError``s: the
pattern of advanced-alchemy's ``wrap_sqlalchemy_exception``.
"""

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.util import await_only
from sqlmodel.ext.asyncio.session import AsyncSession

from heroes_api.compatibility import SCHEMA_REVISION, compatibility_problem, read_chain
from heroes_api.config import Settings
from heroes_api.errors import (
    DatabaseError,
    DatabaseRefusesWrites,
    DatabaseUnavailable,
    ValueNotStorable,
    WriteConflict,
)

__all__ = ["SCHEMA_REVISION", "SessionMaker", "schema_problem"]


SessionMaker = async_sessionmaker[AsyncSession]


def make_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    """The app's engine: SQLite gets WAL, pragmas and a pool of readers; PostgreSQL a sized
    pool, pinging connections that sat idle, that serves reads and writes alike. ``url``: another
    database on the same terms (a read replica's)."""
    if settings.is_sqlite:
        return _sqlite_engine(settings, connections=settings.sqlite_pool_size)
    connect_args: dict[str, Any] = {
        "timeout": settings.db_connect_timeout,
        "command_timeout": settings.db_command_timeout,
        "server_settings": {"application_name": "heroes_api"},
    }
    if not settings.db_prepared_statements:
        connect_args.update(_UNPREPARED)
    engine = create_async_engine(
        url or settings.database_url,
        # Error messages and logs never quote bound values: they may be a client's secret_name.
        hide_parameters=True,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=settings.db_pool_recycle,
        connect_args=connect_args,
    )
    if settings.db_pool_pre_ping:
        _ping_when_idle(
            engine, idle_seconds=settings.db_pool_ping_after, timeout=settings.db_connect_timeout
        )
    _abort_when_timed_out(engine)
    return engine


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4()}__"


# Behind PgBouncer in transaction mode, consecutive transactions of one client connection may run
# on different server connections: a statement prepared in one may be missing from the next, or
# its asyncpg-numbered name already taken there. Without prepared statements neither asyncpg nor
# SQLAlchemy's asyncpg dialect caches any, and each is prepared under a unique name inside the
# transaction that runs it (SQLAlchemy's "Prepared Statement Name with PGBouncer" recipe).
_UNPREPARED: dict[str, Any] = {
    "statement_cache_size": 0,
    "prepared_statement_cache_size": 0,
    "prepared_statement_name_func": _unique_statement_name,
}


def _ping_when_idle(engine: AsyncEngine, *, idle_seconds: float, timeout: float) -> None:
    """``pool_pre_ping`` for connections that sat in the pool for ``idle_seconds`` or more (0:
    every checkout), with the answer due within ``timeout`` seconds.

    SQLAlchemy's pre-ping costs a round trip on every checkout: under load, one per batch, and at
    low load one per request. A connection used a moment ago is almost never dead, so only idle
    ones are pinged; a failed ping raises ``DisconnectionError``, and the pool replaces the
    connection before anyone sees it (SQLAlchemy's "pessimistic disconnect handling" recipe).
    SQLAlchemy's own ping may wait as long as a statement (``command_timeout``) on a database
    that hangs, and only then does the pool try to reconnect; this one is a simple-protocol
    ``;`` (no prepared statement, so PgBouncer's transaction mode is fine) bounded like a
    connection attempt.
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def _idle_from(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return
        driver_connection = dbapi_connection.driver_connection
        try:
            await_only(driver_connection.execute(";", timeout=timeout))
        except Exception as exc:
            driver_connection.terminate()  # no goodbye to a server that did not answer
            raise sa_exc.DisconnectionError("pooled connection failed its ping") from exc


def _abort_when_timed_out(engine: AsyncEngine) -> None:
    """Drop a connection whose statement timed out at once, without a goodbye.

    The pool closes an invalidated asyncpg connection politely: a Terminate message, then up to
    2 s (fixed in SQLAlchemy) for the server to hang up. A server that let a statement time out
    is not going to answer that either, and the request that timed out would wait those 2 s
    more before its 503.
    """

    @event.listens_for(engine.sync_engine, "invalidate")
    def _abort(dbapi_connection: Any, _record: Any, exception: BaseException | None) -> None:
        if dbapi_connection is not None and isinstance(exception, TimeoutError):
            dbapi_connection.driver_connection.terminate()


def make_write_engine(settings: Settings, engine: AsyncEngine) -> AsyncEngine:
    """The engine that writes: on SQLite a second engine with exactly one connection.

    SQLite runs one writer at a time. Writers on several connections race for its lock and the
    losers sleep in ``busy_timeout``'s backoff (the source of multi-second write stalls); on one
    connection they queue for it in order instead, while readers keep their own connections (WAL
    lets them read beside the writer). PostgreSQL writes through the same pool as it reads.
    """
    return _sqlite_engine(settings, connections=1) if settings.is_sqlite else engine


def _sqlite_engine(settings: Settings, *, connections: int) -> AsyncEngine:
    engine = create_async_engine(
        settings.database_url,
        hide_parameters=True,
        poolclass=AsyncAdaptedQueuePool,
        pool_size=connections,
        max_overflow=0,  # opening a connection costs a thread and four PRAGMAs: keep them
        pool_timeout=settings.db_pool_timeout,
    )
    _install_sqlite_pragmas(
        engine,
        busy_timeout_ms=int(settings.sqlite_busy_timeout * 1000),
        mmap_bytes=settings.sqlite_mmap_mb * 2**20,
    )
    return engine


def _install_sqlite_pragmas(engine: AsyncEngine, *, busy_timeout_ms: int, mmap_bytes: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets readers run beside the single writer; NORMAL sync is durable in WAL mode
        # across process crashes (only an OS crash can lose the last commits).
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA mmap_size={mmap_bytes}")
        cursor.close()


def make_sessionmaker(engine: AsyncEngine) -> SessionMaker:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def _schema_problem(connection: Connection) -> str | None:
    revision = MigrationContext.configure(connection).get_current_revision()
    if revision == SCHEMA_REVISION:  # the common case: one query
        return None
    if revision is None:
        return (
            f"database schema has no Alembic revision, this code needs {SCHEMA_REVISION!r}: "
            "run `alembic upgrade head` (see docs/operations.md, 'Migrations')"
        )
    return compatibility_problem(read_chain(connection), revision)


async def schema_problem(engine: AsyncEngine) -> str | None:
    """Say why this code must not serve the database, or None when the database is at
    SCHEMA_REVISION or at a later revision recorded as compatible with it (rolling deploys,
    ``heroes_api.compatibility``). A database that cannot be reached is ``DatabaseUnavailable``."""
    with translate_errors():
        async with engine.connect() as connection:
            return await connection.run_sync(_schema_problem)


# SQLSTATE classes: 22 data exception; 40 transaction rollback (deadlock, serialization failure);
# 08 connection exception, 53 insufficient resources (too many connections), 57 operator
# intervention (shutdown); 25006: a write sent to a standby (a failover under way).
_DATA_SQLSTATE = "22"
_ROLLBACK_SQLSTATE = "40"
_UNAVAILABLE_SQLSTATES = ("08", "53", "57", "25006")
# Raised while talking to the database without a DBAPI error around them: a pool checkout
# timeout, a refused or reset socket, asyncpg's connect or command timeout.
_UNREACHABLE = (
    sa_exc.TimeoutError,
    OSError,
    TimeoutError,
    # A multi-host URL whose hosts all answer, none of them a primary (a failover under way).
    asyncpg.TargetServerAttributeNotMatched,
)
# SQLite result codes that no retry gets past: a read-only file or directory, a full disk.
_REFUSES_WRITES = ("SQLITE_READONLY", "SQLITE_FULL")


def translated(exc: BaseException) -> DatabaseError | None:
    """The app's error for a failure talking to the database, or None for a bug (a 500).

    asyncpg reports a dropped connection or a data error as a plain ``DBAPIError``, not as
    ``OperationalError`` / ``DataError``: SQLAlchemy marks the first ``connection_invalidated``,
    and both carry a SQLSTATE (SQLite's errors carry none).
    """
    if not isinstance(exc, sa_exc.DBAPIError):
        return DatabaseUnavailable() if isinstance(exc, _UNREACHABLE) else None
    state = getattr(exc.orig, "sqlstate", None) or ""
    if str(getattr(exc.orig, "sqlite_errorname", "")).startswith(_REFUSES_WRITES):
        return DatabaseRefusesWrites()
    if isinstance(exc, sa_exc.DataError) or state.startswith(_DATA_SQLSTATE):
        return ValueNotStorable()
    if state.startswith(_ROLLBACK_SQLSTATE):
        return WriteConflict()
    if (
        exc.connection_invalidated
        or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
        or state.startswith(_UNAVAILABLE_SQLSTATES)
    ):
        return DatabaseUnavailable()
    return None


@contextmanager
def translate_errors() -> Iterator[None]:
    """Raise the app's ``DatabaseError`` for a driver failure inside the block (the driver's
    exception is its ``__cause__``); anything else, a bug, passes through unchanged."""
    try:
        yield
    except (sa_exc.DBAPIError, *_UNREACHABLE) as exc:
        if (error := translated(exc)) is None:
            raise
        raise error from exc
