"""Alembic owns the schema: upgrade, downgrade, no drift, and adopting the tutorial's database."""

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import heroes_api.models  # noqa: F401
from heroes_api.adopt import adopt, describe_schema, inspect_database
from heroes_api.adopt import main as adopt_main
from heroes_api.compatibility import include_name
from heroes_api.config import get_settings
from heroes_api.db import SCHEMA_REVISION
from tests.databases import ROOT, Databases, alembic_config, migrate

# The DDL the tutorial's SQLModel table creation runs on SQLite, copied from its echo.
TUTORIAL_SCHEMA = """
CREATE TABLE hero (
	name VARCHAR NOT NULL,
	age INTEGER,
	id INTEGER NOT NULL,
	secret_name VARCHAR NOT NULL,
	PRIMARY KEY (id)
);
CREATE INDEX ix_hero_name ON hero (name);
CREATE INDEX ix_hero_age ON hero (age);
"""


def test_upgrade_downgrade_upgrade(empty_database_url: str) -> None:
    url = empty_database_url
    migrate(url)
    schema = inspect_database(url, describe_schema)
    assert {"hero", "alembic_version", "idempotency_key"} <= schema["tables"]
    assert schema["indexes"] == {
        "ix_hero_name": (["name"], False),
        "ix_hero_age": (["age", "name"], False),
    }
    assert set(schema["columns"]) == {"id", "name", "age", "secret_name", "version"}
    assert schema["columns"]["version"][1] is False
    assert schema["columns"]["age"][1] is True
    assert schema["columns"]["name"][1] is False
    assert schema["primary_key"] == ["id"]

    command.downgrade(alembic_config(url), "0003")
    assert "idempotency_key" not in inspect_database(url, describe_schema)["tables"]

    command.downgrade(alembic_config(url), "0002")
    assert inspect_database(url, describe_schema)["indexes"]["ix_hero_age"] == (["age"], False)

    command.downgrade(alembic_config(url), "base")
    assert "hero" not in inspect_database(url, describe_schema)["tables"]

    migrate(url)
    assert inspect_database(url, describe_schema) == schema


def _table_storage(connection: Connection) -> Any:
    """Where the hero table's rows live: a rewrite (or SQLite batch copy) moves them."""
    if connection.dialect.name == "postgresql":
        query = "SELECT relfilenode FROM pg_class WHERE relname = 'hero'"
    else:
        query = "SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = 'hero'"
    return connection.execute(text(query)).scalar_one()


def test_version_column_is_added_in_place_and_existing_rows_get_1(empty_database_url: str) -> None:
    """0002 on a table with rows written by 0001's code: every row gets version 1, the table is
    not rewritten (PostgreSQL: same relfilenode; SQLite: same root page, no batch copy), and a
    downgrade drops the column and keeps the rows."""
    url = empty_database_url
    migrate(url, "0001")

    def fill(connection: Connection) -> Any:
        connection.execute(
            text("INSERT INTO hero (name, secret_name, age) VALUES (:n, 's', :a)"),
            [{"n": f"h{n}", "a": n} for n in range(500)],
        )
        connection.commit()
        return _table_storage(connection)

    before = inspect_database(url, fill)
    migrate(url, "0002")

    def read(connection: Connection) -> Any:
        rows = connection.execute(text("SELECT name, age, version FROM hero ORDER BY id")).all()
        return _table_storage(connection), rows

    storage, rows = inspect_database(url, read)
    assert storage == before
    assert rows == [(f"h{n}", n, 1) for n in range(500)]

    command.downgrade(alembic_config(url), "0001")
    schema = inspect_database(url, describe_schema)
    assert "version" not in schema["columns"]
    count = inspect_database(url, lambda c: c.execute(text("SELECT count(*) FROM hero")).scalar())
    assert count == 500
    migrate(url)


