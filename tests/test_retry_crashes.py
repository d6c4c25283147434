"""Retries across crashes: clients that time out and retry their creates, while the served
process is SIGKILLed and restarted, end with every logical create stored exactly once.

Half the clients retry through ``heroes_api.client.HeroesClient`` (a key per call, reused on
each retry), half through raw keyed HTTP. The same harness without keys is run too: its
duplicates are what the header prevents (printed, and required to be none with keys)."""

import asyncio
import signal
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from heroes_api.client import Conflict, HeroesClient, Unavailable
from tests.helpers import read_all_heroes
from tests.servers import Server

pytestmark = pytest.mark.slow

CLIENTS, CREATES, KILLS = 16, 12, 2
TIMEOUT = 0.25  # seconds an attempt may take: short, so that answers get lost
DEADLINE = 90.0  # seconds the whole run may take


async def _raw_create(client: httpx.AsyncClient, name: str, keyed: bool) -> int:
    """POST until a 2xx, with one key for every attempt (or none)."""
    headers = {"Idempotency-Key": uuid.uuid4().hex} if keyed else {}
    body = {"name": name, "secret_name": "s", "age": 1}
    while True:
        try:
            response = await client.post("/heroes/", json=body, headers=headers)
        except httpx.TransportError:
            await asyncio.sleep(0.01)
            continue
        if response.is_success:
            hero_id: int = response.json()["id"]
            return hero_id
        assert response.status_code in (409, 503), response.text
        await asyncio.sleep(0.01)


async def _client_create(client: HeroesClient, name: str) -> int:
    while True:
        try:
            return (await client.create(name=name, secret_name="s", age=1)).id
        except (Unavailable, Conflict):  # retries exhausted while the server was down
            continue


async def _run(server: Server, keyed: bool) -> tuple[dict[str, int], int]:
    """Every client's creates, while the server is killed KILLS times; the ids each client holds,
    by name, and the number of kills done."""
    held: dict[str, int] = {}
    kills = 0
    created = asyncio.Event()  # set after every create: the killer counts them

    async def raw_client(n: int) -> None:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=TIMEOUT) as client:
            for step in range(CREATES):
                name = f"raw-{n}-{step}"
                held[name] = await _raw_create(client, name, keyed)
                created.set()

    async def project_client(n: int) -> None:
        async with HeroesClient(server.base_url, timeout=TIMEOUT, max_retries=50) as client:
            for step in range(CREATES):
                name = f"client-{n}-{step}"
                held[name] = await _client_create(client, name)
                created.set()

    async def killer() -> None:
        nonlocal kills
        total = CLIENTS * CREATES
        for kill in range(KILLS):
            while len(held) < total * (kill + 1) // (KILLS + 1):
                created.clear()
                await created.wait()
            await asyncio.to_thread(server.stop, signal.SIGKILL)
            await asyncio.to_thread(server.start)
            kills += 1

    writers = [raw_client(n) for n in range(CLIENTS // 2)]
    if keyed:
        writers += [project_client(n) for n in range(CLIENTS // 2)]
    else:  # the project's client always sends a key: raw HTTP stands in for it
        writers += [raw_client(n) for n in range(CLIENTS // 2, CLIENTS)]
    async with asyncio.timeout(DEADLINE):
        await asyncio.gather(killer(), *writers)
    return held, kills


@pytest.mark.parametrize("keyed", [True, False], ids=["with-keys", "without-keys"])
async def test_retried_creates_across_sigkills_are_stored_exactly_once(
    database_url: str, tmp_path: Path, keyed: bool
) -> None:
    server = Server(database_url, tmp_path).start()
    started = time.monotonic()
    try:
        held, kills = await _run(server, keyed)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            stored = await read_all_heroes(client)
    finally:
        server.stop()
    copies = Counter(hero["name"] for hero in stored.values())
    duplicates = sum(count - 1 for count in copies.values())
    print(
        f"\n{'keyed' if keyed else 'unkeyed'}: {len(held)} creates, {kills} SIGKILLs, "
        f"{len(stored)} rows, {duplicates} duplicates, {time.monotonic() - started:.1f} s"
    )
    assert kills == KILLS
    assert set(copies) == set(held)  # nothing acknowledged was lost
    if keyed:
        assert duplicates == 0, copies.most_common(5)
        by_name: dict[str, Any] = {hero["name"]: hero["id"] for hero in stored.values()}
        assert by_name == held  # each client holds its own row's id
