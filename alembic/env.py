"""Alembic environment: async, and pointed at the database the app's settings name."""

import asyncio
import logging
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import AutoString, SQLModel

import heroes_api.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from heroes_api.compatibility import include_name, record_step
from heroes_api.config import get_settings, to_async_url
from heroes_api.logs import configure
from heroes_api.preflight import PREFIX, file_problem, settings_or_exit

config = context.config
# An explicit ``sqlalchemy.url`` (set by tools and tests) wins over the app's settings; without
# one, bad settings (or a SQLite path in a missing directory) end the run with one line.
if not config.get_main_option("sqlalchemy.url"):
    settings = settings_or_exit()
    if problem := file_problem(settings, must_exist=False):
        raise SystemExit(PREFIX + problem)
# The service's logging (HEROES_LOG_FORMAT): migrations log like the app. Tests that migrate
# in-process turn it off to keep pytest's own logging.
if config.attributes.get("configure_logging", True):
    configure(settings_or_exit().log_format)
    # The service keeps Alembic quiet (its schema check would log on every /health); a
    # migration says what it runs.
    logging.getLogger("alembic").setLevel(logging.INFO)

target_metadata = SQLModel.metadata


def database_url() -> str:
    """An explicit ``sqlalchemy.url`` (set by tools and tests) wins over the app's settings."""
    return to_async_url(config.get_main_option("sqlalchemy.url") or get_settings().database_url)


def render_item(kind: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Write SQLModel's string type by its public, typed name in generated migrations."""
    if kind == "type" and isinstance(obj, AutoString):
        return f"sqlmodel.AutoString({'' if obj.length is None else f'length={obj.length}'})"
    return False


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        render_item=render_item,
        include_name=include_name,
        # Records each step's declared compatibility in the database (rolling deploys).
        on_version_apply=record_step,
        **kwargs,
    )


def run_migrations_offline() -> None:
    _configure(url=database_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = create_async_engine(database_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