def test_models_and_migrations_do_not_drift(database_url: str) -> None:
    url = database_url
    command.check(alembic_config(url))  # raises if autogenerate would write a migration

    def diff(connection: Connection) -> list[Any]:
        opts = {"compare_type": True, "include_name": include_name}
        context = MigrationContext.configure(connection, opts=opts)
        return list(compare_metadata(context, SQLModel.metadata))

    assert inspect_database(url, diff) == []


def test_schema_revision_is_the_alembic_head() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert script.get_heads() == [SCHEMA_REVISION]


def test_offline_sql_renders(capsys: pytest.CaptureFixture[str]) -> None:
    command.upgrade(alembic_config("sqlite+aiosqlite:///unused.db"), "head", sql=True)
    sql = capsys.readouterr().out
    assert "CREATE TABLE hero" in sql
    assert "CREATE INDEX ix_hero_age" in sql
    assert "ADD COLUMN version INTEGER DEFAULT 1 NOT NULL" in sql
    assert "INSERT INTO schema_compatibility" in sql


@pytest.fixture
def tutorial_db(tmp_path: Path) -> Path:
    """The tutorial's database.db: built by SQLModel, with rows, unknown to Alembic."""
    path = tmp_path / "database.db"
    with sqlite3.connect(path) as connection:
        connection.executescript(TUTORIAL_SCHEMA)
        connection.executemany(
            "INSERT INTO hero (name, secret_name, age) VALUES (?, ?, ?)",
            [("Deadpond", "Dive Wilson", None), ("Rusty-Man", "Tommy Sharp", 48)],
        )
    connection.close()
    return path


def rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as connection:
        result = connection.execute("SELECT id, name, secret_name, age FROM hero").fetchall()
    connection.close()
    return result


def test_upgrade_on_tutorial_database_explains_what_to_do(tutorial_db: Path) -> None:
    before = rows(tutorial_db)
    with pytest.raises(CommandError, match=r"python -m heroes_api\.adopt"):
        migrate(f"sqlite:///{tutorial_db}")
    assert rows(tutorial_db) == before


def test_adopt_tutorial_database_keeps_rows(tutorial_db: Path) -> None:
    before = rows(tutorial_db)
    url = f"sqlite:///{tutorial_db}"
    assert adopt(alembic_config(url)) == []
    migrate(url)  # now a no-op upgrade to head
    assert rows(tutorial_db) == before
    command.check(alembic_config(url))


def test_adopt_refuses_a_different_schema(tutorial_db: Path) -> None:
    with sqlite3.connect(tutorial_db) as connection:
        connection.execute("DROP INDEX ix_hero_age")
    connection.close()
    url = f"sqlite:///{tutorial_db}"
    problems = adopt(alembic_config(url))
    assert problems
    assert any("ix_hero_age" in problem for problem in problems)
    with pytest.raises(CommandError):  # still not stamped
        migrate(url)


def test_adopt_refuses_an_alembic_managed_database(database_url: str) -> None:
    assert adopt(alembic_config(database_url)) == [
        f"the database is already managed by Alembic (revision {SCHEMA_REVISION!r})"
    ]


def test_adopt_refuses_a_database_without_the_tutorial_schema(
    databases: Databases, empty_database_url: str
) -> None:
    expected = {
        "sqlite": "the database has no 'hero' table: run `alembic upgrade head` instead",
        "postgresql": "only the tutorial's SQLite database can be adopted",
    }[databases.name]
    if databases.name == "sqlite":  # an empty file, as sqlite3 leaves one
        sqlite3.connect(empty_database_url.partition(":///")[2]).close()
    assert adopt(alembic_config(empty_database_url)) == [expected]


def test_adopt_command_line(
    tutorial_db: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HEROES_DATABASE_URL", f"sqlite:///{tutorial_db}")
    get_settings.cache_clear()
    config_file = str(ROOT / "alembic.ini")
    try:
        assert adopt_main(config_file) == 0
        assert "Now run `alembic upgrade head`" in capsys.readouterr().out
        assert adopt_main(config_file) == 1
        assert "already managed by Alembic" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()
