"""A rolling deploy of migration 0002 loses nothing.

The previous release really runs: the source tree of the commit before migration 0002 was added
(``git archive``), whose code expects revision 0001 and writes without knowing ``hero.version``.
Under concurrent load through a "load balancer" (the list of servers in rotation), the test
migrates the database with the previous release's migrations (0001), serves it with the previous
release, runs this release's ``alembic upgrade head`` (0002), starts this release beside it,
takes the old one out of rotation and stops it. Every request must succeed, every acknowledged
write must read back at the end, and every server in rotation answers ``/health`` with 200
throughout.
"""

import asyncio
import os
import re
import signal
import subprocess
import sys
import tarfile
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.databases import ROOT, migrate
from tests.helpers import read_all_heroes
from tests.servers import Server, release_env

pytestmark = pytest.mark.slow

MIGRATION = "alembic/versions/0002_hero_version.py"
WORKERS = 12


def git(*args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True).stdout


@pytest.fixture(scope="session")
def previous_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The release before migration 0002: the parent of the commit that added it (HEAD while
    the migration is not committed yet), unpacked from git."""
    added = git("log", "--diff-filter=A", "--format=%H", "--", MIGRATION).split()
    commit = f"{added[-1].decode()}^" if added else "HEAD"
    root = tmp_path_factory.mktemp("previous-release")
    # What a release needs to run: its code, migrations, and logging.json (`make run`'s
    # --log-config, and Alembic's logging).
    archive = git(
        "archive", "--format=tar", commit, "src", "alembic", "alembic.ini", "logging.json"
    )
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    compatibility = (root / "src/heroes_api/compatibility.py").read_text()
    assert 'SCHEMA_REVISION = "0001"' in compatibility, "not the release before 0002"
    assert "version" not in (root / "src/heroes_api/models.py").read_text()
    return root


def migrate_with(release: Path, url: str) -> None:
    """``alembic upgrade head`` with ``release``'s code and migrations, in a process of its own."""
    env = release_env({**os.environ, "HEROES_DATABASE_URL": url}, release)
    subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(release / "alembic.ini"), "upgrade", "head"],
        cwd=release,
        env=env,
        check=True,
        capture_output=True,
    )


@dataclass
class Rotation:
    """What a load balancer does: send each request to a server in rotation, and let a server
    leave only once the requests it was given have been answered."""

    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)
    turn: int = 0
    requests: int = 0
    health_checks: int = 0
    phase: str = ""  # the step of the deploy under way, named by the test
    # (phase, server) -> requests sent in that phase and answered by that server
    served: Counter[tuple[str, str]] = field(default_factory=Counter)
    failure: BaseException | None = None  # the first failed request or health check
    progress: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def fail(self, error: BaseException) -> None:
        async with self.progress:
            self.failure = self.failure or error
            self.progress.notify_all()

    async def _until(self, condition: Any) -> None:
        async with self.progress:
            await asyncio.wait_for(
                self.progress.wait_for(lambda: self.failure is not None or condition()), 60
            )
        if self.failure is not None:
            raise self.failure

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        names = sorted(self.clients)
        name = names[self.turn % len(names)]
        self.turn += 1
        phase = self.phase
        self.in_flight[name] = self.in_flight.get(name, 0) + 1
        try:
            response = await self.clients[name].request(method, url, **kwargs)
        finally:
            self.in_flight[name] -= 1
        async with self.progress:
            self.requests += 1
            self.served[phase, name] += 1
            self.progress.notify_all()
        return response

    async def wait_for(self, more: int) -> None:
        target = self.requests + more
        await self._until(lambda: self.requests >= target)

    async def leave(self, name: str) -> None:
        self.clients.pop(name)
        await self._until(lambda: not self.in_flight[name])


async def writer(rotation: Rotation, worker: int, stop: asyncio.Event) -> dict[int, Any]:
    try:
        return await _write(rotation, worker, stop)
    except BaseException as exc:
        await rotation.fail(exc)
        raise


