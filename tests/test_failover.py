"""The primary dies under write load and its synchronous replica is promoted: the service, which
lists both hosts in its URL, answers 503 for the gap and then writes to the new primary without
a restart; no acknowledged write is lost.

``postgresql+asyncpg://user@/db?host=A:5432&host=B:5432&target_session_attrs=primary``: asyncpg
tries the hosts in order and keeps the first that is a primary (not in recovery). The primary is
killed (SIGKILL: no shutdown, no goodbye), and half a second later (a failover manager deciding)
the replica is promoted. With synchronous replication a COMMIT returns only once the replica has
its WAL, so every create the service acknowledged must be on the new primary.
"""

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.isolated_server import isolated_server
from tests.pg_cluster import PgCluster
from tests.servers import Server

pytestmark = pytest.mark.slow

WRITERS = 16
MAX_WRITES_PER_WRITER = 2_000  # the load's bound; it stops long before, once failed over
BEFORE_KILL = 100  # acknowledged creates before the primary is killed
AFTER_PROMOTION = 100  # ... and after the promotion, to end the load
DECISION_SECONDS = 0.5  # kill to promotion: a failover manager noticing and deciding
FAILOVER_SECONDS = 30.0  # the longest the whole scenario may take
BACKOFF_SECONDS = 0.05  # a writer's pause after a 503 (the service sends no Retry-After yet)


@dataclass
class Writes:
    acknowledged: dict[int, str] = field(default_factory=dict)  # id -> name
    acknowledged_at: list[float] = field(default_factory=list)  # monotonic, answer received
    unavailable: int = 0  # 503s
    retry_after: set[str | None] = field(default_factory=set)  # their Retry-After headers
    unexpected: list[str] = field(default_factory=list)  # anything else, or a transport error
    promoted_at: float | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def after(self, moment: float) -> list[float]:
        return [at for at in self.acknowledged_at if at > moment]


async def writer(client: httpx.AsyncClient, number: int, writes: Writes) -> None:
    for sequence in range(MAX_WRITES_PER_WRITER):
        if writes.stop.is_set():
            return
        name = f"writer{number}-{sequence}"
        try:
            response = await client.post("/heroes/", json={"name": name, "secret_name": "s"})
        except httpx.TransportError as exc:
            writes.unexpected.append(f"{name}: {exc!r}")
            continue
        if response.status_code == 200:
            writes.acknowledged[response.json()["id"]] = name
            writes.acknowledged_at.append(time.monotonic())
            if writes.promoted_at and len(writes.after(writes.promoted_at)) >= AFTER_PROMOTION:
                writes.stop.set()
        elif response.status_code == 503:
            writes.unavailable += 1
            writes.retry_after.add(response.headers.get("retry-after"))
            await asyncio.sleep(BACKOFF_SECONDS)
        else:
            writes.unexpected.append(f"{name}: {response.status_code} {response.text}")


async def wait_until(condition: object, what: str, deadline: float) -> None:
    assert callable(condition)
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@pytest.fixture
def served(pg_pair: PgCluster, tmp_path: Path) -> tuple[PgCluster, Server]:
    pg_pair.create_database("heroes")
    pg_pair.enable_synchronous_replication()
    primary, replica = pg_pair.primary, pg_pair.replica
    url = (
        "postgresql+asyncpg://postgres@/heroes"
        f"?host=127.0.0.1:{primary.port}&host=127.0.0.1:{replica.port}"
        "&target_session_attrs=primary"
    )
    return pg_pair, isolated_server(url, tmp_path)


async def test_failover_to_the_synchronous_replica_loses_no_acknowledged_write(
    served: tuple[PgCluster, Server],
) -> None:
    cluster, server = served
    writes = Writes()
    with server:
        async with server.client(WRITERS) as client:
            load = asyncio.gather(*(writer(client, n, writes) for n in range(WRITERS)))
            deadline = time.monotonic() + FAILOVER_SECONDS
            try:
                await wait_until(
                    lambda: len(writes.acknowledged) >= BEFORE_KILL, "writes", deadline
                )
                killed_at = time.monotonic()
                await asyncio.to_thread(cluster.kill_primary)
                await wait_until(lambda: writes.unavailable > 0, "a 503", deadline)
                await asyncio.sleep(max(0.0, killed_at + DECISION_SECONDS - time.monotonic()))
                await asyncio.to_thread(cluster.promote_replica)
                writes.promoted_at = time.monotonic()
                await wait_until(writes.stop.is_set, "writes on the new primary", deadline)
            finally:
                writes.stop.set()
                await load
        assert server.process is not None
        assert server.process.poll() is None  # served throughout: never restarted
        log = server.log()

    gap = writes.after(writes.promoted_at)[0] - killed_at
    print(
        f"failover: first write on the new primary {gap:.2f} s after the kill "
        f"(promotion done {writes.promoted_at - killed_at:.2f} s after it); "
        f"{writes.unavailable} 503s (Retry-After: {sorted(map(str, writes.retry_after))}); "
        f"{len(writes.acknowledged)} creates acknowledged"
    )
    assert writes.unexpected == []
    assert "Traceback" not in log, log
    assert gap < FAILOVER_SECONDS
    stored = cluster.replica.query("SELECT id, name FROM hero", "heroes").splitlines()
    on_new_primary = {int(id_): name for id_, name in (row.split("|") for row in stored)}
    lost = {
        id_: name for id_, name in writes.acknowledged.items() if on_new_primary.get(id_) != name
    }
    assert lost == {}, f"{len(lost)} acknowledged creates lost"
