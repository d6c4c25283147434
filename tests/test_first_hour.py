"""What a newcomer meets around the service: a bad setting or an unusable database ends the start
with one short line naming what to fix (through the real `make run`, `uvicorn`, `alembic` and
`adopt` command lines), failed starts leave no files behind, a database that refuses writes is
not reported as a passing outage, and logs do what HEROES_LOG_FORMAT says under plain uvicorn."""

import asyncio
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from heroes_api.app import create_app
from heroes_api.config import Settings
from tests.databases import ROOT, migrate
from tests.helpers import running_client
from tests.servers import free_port

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
PREFIX = "heroes_api cannot start: "
BAD_SETTINGS = [
    (
        "HEROES_BATCH_MAX_SIZE",
        "abc",
        "HEROES_BATCH_MAX_SIZE (from the environment): Input should be a valid integer",
    ),
    (
        "HEROES_LOG_FORMAT",
        "xml",
        "HEROES_LOG_FORMAT (from the environment): Input should be 'text' or 'json'",
    ),
    (
        "HEROES_DATABASE_URL",
        "mysql://u@h/d",
        "HEROES_DATABASE_URL (from the environment): 'mysql' is not supported",
    ),
    (
        "HEROES_BATCHING",
        "maybe",
        "HEROES_BATCHING (from the environment): Input should be a valid boolean",
    ),
    (
        "HEROES_API_KEYS",
        "short",
        "HEROES_API_KEYS (from the environment): key 1 is shorter than 16",
    ),
    ("HEROES_API_KEYS_FILE", "/no/such/keys", "HEROES_API_KEYS_FILE cannot be read: /no/such/keys"),
    (
        "HEROES_CORS_ORIGINS",
        "https://a.example/path",
        "HEROES_CORS_ORIGINS (from the environment): 'https://a.example/path' is not an origin",
    ),
    ("HEROES_PROTECT_READS", "true", "HEROES_PROTECT_READS needs HEROES_API_KEYS"),
]


def run(command: list[str], cwd: Path, **env: str) -> tuple[int, list[str]]:
    """Run a command to its end; its exit code and every line it printed, in order."""
    done = subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, "HEROES_ENV_FILE": "", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
    )
    return done.returncode, [line for line in done.stdout.splitlines() if line.strip()]


def uvicorn(port: int | None = None) -> list[str]:
    return [str(BIN / "uvicorn"), "heroes_api.main:app", "--port", str(port or free_port())]


@pytest.mark.parametrize(
    ("name", "value", "message"), BAD_SETTINGS, ids=[s[0] for s in BAD_SETTINGS]
)
def test_a_bad_setting_ends_uvicorn_with_one_line(
    name: str, value: str, message: str, tmp_path: Path
) -> None:
    code, lines = run(uvicorn(), tmp_path, **{name: value})
    assert code != 0
    assert lines[-1].startswith(PREFIX + message), lines[-5:]
    assert not any("Traceback" in line for line in lines), lines
    assert not list(tmp_path.iterdir())  # no database file made


@pytest.mark.parametrize(
    ("name", "value", "message"), BAD_SETTINGS[:3], ids=[s[0] for s in BAD_SETTINGS[:3]]
)
def test_a_bad_setting_ends_make_run_with_one_line(name: str, value: str, message: str) -> None:
    """The real `make run` (its setup is done: the suite runs in its .venv). make adds its own
    status line after the service's."""
    code, lines = run(
        ["make", "--no-print-directory", "run", f"PORT={free_port()}"], ROOT, **{name: value}
    )
    assert code != 0
    ours = [line for line in lines if not re.match(r"make(\[\d+\])?: \*\*\*", line)]
    assert ours[-1].startswith(PREFIX + message), lines[-5:]
    assert not any("Traceback" in line for line in lines), lines


