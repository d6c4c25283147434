"""How the service is run: make run's command keeps idle connections open, its workers' metrics
add up, and the Makefile picks a Python it supports (or says which it needs)."""

import contextlib
import http.client
import json
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from heroes_api.state import app_state
from tests.databases import ROOT
from tests.servers import Server, serve_command

# How long what sits in front of the service keeps an idle connection: AWS ALB and nginx's
# upstream keepalive 60 s, httpx 5 s. The server must keep its own longer.
CLIENT_IDLE_SECONDS = 60
# uvicorn's own default --timeout-keep-alive: what a server started without the flag keeps.
UVICORN_DEFAULT_KEEP_ALIVE = 5


@pytest.fixture
def sqlite_url(sqlite_databases: Any) -> str:
    """These tests are about the server process, not the database: SQLite only."""
    url: str = sqlite_databases.create()
    return url


def keep_alive_flag(command: list[str]) -> int:
    return int(command[command.index("--timeout-keep-alive") + 1])


@pytest.mark.slow
def test_an_idle_connection_is_kept_for_longer_than_clients_keep_theirs(
    sqlite_url: str, tmp_path: Path
) -> None:
    """make run's command keeps an idle connection for KEEP_ALIVE seconds, 75 by default, longer
    than any client or proxy in front keeps theirs (the issue's race: the server closing a
    connection just as a client reuses it).

    Proven without idling for 75 s: the default is read from make run's command, and a server
    started by that command with KEEP_ALIVE=1 is watched keeping an idle connection (it serves a
    second request on it) and then closing it once idle for 1 s, before uvicorn's default of 5 s
    would: so KEEP_ALIVE reaches uvicorn, and uvicorn honours it."""
    assert keep_alive_flag(serve_command(8000)) == 75 > CLIENT_IDLE_SECONDS
    with Server(sqlite_url, tmp_path, make_vars={"KEEP_ALIVE": "1"}) as server:
        assert server.process is not None  # the served process was given the flag:
        served = Path(f"/proc/{server.process.pid}/cmdline").read_text().split("\0")
        assert keep_alive_flag(served) == 1
        with contextlib.closing(
            http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        ) as connection:
            connection.request("GET", "/health/live")
            first = connection.getresponse()
            assert (first.status, json.loads(first.read())) == (200, {"status": "ok"})
            sock = connection.sock
            connection.request("GET", "/health/live")
            second = connection.getresponse()
            assert (second.status, json.loads(second.read())) == (200, {"status": "ok"})
            assert connection.sock is sock  # the same connection, not a reconnect
            idle_since = time.monotonic()
            # Wait for the server to close the idle connection (EOF), with a deadline short of
            # uvicorn's default: a server that did not get KEEP_ALIVE would still hold it then.
            sock.settimeout(UVICORN_DEFAULT_KEEP_ALIVE - 1)
            try:
                assert sock.recv(1) == b""
            except TimeoutError:
                raise AssertionError("an idle connection outlived KEEP_ALIVE=1") from None
            assert time.monotonic() - idle_since > 0.5  # kept while idle, not closed at once


def worker_counts(log: str) -> Counter[int]:
    return Counter(
        line["pid"]
        for line in map(json.loads, log.splitlines())
        if line["logger"] == "heroes_api.access" and line["route"] == "/heroes/{hero_id}"
    )


@pytest.mark.slow
async def test_two_workers_metrics_add_up(sqlite_url: str, tmp_path: Path) -> None:
    """Requests on fresh connections until both workers have served some (bounded); the
    counter on /metrics, which one worker answers, is the sum of both workers' requests."""
    env = {"HEROES_LOG_FORMAT": "json"}
    with Server(sqlite_url, tmp_path, extra_env=env, workers=2) as server:
        sent = 0
        for _ in range(200):
            async with httpx.AsyncClient(base_url=server.base_url) as fresh:  # a new connection
                assert (await fresh.get("/heroes/1")).status_code == 404
                sent += 1
            per_worker = worker_counts(server.log())
            if len(per_worker) == 2 and sum(per_worker.values()) == sent:
                break
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            scraped = (await client.get("/metrics")).text
    per_worker = worker_counts(server.log())
    assert len(per_worker) == 2, per_worker  # both workers served requests
    assert sum(per_worker.values()) == sent
    (total,) = [
        sample.value
        for family in text_string_to_metric_families(scraped)
        for sample in family.samples
        if sample.name == "heroes_http_requests_total"
        and sample.labels == {"method": "GET", "route": "/heroes/{hero_id}", "status": "404"}
    ]
    assert total == sent


async def test_health_live_needs_no_database(tmp_path: Path) -> None:
    from heroes_api.app import create_app
    from heroes_api.config import Settings
    from tests.helpers import asgi_client

    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/no-such-dir/heroes.db"))
    async with asgi_client(app) as client:  # no lifespan: it would refuse this database
        live = await client.get("/health/live")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    pool: Any = app_state(app).engine.pool
    assert pool.checkedout() == 0  # the database was never asked


def stand_in(directory: Path, name: str, version: str) -> Path:
    """A fake interpreter that reports ``version`` to whatever it is asked."""
    directory.mkdir(exist_ok=True)
    script = directory / name
    script.write_text(f"#!/bin/sh\necho {version}\n")
    script.chmod(0o755)
    return script


def make(*args: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/usr/bin/env", "-i", f"PATH={path}", "/usr/bin/make", "--no-print-directory", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize(
    ("interpreters", "chosen"),
    [
        ({"python3.11": "3.11", "python3": "3.12"}, "python3.11 is Python 3.11"),
        ({"python3": "3.12"}, "python3 is Python 3.12"),
        ({"python3": "3.13"}, "python3 is Python 3.13"),
    ],
)
def test_make_picks_python311_else_a_new_enough_python3(
    tmp_path: Path, interpreters: dict[str, str], chosen: str
) -> None:
    for name, version in interpreters.items():
        stand_in(tmp_path / "bin", name, version)
    done = make("python", path=tmp_path / "bin")
    assert (done.returncode, done.stdout.strip()) == (0, chosen), done.stderr


@pytest.mark.parametrize("version", ["3.10", "3.9", "3.14", "2.7"])
def test_make_refuses_an_unsupported_python(tmp_path: Path, version: str) -> None:
    stand_in(tmp_path / "bin", "python3", version)
    done = make("python", path=tmp_path / "bin")
    assert done.returncode != 0
    assert f"needs Python 3.11, 3.12 or 3.13, but python3 is {version}" in done.stderr


def test_make_refuses_before_building_a_venv(tmp_path: Path) -> None:
    old = stand_in(tmp_path / "bin", "python3.10", "3.10")
    venv = tmp_path / "venv"
    done = make("install", f"PYTHON={old}", f"VENV={venv}", path=tmp_path / "bin")
    assert done.returncode != 0
    assert f"but {old} is 3.10" in done.stderr
    assert not venv.exists()
    missing = make("python", "PYTHON=no-such-python", path=tmp_path / "bin")
    assert "no-such-python is not a working Python" in missing.stderr


def test_python_override_is_used(tmp_path: Path) -> None:
    newer = stand_in(tmp_path / "other", "python", "3.13")
    stand_in(tmp_path / "bin", "python3.11", "3.11")
    done = make("python", f"PYTHON={newer}", path=tmp_path / "bin")
    assert done.stdout.strip() == f"{newer} is Python 3.13"
