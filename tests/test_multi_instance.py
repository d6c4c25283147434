"""Two real server processes on one database: every acknowledged write is visible through both."""

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import read_all_heroes
from tests.servers import Server

pytestmark = pytest.mark.slow

WRITERS = 40
ROUNDS = 5


@pytest.fixture
def servers(database_url: str, tmp_path: Path) -> Any:
    with Server(database_url, tmp_path) as first, Server(database_url, tmp_path) as second:
        yield first, second
    for server in (first, second):
        assert "Traceback" not in server.log(), server.log()


async def test_two_instances_share_one_database(servers: tuple[Server, Server]) -> None:
    rng = random.Random(7)
    expected: dict[int, dict[str, Any]] = {}  # what every acknowledged write says the state is
    deleted: set[int] = set()
    async with servers[0].client(WRITERS) as a, servers[1].client(WRITERS) as b:
        clients = (a, b)

        async def writer(worker: int) -> None:
            for round_ in range(ROUNDS):
                via, other = clients[(worker + round_) % 2], clients[(worker + round_ + 1) % 2]
                created = await via.post(
                    "/heroes/",
                    json={"name": f"w{worker}r{round_}", "secret_name": "s", "age": round_},
                )
                assert created.status_code == 200, created.text
                hero = created.json()
                expected[hero["id"]] = hero
                # Read-your-write through the other process.
                seen = await other.get(f"/heroes/{hero['id']}")
                assert seen.json() == hero
                patched = await other.patch(f"/heroes/{hero['id']}", json={"age": 1000 + worker})
                assert patched.status_code == 200, patched.text
                expected[hero["id"]] = patched.json()
                assert (await via.get(f"/heroes/{hero['id']}")).json() == patched.json()
                if rng.random() < 0.3:
                    gone = await via.delete(f"/heroes/{hero['id']}")
                    assert gone.json() == {"ok": True}
                    del expected[hero["id"]]
                    deleted.add(hero["id"])
                    assert (await other.get(f"/heroes/{hero['id']}")).status_code == 404

        await asyncio.gather(*(writer(w) for w in range(WRITERS)))

        for client in clients:
            listed = await read_all_heroes(client)
            assert listed == expected
            assert not deleted & listed.keys()
    assert len(expected) + len(deleted) == WRITERS * ROUNDS
