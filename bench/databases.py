"""Benchmark databases: created, migrated by ``alembic upgrade head``, seeded fast, dropped.

The schema always comes from the migrations; seeding then bulk-loads rows into the migrated
``hero`` table (``executemany`` in one transaction on SQLite, ``COPY`` on PostgreSQL).
"""

import asyncio
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
# Beside the running interpreter: .venv/bin under `make bench`, and a worktree run with another
# checkout's venv (PYTHONPATH=src) migrates with that venv's alembic, in this checkout.
ALEMBIC = Path(sys.executable).parent / "alembic"
BATCH = 50_000
# Hero n's age is n % AGE_MODULUS: each age is held by rows / AGE_MODULUS heroes (100 of
# 1,000,000 at the scale run, for the age_range scenario; the 1,000-hero database has ages
# 1..1,000, each once). bench/run.py hands it to scenario.lua as BENCH_AGE_MODULUS.
AGE_MODULUS = 10_000


def hero_rows(start: int, stop: int) -> Iterator[tuple[str, int, str]]:
    """Rows (name, age, secret_name) for heroes start..stop-1; ids follow insertion order.

    Zero-padded names sort like the ids, so the name index grows at its end: a fast load. Every
    name is unique (the by_name scenario finds one hero); see AGE_MODULUS for the ages.
    """
    for n in range(start, stop):
        yield f"Hero {n:07d}", n % AGE_MODULUS, f"Secret {n:07d}"


def migrate(url: str) -> None:
    env = {**os.environ, "HEROES_DATABASE_URL": url}
    subprocess.run([ALEMBIC, "upgrade", "head"], cwd=ROOT, env=env, check=True, capture_output=True)


def _batches(rows: int, label: str) -> Iterator[tuple[int, int]]:
    """(start, stop) id ranges of at most BATCH rows, with a progress bar on big loads."""
    with tqdm(total=rows, unit="row", unit_scale=True, desc=label, disable=rows < 100_000) as bar:
        for start in range(1, rows + 1, BATCH):
            stop = min(start + BATCH, rows + 1)
            yield start, stop
            bar.update(stop - start)


@dataclass
class SqliteDatabase:
    path: Path
    name: str = "sqlite"

    @property
    def url(self) -> str:
        return f"sqlite+aiosqlite:///{self.path}"

    def create(self) -> None:
        self.drop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        migrate(self.url)

    def seed(self, rows: int) -> None:
        """Replace every hero with ``rows`` fresh ones (ids 1..rows)."""
        connection = sqlite3.connect(self.path, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=OFF")  # a bulk load that can simply be redone
            connection.execute("PRAGMA cache_size=-262144")  # 256 MiB: index pages stay cached
            connection.execute("BEGIN")
            connection.execute("DELETE FROM hero")
            for start, stop in _batches(rows, f"seeding {self.name}"):
                connection.executemany(
                    "INSERT INTO hero (id, name, age, secret_name) VALUES (?, ?, ?, ?)",
                    ((n, *row) for n, row in enumerate(hero_rows(start, stop), start)),
                )
            connection.execute("COMMIT")
            # Statistics for the planner (sqlite_stat1), as VACUUM ANALYZE gives PostgreSQL:
            # how selective ix_hero_name and ix_hero_age are, for the filtered scenarios.
            connection.execute("ANALYZE")
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            connection.close()

    def size_bytes(self) -> int:
        return sum(
            p.stat().st_size
            for p in (self.path, self.path.with_name(self.path.name + "-wal"))
            if p.exists()
        )

    def drop(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)


@dataclass
class PostgresDatabase:
    server_dsn: str  # postgresql://user@host:port/db of an existing database to administer from
    name: str = "postgresql"
    database: str = field(default_factory=lambda: f"heroes_bench_{uuid.uuid4().hex[:8]}")

    @property
    def dsn(self) -> str:
        return self.server_dsn.rsplit("/", 1)[0] + "/" + self.database

    @property
    def url(self) -> str:
        return self.dsn.replace("postgresql://", "postgresql+asyncpg://", 1)

    async def _admin(self, statement: str) -> None:
        connection = await asyncpg.connect(self.server_dsn, timeout=5)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    def create(self) -> None:
        asyncio.run(self._admin(f'CREATE DATABASE "{self.database}"'))
        migrate(self.url)

    def seed(self, rows: int) -> None:
        async def load() -> None:
            connection = await asyncpg.connect(self.dsn, timeout=5)
            try:
                async with connection.transaction():
                    await connection.execute("TRUNCATE hero RESTART IDENTITY")
                    for start, stop in _batches(rows, f"seeding {self.name}"):
                        await connection.copy_records_to_table(
                            "hero",
                            records=list(hero_rows(start, stop)),
                            columns=["name", "age", "secret_name"],
                        )
                await connection.execute("VACUUM ANALYZE hero")
            finally:
                await connection.close()

        asyncio.run(load())

    def size_bytes(self) -> int:
        async def size() -> int:
            connection = await asyncpg.connect(self.dsn, timeout=5)
            try:
                query = "SELECT pg_database_size(current_database())"
                value: int = await connection.fetchval(query)
                return value
            finally:
                await connection.close()

        return asyncio.run(size())

    def drop(self) -> None:
        asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))


def postgres_server(dsn: str) -> str | None:
    """The reason PostgreSQL at ``dsn`` cannot be used, or None when it answers."""

    async def probe() -> None:
        connection = await asyncpg.connect(dsn, timeout=3)
        await connection.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"{exc.__class__.__name__}: {exc}"
    return None