def test_a_bad_value_in_dot_env_says_so(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("heroes_batch_max_size=0\n")
    code, lines = run(uvicorn(), tmp_path, HEROES_ENV_FILE=".env")
    assert code != 0
    assert lines[-1].startswith(f"{PREFIX}heroes_batch_max_size (from .env): "), lines[-3:]
    code, lines = run(
        [str(BIN / "alembic"), "-c", str(ROOT / "alembic.ini"), "upgrade", "head"],
        tmp_path,
        HEROES_ENV_FILE=".env",
    )
    assert lines[-1].startswith(f"{PREFIX}heroes_batch_max_size (from .env): "), lines[-3:]


def test_a_sqlite_path_in_a_missing_directory_is_named(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/missing/heroes.db"
    for command in (
        uvicorn(),
        [str(BIN / "alembic"), "-c", str(ROOT / "alembic.ini"), "upgrade", "head"],
    ):
        code, lines = run(command, tmp_path, HEROES_DATABASE_URL=url)
        assert code != 0
        assert lines[-1] == (
            f"{PREFIX}the directory of the SQLite database {tmp_path}/missing/heroes.db does not "
            "exist (HEROES_DATABASE_URL)"
        ), lines[-3:]
    assert not (tmp_path / "missing").exists()


def test_starting_before_migrating_says_so_last_and_leaves_no_file(tmp_path: Path) -> None:
    code, lines = run(uvicorn(), tmp_path, HEROES_DATABASE_URL="sqlite:///./heroes.db")
    assert code != 0
    assert lines[-1] == (
        f"{PREFIX}there is no database at {tmp_path}/heroes.db: run `alembic upgrade head` "
        "(make run does)"
    )
    assert not list(tmp_path.iterdir())


def test_adopt_on_a_missing_path_creates_nothing(tmp_path: Path) -> None:
    code, lines = run(
        [sys.executable, "-m", "heroes_api.adopt"],
        ROOT,
        HEROES_DATABASE_URL=f"sqlite:///{tmp_path}/database.db",
    )
    assert code == 1
    assert f"there is no database at {tmp_path}/database.db" in lines[-1]
    assert not list(tmp_path.iterdir())


def as_others(command: list[str]) -> list[str]:
    """Root writes any file whatever its mode: without the capabilities that let it (setpriv,
    util-linux), file modes hold for it as for anyone."""
    if os.geteuid() != 0:
        return command
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--", *command]


def test_a_database_the_service_cannot_write_is_refused_at_startup(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    database = folder / "heroes.db"
    migrate(f"sqlite+aiosqlite:///{database}")
    database.chmod(0o444)
    code, lines = run(as_others(uvicorn()), folder, HEROES_DATABASE_URL=f"sqlite:///{database}")
    assert code != 0
    assert (
        lines[-1] == f"{PREFIX}cannot write the SQLite database {database}: the file is read-only"
    )

    database.chmod(0o666)
    folder.chmod(0o555)  # the file is writable, but not its -wal and -shm beside it
    code, lines = run(as_others(uvicorn()), folder, HEROES_DATABASE_URL=f"sqlite:///{database}")
    folder.chmod(0o755)
    assert code != 0
    assert (
        lines[-1]
        == f"{PREFIX}cannot write beside the SQLite database {database}: {folder} is read-only"
    )


async def test_writes_to_a_database_that_became_read_only_get_a_5xx_that_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Opened read-only (as a file whose mode or mount changed under a running service): reads
    work, and a write is a 500 that does not tell the client to retry; the log gives SQLite's
    reason."""
    database = tmp_path / "heroes.db"
    await asyncio.to_thread(migrate, f"sqlite+aiosqlite:///{database}")
    async with running_client(create_app(Settings(database_url=f"sqlite:///{database}"))):
        pass  # served once: in WAL mode, as a served database is
    url = f"sqlite+aiosqlite:///file:{database}?mode=ro&uri=true"
    caplog.set_level(logging.WARNING, "heroes_api.errors")
    async with running_client(create_app(Settings(database_url=url))) as client:
        assert (await client.get("/heroes/")).status_code == 200
        response = await client.post("/heroes/", json={"name": "a", "secret_name": "b"})
    assert response.status_code == 500
    assert "retrying will not help" in response.json()["detail"]
    assert "retry-after" not in response.headers
    assert "attempt to write a readonly database" in caplog.text


def test_plain_uvicorn_logs_as_heroes_log_format_says(tmp_path: Path) -> None:
    """`uvicorn heroes_api.main:app`, as FastAPI's docs run an app (no --log-config): JSON lines,
    uvicorn's included, and the app's access line with its request id, once."""
    database = tmp_path / "heroes.db"
    migrate(f"sqlite+aiosqlite:///{database}")
    port = free_port()
    log = tmp_path / "uvicorn.log"
    env = {
        **os.environ,
        "HEROES_ENV_FILE": "",
        "HEROES_DATABASE_URL": f"sqlite:///{database}",
        "HEROES_LOG_FORMAT": "json",
    }
    with log.open("wb") as out:
        server = subprocess.Popen(
            uvicorn(port), cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(
                    f"http://127.0.0.1:{port}/heroes/", headers={"X-Request-ID": "first-hour-1"}
                )
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        assert response.status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    lines: list[dict[str, Any]] = [json.loads(line) for line in log.read_text().splitlines()]
    access = [line for line in lines if line.get("request_id") == "first-hour-1"]
    assert [line["logger"] for line in access] == ["heroes_api.access"], access
    assert access[0]["route"] == "/heroes/"
    assert any(line["logger"] == "uvicorn.error" for line in lines)
    assert shutil.which("uvicorn", path=str(BIN))
