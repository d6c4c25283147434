"""The access log (one line per request, text or JSON), one logging setup for uvicorn and Alembic,
and what a log must never hold: a secret_name, an Authorization header, a bound SQL value."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from heroes_api.config import Settings
from heroes_api.logs import JsonFormatter, RequestIdFilter, TextFormatter
from tests.databases import ROOT
from tests.helpers import MakeClient, make_hero
from tests.servers import Server

SECRET = "Rq-Log-Secret-8841"
NAME = "Rq-Log-Name-3307"  # sent as a query value too: a bound SQL parameter
TOKEN = "Bearer Rq-Log-Token-6612"
ACCESS_FIELDS = {"method", "route", "status", "duration_ms", "client", "request_id"}


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "heroes_api.access"]


async def test_one_access_line_per_request(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(RequestIdFilter())
    caplog.set_level(logging.INFO, logger="heroes_api.access")
    hero = await make_hero(client)
    await client.get(f"/heroes/{hero['id']}", headers={"X-Request-ID": "read-1"})
    await client.get("/heroes/2147483647", headers={"X-Request-ID": "read-2"})
    records = access_records(caplog)
    assert [(r.method, r.route, r.status) for r in records] == [  # type: ignore[attr-defined]
        ("POST", "/heroes/", 200),
        ("GET", "/heroes/{hero_id}", 200),
        ("GET", "/heroes/{hero_id}", 404),
    ]
    assert [r.request_id for r in records][1:] == ["read-1", "read-2"]  # type: ignore[attr-defined]
    assert all(r.duration_ms >= 0 for r in records)  # type: ignore[attr-defined]

    line = json.loads(JsonFormatter().format(records[1]))
    assert line.keys() >= ACCESS_FIELDS
    assert line["route"] == "/heroes/{hero_id}"
    assert line["request_id"] == "read-1"
    assert line["logger"] == "heroes_api.access"
    text = TextFormatter().format(records[1])
    assert "[read-1] GET /heroes/{hero_id} 200 " in text


async def test_the_access_log_can_be_turned_off(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="heroes_api.access")
    client = await make_client(access_log=False)
    assert (await client.get("/heroes/1")).status_code == 404
    assert access_records(caplog) == []


def test_json_lines_carry_tracebacks_and_no_request_id_outside_requests() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "-"
    assert "ValueError: boom" in line["exc_info"]
    assert "[-] failed" in TextFormatter().format(record)


def test_alembic_logs_like_the_app(tmp_path: Path) -> None:
    env = {**os.environ, "HEROES_DATABASE_URL": f"sqlite:///{tmp_path}/a.db"}
    env["HEROES_LOG_FORMAT"] = "json"
    done = subprocess.run(
        [Path(sys.executable).with_name("alembic"), "upgrade", "head"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert any(line["message"].startswith("Running upgrade") for line in lines), done.stderr
    assert {line["logger"] for line in lines} == {"alembic.runtime.migration"}


@pytest.fixture
def json_server(database_url: str, tmp_path: Path) -> Any:
    with Server(database_url, tmp_path, extra_env={"HEROES_LOG_FORMAT": "json"}) as server:
        yield server


@pytest.mark.slow
async def test_a_served_json_log(json_server: Server) -> None:
    """Through make run's own command: every line is JSON, one access line per request with its
    id, the client address behind a trusted proxy, and no secret, token or bound value."""
    async with json_server.client() as client:
        auth = {"Authorization": TOKEN}
        created = await client.post(
            "/heroes/",
            json={"name": NAME, "secret_name": SECRET},
            headers={**auth, "X-Request-ID": "log-create"},
        )
        hero_id = created.json()["id"]
        await client.patch(f"/heroes/{hero_id}", json={"secret_name": SECRET + "-2"}, headers=auth)
        await client.get("/heroes/", params={"name": NAME}, headers=auth)
        await client.post("/heroes/", json={"name": NAME, "secret_name": SECRET, "age": -1})
        await client.get(
            f"/heroes/{hero_id}",
            headers={"X-Request-ID": "log-proxied", "X-Forwarded-For": "203.0.113.9"},
        )
    json_server.stop()
    log = json_server.log()
    for text in (SECRET, NAME, TOKEN, "Rq-Log-Token"):
        assert text not in log
    lines = [json.loads(line) for line in log.splitlines()]  # every line is JSON
    access = {
        line["request_id"]: line
        for line in lines
        if line["logger"] == "heroes_api.access" and line["route"] != "/health"  # startup polls
    }
    assert len(access) == 5
    assert access["log-create"] | {"duration_ms": 0, "time": "", "pid": 0} == {
        "time": "",
        "level": "INFO",
        "pid": 0,
        "logger": "heroes_api.access",
        "message": access["log-create"]["message"],
        "request_id": "log-create",
        "method": "POST",
        "route": "/heroes/",
        "status": 200,
        "duration_ms": 0,
        "client": "127.0.0.1",
    }
    assert access["log-proxied"]["client"] == "203.0.113.9"  # X-Forwarded-For from 127.0.0.1
    assert {line["route"] for line in access.values()} == {"/heroes/", "/heroes/{hero_id}"}
    assert any(line["logger"] == "uvicorn.error" for line in lines)  # uvicorn logs alike


def test_settings_read_dot_env_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from heroes_api.config import get_settings

    (tmp_path / ".env").write_text("HEROES_MAX_BODY_BYTES=123\nHEROES_BATCH_MAX_SIZE=7\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HEROES_ENV_FILE")
    monkeypatch.delenv("HEROES_MAX_BODY_BYTES", raising=False)
    monkeypatch.setenv("HEROES_BATCH_MAX_SIZE", "9")
    get_settings.cache_clear()
    try:
        served = get_settings()
        monkeypatch.setenv("HEROES_ENV_FILE", "")  # what the test suite runs with
        get_settings.cache_clear()
        without = get_settings()
    finally:
        get_settings.cache_clear()
    assert (served.max_body_bytes, served.batch_max_size) == (123, 9)
    assert (without.max_body_bytes, without.batch_max_size) == (1024 * 1024, 9)
    assert Settings().max_body_bytes == 1024 * 1024  # explicit Settings never read .env
