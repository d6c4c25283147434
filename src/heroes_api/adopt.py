"""Adopt the FastAPI tutorial's ``database.db`` (built without Alembic), keeping its rows.

Run from the repository root, with ``HEROES_DATABASE_URL`` naming the database::

    HEROES_DATABASE_URL=sqlite:///./database.db python -m heroes_api.adopt
    HEROES_DATABASE_URL=sqlite:///./database.db alembic upgrade head

The schema is compared with what the first migration builds (in a scratch database); only if they
match is the database stamped at that revision, so later migrations apply on top of it.
"""

import asyncio
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from heroes_api.config import Settings, to_async_url
from heroes_api.preflight import file_problem, settings_or_exit

BASE_REVISION = "0001"
T = TypeVar("T")


def describe_schema(connection: Connection) -> dict[str, Any]:
    """The parts of the schema that matter for adoption: tables and the hero table's shape."""
    inspector = inspect(connection)
    schema: dict[str, Any] = {"tables": set(inspector.get_table_names())}
    if "hero" in schema["tables"]:
        schema["columns"] = {
            column["name"]: (str(column["type"]), column["nullable"])
            for column in inspector.get_columns("hero")
        }
        schema["indexes"] = {
            index["name"]: (index["column_names"], bool(index["unique"]))
            for index in inspector.get_indexes("hero")
        }
        schema["primary_key"] = inspector.get_pk_constraint("hero")["constrained_columns"]
    return schema


def inspect_database(url: str, inspector: Callable[[Connection], T]) -> T:
    """Run a synchronous inspection function on a connection to ``url``."""

    async def run() -> T:
        engine = create_async_engine(to_async_url(url))
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(inspector)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    return [
        f"{part}: expected {expected[part]}, found {actual[part]}"
        for part in ("columns", "indexes", "primary_key")
        if expected[part] != actual[part]
    ]


def adopt(config: Config) -> list[str]:
    """Stamp an unmanaged tutorial database at BASE_REVISION; return the problems that stop it."""
    url = config.get_main_option("sqlalchemy.url") or settings_or_exit().database_url
    if problem := file_problem(Settings(database_url=url), must_exist=True):
        return [problem.replace("run `alembic upgrade head` (make run does)", "check the path")]
    revision = inspect_database(url, _current_revision)
    if revision is not None:
        return [f"the database is already managed by Alembic (revision {revision!r})"]
    if not to_async_url(url).startswith("sqlite"):
        return ["only the tutorial's SQLite database can be adopted"]
    actual = inspect_database(url, describe_schema)
    if "hero" not in actual["tables"]:
        return ["the database has no 'hero' table: run `alembic upgrade head` instead"]

    with tempfile.TemporaryDirectory() as scratch:
        reference_url = f"sqlite+aiosqlite:///{Path(scratch) / 'reference.db'}"
        reference = Config(config.config_file_name)
        reference.set_main_option("sqlalchemy.url", reference_url)
        reference.attributes["configure_logging"] = False
        command.upgrade(reference, BASE_REVISION)
        expected = inspect_database(reference_url, describe_schema)

    if problems := _differences(expected, actual):
        return problems
    command.stamp(config, BASE_REVISION)
    return []


def main(config_file: str = "alembic.ini") -> int:
    problems = adopt(Config(config_file))
    if problems:
        print("Not adopted; the database was left unchanged:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(f"Adopted: stamped at revision {BASE_REVISION}. Now run `alembic upgrade head`.")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
