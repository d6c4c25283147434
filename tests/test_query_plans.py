"""Each filtered and keyset page query is served by an index or the primary key, never by a full
scan of ``hero``: asked of the database itself (SQLite ``EXPLAIN QUERY PLAN``, PostgreSQL
``EXPLAIN`` of the generic plan a prepared statement settles on), on 50,000 heroes shaped like
the benchmark's (each age held by 5), with fresh statistics."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from heroes_api.heroes.repository.pages import Page, Statement, batch_statements, one_page
from tests.databases import Databases

pytestmark = pytest.mark.slow

ROWS = 50_000
FILL = {
    "sqlite": [
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) "
        "INSERT INTO hero (name, secret_name, age) "
        "SELECT printf('Hero %07d', i), printf('Secret %07d', i), i % 10000 FROM n",
        "ANALYZE",
    ],
    "postgresql": [
        "INSERT INTO hero (name, secret_name, age) "
        "SELECT 'Hero ' || lpad(i::text, 7, '0'), 'Secret ' || lpad(i::text, 7, '0'), i % 10000"
        " FROM generate_series(1, {rows}) AS i",
    ],
}
PRIMARY_KEY = {"sqlite": "INTEGER PRIMARY KEY", "postgresql": "hero_pkey"}

# Filters, and the indexes that may serve them ("pk": the primary key).
CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"name": "Hero 0000077"}, {"ix_hero_name"}),
    ({"name": "Hero 0000077", "offset": 5}, {"ix_hero_name"}),
    ({"min_age": 500, "max_age": 500}, {"ix_hero_age"}),
    ({"min_age": 9998}, {"ix_hero_age"}),
    ({"max_age": 1}, {"ix_hero_age"}),
    ({"min_age": 10, "max_age": 11, "offset": 20}, {"ix_hero_age"}),
    ({"after_id": ROWS - 50}, {"pk"}),
    ({"after_id": 10, "name": "Hero 0000077"}, {"ix_hero_name", "pk"}),
    ({"after_id": 25_000, "min_age": 500, "max_age": 500}, {"ix_hero_age", "pk"}),
]


async def _fill(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        for statement in FILL[engine.dialect.name]:
            await connection.exec_driver_sql(statement.format(rows=ROWS))
    if engine.dialect.name == "postgresql":  # as autovacuum leaves it: visibility map, statistics
        async with engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.exec_driver_sql("VACUUM ANALYZE hero")
    await engine.dispose()


@pytest.fixture(scope="module")
def filled_url(databases: Databases) -> str:
    """One database per backend for this module, filled once: the tests only read it."""
    url = databases.create()
    asyncio.run(_fill(url))
    return url


@pytest.fixture
async def engine(filled_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(filled_url)
    yield engine
    await engine.dispose()


async def plan(connection: AsyncConnection, statement: Statement) -> str:
    """The plan of a statement built by the repository, as served."""
    compiled = statement.query.compile(dialect=connection.dialect)
    values = compiled.construct_params(statement.params)
    positional = tuple(values[name] for name in compiled.positiontup)
    sqlite = connection.dialect.name == "sqlite"
    if not sqlite:
        # The plan a prepared statement settles on after its first runs (asyncpg prepares every
        # statement): made without the parameters' values.
        await connection.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
    explain = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
    rows = await connection.exec_driver_sql(explain + str(compiled), positional)
    return "\n".join(str(row[-1]) for row in rows)


def assert_served_by_index(dialect: str, plan_text: str, allowed: set[str]) -> None:
    if dialect == "sqlite":
        scans = [line for line in plan_text.splitlines() if line.startswith("SCAN hero")]
        assert not scans, plan_text
    else:
        assert "Seq Scan on hero" not in plan_text, plan_text
    names = {PRIMARY_KEY[dialect] if index == "pk" else index for index in allowed}
    assert any(name in plan_text for name in names), (allowed, plan_text)


@pytest.mark.parametrize(("filters", "allowed"), CASES)
async def test_a_page_query_uses_an_index(
    engine: AsyncEngine, filters: dict[str, Any], allowed: set[str]
) -> None:
    page = Page(**filters)
    async with engine.connect() as connection:
        text = await plan(connection, one_page(page))
    assert_served_by_index(engine.dialect.name, text, allowed)


def batch_statement(dialect: str, pages: list[Page]) -> Statement:
    """The statement a batch of ``pages`` of one shape runs as, padded as served."""
    (statement,) = batch_statements(dialect, pages)
    return statement


@pytest.mark.parametrize(("filters", "allowed"), CASES)
async def test_a_batch_of_page_queries_uses_an_index(
    engine: AsyncEngine, filters: dict[str, Any], allowed: set[str]
) -> None:
    """The statement a batch of three pages of this shape runs as (padded to four on SQLite)."""
    vary = "limit" if "after_id" in filters else "offset"  # after_id takes no offset
    pages = [Page(**filters), Page(**{**filters, vary: 1}), Page(**{**filters, vary: 2})]
    async with engine.connect() as connection:
        text = await plan(connection, batch_statement(engine.dialect.name, pages))
    assert_served_by_index(engine.dialect.name, text, allowed)


async def test_the_check_catches_a_full_scan(engine: AsyncEngine) -> None:
    """The assertion itself fails on a query no index can serve (a filter on secret_name)."""
    async with engine.connect() as connection:
        sql = "SELECT id FROM hero WHERE secret_name = 'x' ORDER BY id LIMIT 5"
        explain = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
        rows = await connection.exec_driver_sql(explain + sql)
        text = "\n".join(str(row[-1]) for row in rows)
    with pytest.raises(AssertionError):
        assert_served_by_index(engine.dialect.name, text, {"ix_hero_name"})


AGE_ONLY = [{"min_age": 500, "max_age": 500}, {"min_age": 9998}, {"max_age": 1}]
# PostgreSQL picks by cost between an index-only scan and a bitmap scan of ix_hero_age (on a few
# matching rows, the bitmap scan); SQLite reads a covering index whenever there is one.
READS_INDEX_ALONE = {"sqlite": "USING COVERING INDEX ix_hero_age", "postgresql": "on ix_hero_age"}


@pytest.mark.parametrize("filters", AGE_ONLY)
async def test_an_age_page_reads_ix_hero_age_alone(
    engine: AsyncEngine, filters: dict[str, Any]
) -> None:
    """ix_hero_age holds each hero's name too (migration 0003), so on SQLite an age filter is
    answered from the index without a table lookup per hero, alone and in a batch."""
    pages = [Page(**filters), Page(**{**filters, "offset": 1})]
    async with engine.connect() as connection:
        alone = await plan(connection, one_page(pages[0]))
        batch = await plan(connection, batch_statement(engine.dialect.name, pages))
    for text in (alone, batch):
        assert READS_INDEX_ALONE[engine.dialect.name] in text, text
