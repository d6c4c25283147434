"""Retries across crashes: clients that time out and retry their creates, while the served
process is SIGKILLed and restarted, end with every logical create stored exactly once.

Half the clients retry through ``heroes_api.client.HeroesClient`` (a key per call, reused on
each retry), half through raw keyed HTTP. Besides the answers the kills and the short timeouts
lose, every fifth answer to a create is lost on its way back after the server sent it, so some
retries always follow a write that happened. The same harness without keys is run too: there,
each of those lost answers becomes a second row (the test requires it, so it shows the harness
can catch a duplicate); with keys there must be none."""

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
LOSE_EVERY = 5  # every fifth answer to a create a client gets is lost


class LosingTransport(httpx.AsyncBaseTransport):
    """HTTP that loses every ``LOSE_EVERY``-th answer to a POST after the server has sent it, as
    a client timeout under load or a dropped connection does: the write happened, the client sees
    a timeout. ``lost`` counts the lost answers by whether they were successes."""

    def __init__(self, lost: Counter[bool]) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._posts = 0
        self._lost = lost

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if request.method == "POST":
            self._posts += 1
            if self._posts % LOSE_EVERY == 0:
                await response.aclose()
                self._lost[response.is_success] += 1
                raise httpx.ReadTimeout("the answer was lost on its way back", request=request)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


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


async def _run(server: Server, keyed: bool) -> tuple[dict[str, int], int, int]:
    """Every client's creates, while the server is killed KILLS times; the ids each client holds,
    by name, the number of kills done and of successful answers the transport lost."""
    held: dict[str, int] = {}
    kills = 0
    lost: Counter[bool] = Counter()
    created = asyncio.Event()  # set after every create: the killer counts them

    def http(**kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=LosingTransport(lost), timeout=TIMEOUT, **kwargs)

    async def raw_client(n: int) -> None:
        async with http(base_url=server.base_url) as client:
            for step in range(CREATES):
                name = f"raw-{n}-{step}"
                held[name] = await _raw_create(client, name, keyed)
                created.set()

    async def project_client(n: int) -> None:
        async with (
            http() as losing,
            HeroesClient(
                server.base_url, timeout=TIMEOUT, max_retries=50, http_client=losing
            ) as client,
        ):
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
    return held, kills, lost[True]


@pytest.mark.parametrize("keyed", [True, False], ids=["with-keys", "without-keys"])
async def test_retried_creates_across_sigkills_are_stored_exactly_once(
    database_url: str, tmp_path: Path, keyed: bool
) -> None:
    server = Server(database_url, tmp_path).start()
    started = time.monotonic()
    try:
        held, kills, lost = await _run(server, keyed)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            stored = await read_all_heroes(client)
    finally:
        server.stop()
    copies = Counter(hero["name"] for hero in stored.values())
    duplicates = sum(count - 1 for count in copies.values())
    print(
        f"\n{'keyed' if keyed else 'unkeyed'}: {len(held)} creates, {kills} SIGKILLs, "
        f"{lost} answers to successful creates lost, {len(stored)} rows, {duplicates} "
        f"duplicates, {time.monotonic() - started:.1f} s"
    )
    assert kills == KILLS
    assert lost > 0  # retries of writes that happened: what a key must make harmless
    assert set(copies) == set(held)  # nothing acknowledged was lost
    if keyed:
        assert duplicates == 0, copies.most_common(5)
        by_name: dict[str, Any] = {hero["name"]: hero["id"] for hero in stored.values()}
        assert by_name == held  # each client holds its own row's id
    else:  # each lost success was retried into a second row (and the kills may add more)
        assert duplicates >= lost
