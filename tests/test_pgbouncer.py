"""The service behind PgBouncer in transaction mode (1.18: no prepared-statement support).

A two-worker server, 20 pooled connections per worker, reaches a throwaway PostgreSQL server
through PgBouncer with two server connections, so consecutive transactions of one client
connection run on different server connections. With ``HEROES_DB_PREPARED_STATEMENTS=false``
a bounded mixed load (creates, reads, finds, patches from 32 clients) runs without a single
error; with the default (prepared statements cached per connection) the same load fails.
"""

import asyncio
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from heroes_api.config import Settings
from heroes_api.db import make_engine
from tests.helpers import read_all_heroes
from tests.isolated_server import isolated_server
from tests.pg_cluster import PgBouncer, PgCluster

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("pgbouncer_installed")]

CLIENTS = 32
ROUNDS = 3  # each: create, read, find by name, patch: 384 requests in all
SERVER_CONNECTIONS = 2
PREPARED_STATEMENT_ERRORS = ("DuplicatePreparedStatementError", "InvalidSQLStatementNameError")


@dataclass
class Outcome:
    statuses: Counter[int | str] = field(default_factory=Counter)
    acknowledged: dict[int, dict[str, object]] = field(default_factory=dict)
    log: str = ""
    client_connections: int = 0  # the service's, to PgBouncer, after the load
    server_connections: int = 0  # PgBouncer's, to PostgreSQL

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200)


@pytest.fixture
def bouncer(pg_primary: PgCluster) -> PgBouncer:
    pg_primary.create_database("heroes")
    return pg_primary.bouncer(default_pool_size=SERVER_CONNECTIONS)


async def mixed_load(client: httpx.AsyncClient, outcome: Outcome) -> None:
    async def one_client(number: int) -> None:
        for round_ in range(ROUNDS):
            try:
                created = await client.post(
                    "/heroes/", json={"name": f"c{number}r{round_}", "secret_name": "s"}
                )
                outcome.statuses[created.status_code] += 1
                if created.status_code != 200:
                    continue
                hero = created.json()
                outcome.acknowledged[hero["id"]] = hero
                for request in (
                    client.build_request("GET", f"/heroes/{hero['id']}"),
                    client.build_request("GET", "/heroes/", params={"name": hero["name"]}),
                    client.build_request("PATCH", f"/heroes/{hero['id']}", json={"age": round_}),
                ):
                    response = await client.send(request)
                    outcome.statuses[response.status_code] += 1
                    if request.method == "PATCH" and response.status_code == 200:
                        outcome.acknowledged[hero["id"]] = response.json()
            except httpx.TransportError as exc:  # a worker that died under the request
                outcome.statuses[type(exc).__name__] += 1

    await asyncio.gather(*(one_client(n) for n in range(CLIENTS)))


async def serve_under_load(bouncer: PgBouncer, log_dir: Path, prepared: bool) -> Outcome:
    outcome = Outcome()
    server = isolated_server(
        bouncer.url("heroes"),
        log_dir,
        workers=2,
        db_prepared_statements=str(prepared).lower(),
    )
    try:
        await asyncio.to_thread(server.start)
    except RuntimeError:  # a worker refused to start: its schema check hit the same errors
        outcome.statuses["startup failed"] += 1
    else:
        async with server.client(CLIENTS) as client:
            await mixed_load(client, outcome)
            clients = await asyncio.to_thread(bouncer.show, "CLIENTS")
            outcome.client_connections = sum(c["application_name"] == "heroes_api" for c in clients)
            servers = await asyncio.to_thread(bouncer.show, "SERVERS")
            outcome.server_connections = sum(s["database"] == "heroes" for s in servers)
            if not prepared:
                assert await read_all_heroes(client) == outcome.acknowledged
    finally:
        await asyncio.to_thread(server.stop)
        outcome.log = server.log()
    return outcome


async def test_without_prepared_statements_pgbouncer_transaction_mode_serves_every_request(
    bouncer: PgBouncer, tmp_path: Path
) -> None:
    outcome = await serve_under_load(bouncer, tmp_path, prepared=False)
    print("PgBouncer, HEROES_DB_PREPARED_STATEMENTS=false:", dict(outcome.statuses))
    assert outcome.statuses == {200: CLIENTS * ROUNDS * 4}
    assert "Traceback" not in outcome.log, outcome.log
    # The service's connections really took turns on PgBouncer's few server connections.
    assert outcome.client_connections > SERVER_CONNECTIONS >= outcome.server_connections


async def test_with_prepared_statements_pgbouncer_transaction_mode_fails(
    bouncer: PgBouncer, tmp_path: Path
) -> None:
    """The default: what HEROES_DB_PREPARED_STATEMENTS=false is for."""
    outcome = await serve_under_load(bouncer, tmp_path, prepared=True)
    print("PgBouncer, HEROES_DB_PREPARED_STATEMENTS=true:", dict(outcome.statuses))
    assert outcome.errors > 0
    assert any(error in outcome.log for error in PREPARED_STATEMENT_ERRORS), outcome.log


@pytest.mark.parametrize(
    ("prepared", "names"),
    [(False, r"__asyncpg_[0-9a-f-]{36}__"), (True, r"__asyncpg_stmt_[0-9a-f]+__")],
)
async def test_each_statement_is_prepared_under_a_unique_name(
    bouncer: PgBouncer, prepared: bool, names: str
) -> None:
    """Without prepared statements, names are UUIDs: asyncpg's are numbered from 1 in every
    process, so two workers' statements meet on one server connection under the same name."""
    engine = make_engine(
        Settings(database_url=bouncer.url("heroes"), db_prepared_statements=prepared)
    )
    try:
        async with engine.begin() as connection:
            for _ in range(2):
                await connection.execute(text("SELECT count(*) FROM hero"))
            prepared_names = (
                (await connection.execute(text("SELECT name FROM pg_prepared_statements")))
                .scalars()
                .all()
            )
    finally:
        await engine.dispose()
    assert prepared_names
    assert all(re.fullmatch(names, name) for name in prepared_names), prepared_names
