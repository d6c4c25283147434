"""What one point read costs at each layer of the stack (``make bench-layers``).

    .venv/bin/python -m bench.layers [--reads 3000] [--rounds 5]

Runs the same ``hero`` lookup by id, sequentially, on one migrated and seeded SQLite file, through
each layer the service could use, from the whole HTTP app down to aiosqlite alone, and reports the
median CPU time per read (``time.process_time``: every thread of this process, so the aiosqlite
worker thread counts too). Variants are interleaved round by round; medians over rounds.
"""

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop
from sqlalchemy import Table
from sqlmodel import col, select
from starlette.types import Message

from bench.databases import SqliteDatabase
from bench.run import WORK
from heroes_api.app import create_app
from heroes_api.config import Settings
from heroes_api.db import make_engine, make_sessionmaker
from heroes_api.models import Hero
from heroes_api.state import app_state

ROWS = 1_000
Read = Callable[[int], Awaitable[object]]


def layers(url: str) -> tuple[dict[str, Read], Callable[[], Awaitable[None]]]:
    settings = Settings(database_url=url)
    app = create_app(settings)
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    hero: Table = Hero.__table__  # type: ignore[attr-defined]
    by_id = select(hero.c.id, hero.c.name, hero.c.age)

    async def http_app(hero_id: int) -> object:
        """The whole ASGI app: routing, validation, session dependency, ORM, serialization."""
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": f"/heroes/{hero_id}", "raw_path": b"", "query_string": b"",
            "root_path": "", "headers": [(b"host", b"bench")], "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80), "state": {},
        }  # fmt: skip
        status = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(scope, receive, send)
        assert status == [200], status
        return status

    async def orm_session_get(hero_id: int) -> object:
        async with sessions() as session:
            return await session.get(Hero, hero_id)

    async def orm_session_select(hero_id: int) -> object:
        async with sessions() as session:
            return (await session.exec(select(Hero).where(col(Hero.id) == hero_id))).first()

    async def core_in_session(hero_id: int) -> object:
        async with sessions() as session:
            return (await session.exec(by_id.where(hero.c.id == hero_id))).first()

    async def core_connection(hero_id: int) -> object:
        async with engine.connect() as connection:
            return (await connection.execute(by_id.where(hero.c.id == hero_id))).first()

    async def aiosqlite_via_pool(hero_id: int) -> object:
        async with engine.connect() as connection:
            raw = (await connection.get_raw_connection()).driver_connection
            assert raw is not None
            async with raw.execute("SELECT id, name, age FROM hero WHERE id = ?", (hero_id,)) as c:
                return await c.fetchone()

    async def close() -> None:
        await engine.dispose()
        await app_state(app).engine.dispose()

    variants: dict[str, Read] = {
        "whole app (ASGI, no HTTP parsing)": http_app,
        "AsyncSession.get (the service)": orm_session_get,
        "AsyncSession + select(Hero)": orm_session_select,
        "AsyncSession + Core select(columns)": core_in_session,
        "AsyncConnection + Core select": core_connection,
        "pooled aiosqlite connection, raw SQL": aiosqlite_via_pool,
    }
    return variants, close


async def measure(reads: int, rounds: int, url: str) -> dict[str, float]:
    variants, close = layers(url)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    rng = random.Random(5)
    try:
        for read in variants.values():  # warm caches and connections
            for _ in range(200):
                await read(rng.randint(1, ROWS))
        for _ in range(rounds):
            for name, read in variants.items():
                started = time.process_time()
                for _ in range(reads):
                    await read(rng.randint(1, ROWS))
                samples[name].append((time.process_time() - started) / reads * 1e6)
    finally:
        await close()
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reads", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    database = SqliteDatabase(Path(WORK) / "layers.db")
    database.create()
    database.seed(ROWS)
    uvloop.install()
    try:
        results = asyncio.run(measure(args.reads, args.rounds, database.url))
    finally:
        database.drop()
    print(f"| layer | CPU µs per point read (median of {args.rounds} rounds) |\n|---|--:|")
    for name, micros in results.items():
        print(f"| {name} | {micros:,.0f} |")


if __name__ == "__main__":
    main()