async def _write(rotation: Rotation, worker: int, stop: asyncio.Event) -> dict[int, Any]:
    """Create, read back, patch and sometimes delete heroes until told to stop; returns what
    every acknowledged write says the heroes are."""
    expected: dict[int, Any] = {}
    for n in range(100_000):  # bounded; ends when the deploy is done
        if stop.is_set():
            break
        body = {"name": f"w{worker}-{n}", "secret_name": "s", "age": n}
        created = await rotation.request("POST", "/heroes/", json=body)
        assert created.status_code == 200, created.text
        hero = created.json()
        expected[hero["id"]] = hero
        read = await rotation.request("GET", f"/heroes/{hero['id']}")
        assert (read.status_code, read.json()) == (200, hero)
        patched = await rotation.request("PATCH", f"/heroes/{hero['id']}", json={"age": -n % 97})
        assert patched.status_code == 200, patched.text
        expected[hero["id"]] = patched.json()
        if n % 4 == 3:
            deleted = await rotation.request("DELETE", f"/heroes/{hero['id']}")
            assert deleted.json() == {"ok": True}
            del expected[hero["id"]]
    return expected


async def health_checker(rotation: Rotation, stop: asyncio.Event) -> None:
    try:
        for _ in range(100_000):  # bounded; ends when the deploy is done
            if stop.is_set():
                return
            for name, client in list(rotation.clients.items()):
                response = await client.get("/health")
                assert response.status_code == 200, (name, response.text)
                rotation.health_checks += 1
            await asyncio.sleep(0.02)  # pacing only: correctness never depends on it
    except BaseException as exc:
        await rotation.fail(exc)
        raise


@asynccontextmanager
async def load(rotation: Rotation) -> AsyncIterator[list[asyncio.Task[dict[int, Any]]]]:
    stop = asyncio.Event()
    writers = [asyncio.create_task(writer(rotation, w, stop)) for w in range(WORKERS)]
    checker = asyncio.create_task(health_checker(rotation, stop))
    try:
        yield writers
    finally:
        stop.set()
        await asyncio.gather(*writers, checker, return_exceptions=True)
    if rotation.failure is not None:
        raise rotation.failure


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        if server.process is not None:
            server.stop()
            assert "Traceback" not in server.log(), server.log()


async def test_rolling_deploy_of_0002_loses_nothing(
    empty_database_url: str, previous_release: Path, tmp_path: Path, servers: list[Server]
) -> None:
    url = empty_database_url
    await asyncio.to_thread(migrate_with, previous_release, url)  # the old release's 0001
    old = Server(url, tmp_path, root=previous_release)
    new = Server(url, tmp_path)
    servers += [old, new]
    await asyncio.to_thread(old.start)
    rotation = Rotation()
    async with old.client(WORKERS + 2) as to_old, new.client(WORKERS + 2) as to_new:
        rotation.clients["old"] = to_old
        expected = await deploy(rotation, url, old, new, to_new)
    async with new.client() as client:
        assert await read_all_heroes(client) == expected
        for hero_id in list(expected)[:50]:  # rows the old release wrote have sane versions
            tag = (await client.get(f"/heroes/{hero_id}")).headers["etag"]
            assert re.fullmatch(rf'"{hero_id}-[1-9][0-9]*"', tag), tag
    assert "Application shutdown complete" in old.log()
    print(  # what the deploy measured (pytest -s shows it)
        f"rolling deploy: {rotation.requests} requests, 0 failed, by phase and server "
        f"{dict(rotation.served)}; {rotation.health_checks} health checks, all 200; "
        f"{len(expected)} heroes read back as acknowledged"
    )
    # Each release served, on each schema, in every step it was in rotation for: the old one on
    # 0001, on 0002 alone, and beside the new one, which served beside it and then alone. (The
    # waits count requests, not who answered them.)
    assert set(rotation.served) == {
        ("0001", "old"),
        ("0002", "old"),
        ("both", "old"),
        ("both", "new"),
        ("new alone", "new"),
    }, rotation.served


async def deploy(
    rotation: Rotation, url: str, old: Server, new: Server, to_new: httpx.AsyncClient
) -> dict[int, Any]:
    """The deploy, under load: returns what every acknowledged write says the heroes are."""
    rotation.phase = "0001"
    async with load(rotation) as writers:
        await rotation.wait_for(200)  # the old release serves 0001 under load

        await asyncio.to_thread(migrate, url)  # this release's `alembic upgrade head`: 0002
        rotation.phase = "0002"
        await rotation.wait_for(200)  # the old release keeps serving 0002

        await asyncio.to_thread(new.start)
        rotation.clients["new"] = to_new
        rotation.phase = "both"
        await rotation.wait_for(200)  # both serve

        await rotation.leave("old")
        rotation.phase = "new alone"
        assert await asyncio.to_thread(old.stop) == -signal.SIGTERM  # uvicorn's clean exit
        await rotation.wait_for(200)  # the new release alone
    return {k: v for task in writers for k, v in task.result().items()}
