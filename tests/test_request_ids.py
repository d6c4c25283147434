"""X-Request-ID: a sane one is taken, any other is replaced, and every response carries one."""

import logging
import re
import subprocess
import sys
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from heroes_api.app import create_app
from heroes_api.config import Settings
from heroes_api.logs import RequestIdFilter
from tests.helpers import MakeApp, asgi_client

GENERATED = re.compile(r"[0-9a-f]{16}-[0-9a-f]+")


async def test_a_sane_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    for sane in (
        "abc-123",
        "7f1c2d3e-0000-4000-8000-1234567890ab",
        "Root=1-5759e988:x/y+z@q.",
        "a" * 128,
    ):
        response = await client.get("/heroes/1", headers={"X-Request-ID": sane})
        assert response.headers["x-request-id"] == sane


@pytest.mark.parametrize(
    "insane",
    ["a" * 129, "has space", "semi;colon", 'quote"', "<script>", "ünïcode", "tab\there", ""],
)
async def test_an_insane_request_id_is_replaced(client: httpx.AsyncClient, insane: str) -> None:
    response = await client.get("/heroes/1", headers=[(b"X-Request-ID", insane.encode())])
    assert GENERATED.fullmatch(response.headers["x-request-id"])


async def test_an_absent_request_id_is_made_fresh_for_every_request(
    client: httpx.AsyncClient,
) -> None:
    ids = [(await client.get("/health/live")).headers["x-request-id"] for _ in range(5)]
    assert all(GENERATED.fullmatch(rid) for rid in ids)
    assert len(set(ids)) == 5


async def test_errors_carry_the_request_id(client: httpx.AsyncClient) -> None:
    headers = {"X-Request-ID": "err-1"}
    responses = [
        await client.get("/heroes/999999", headers=headers),  # 404 from the service
        await client.get("/no/such/route", headers=headers),  # 404 from routing
        await client.get("/heroes/abc", headers=headers),  # 422
        await client.put("/heroes/1", headers=headers),  # 405
    ]
    assert [r.status_code for r in responses] == [404, 404, 422, 405]
    assert all(r.headers["x-request-id"] == "err-1" for r in responses)


async def test_a_413_carries_the_request_id(make_app: MakeApp) -> None:
    async with asgi_client(make_app(max_body_bytes=10)) as client:
        declared = await client.post(
            "/heroes/", content=b"x" * 11, headers={"X-Request-ID": "big-1"}
        )

        async def chunks() -> AsyncIterator[bytes]:
            yield b"x" * 8
            yield b"x" * 8

        streamed = await client.post(
            "/heroes/", content=chunks(), headers={"X-Request-ID": "big-2"}
        )
    assert (declared.status_code, declared.headers["x-request-id"]) == (413, "big-1")
    assert (streamed.status_code, streamed.headers["x-request-id"]) == (413, "big-2")


@pytest.fixture
def app_with_extra_routes() -> FastAPI:
    app = create_app(Settings(database_url="sqlite://"))
    logger = logging.getLogger("tests.inside")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    @app.get("/say")
    async def say() -> dict[str, str]:
        logger.warning("inside the request")
        return {}

    return app


async def test_a_500_carries_the_request_id(app_with_extra_routes: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app_with_extra_routes, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/boom", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error"}
    assert response.headers["x-request-id"] == "boom-1"


async def test_log_lines_written_during_a_request_carry_its_id(
    app_with_extra_routes: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(RequestIdFilter())
    caplog.set_level(logging.INFO)
    async with asgi_client(app_with_extra_routes) as client:
        await client.get("/say", headers={"X-Request-ID": "say-1"})
        await client.get("/say", headers={"X-Request-ID": "say-2"})
    inside = [r for r in caplog.records if r.name == "tests.inside"]
    access = [r for r in caplog.records if r.name == "heroes_api.access"]
    assert [r.request_id for r in inside] == ["say-1", "say-2"]  # type: ignore[attr-defined]
    assert [r.request_id for r in access] == ["say-1", "say-2"]  # type: ignore[attr-defined]


FORK = """
import os
from heroes_api.observe import _ids
parent = _ids.next()
read, write = os.pipe()
if (pid := os.fork()) == 0:
    os.write(write, _ids.next().encode())
    os._exit(0)
os.waitpid(pid, 0)
print(parent, os.read(read, 100).decode(), _ids.next())
"""


def test_a_forked_child_makes_ids_of_its_own() -> None:
    """In a fresh single-threaded interpreter: forking where threads run is deprecated."""
    done = subprocess.run([sys.executable, "-c", FORK], capture_output=True, text=True, check=True)
    parent, child, parent_again = done.stdout.split()
    assert all(GENERATED.fullmatch(rid) for rid in (parent, child, parent_again))
    assert parent.split("-")[0] == parent_again.split("-")[0] != child.split("-")[0]
    assert (parent.split("-")[1], parent_again.split("-")[1]) == ("1", "2")
