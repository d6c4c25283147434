"""Bodies over HEROES_MAX_BODY_BYTES get 413 before they are read, declared or chunked."""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from heroes_api.config import Settings
from heroes_api.limits import DEFAULT_MAX_BODY_BYTES, BodySizeLimit, BodyTooLarge
from tests.helpers import MakeClient
from tests.servers import Server

LIMIT = 1000
JSON = {"content-type": "application/json"}


def payload(size: int) -> bytes:
    """A valid hero body of exactly ``size`` bytes (padded with JSON whitespace)."""
    head = b'{"name": "Deadpond", "secret_name": "Dive Wilson"'
    return head + b" " * (size - len(head) - 1) + b"}"


async def chunks(body: bytes, size: int = 100) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_default_limit_is_one_mebibyte(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().max_body_bytes == DEFAULT_MAX_BODY_BYTES == 1024 * 1024
    monkeypatch.setenv("HEROES_MAX_BODY_BYTES", "2048")
    assert Settings().max_body_bytes == 2048


@pytest.fixture
async def small_client(make_client: MakeClient) -> httpx.AsyncClient:
    return await make_client(max_body_bytes=LIMIT)


async def test_body_at_the_limit_is_accepted(small_client: httpx.AsyncClient) -> None:
    response = await small_client.post("/heroes/", content=payload(LIMIT), headers=JSON)
    assert response.status_code == 200, response.text
    chunked = await small_client.post("/heroes/", content=chunks(payload(LIMIT)), headers=JSON)
    assert chunked.status_code == 200, chunked.text


@pytest.mark.parametrize("chunked", [False, True])
async def test_body_over_the_limit_is_413(small_client: httpx.AsyncClient, chunked: bool) -> None:
    body = payload(LIMIT + 1)
    content = chunks(body) if chunked else body
    response = await small_client.post("/heroes/", content=content, headers=JSON)
    assert response.status_code == 413
    assert response.json() == {"detail": f"Request body is larger than {LIMIT} bytes"}
    assert (await small_client.get("/heroes/")).json() == []


async def test_declared_length_is_refused_without_reading() -> None:
    """The app is never called, and ``receive`` is never awaited, for a declared oversize body."""
    sent: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:  # pragma: no cover
        raise AssertionError("the app must not run")

    async def receive() -> Message:  # pragma: no cover
        raise AssertionError("the body must not be read")

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "headers": [(b"content-length", b"1001")]}
    await BodySizeLimit(app, max_body_bytes=LIMIT)(scope, receive, send)
    assert sent[0]["status"] == 413


async def test_answers_413_when_the_app_lets_the_error_escape() -> None:
    """Behind an app without FastAPI's handlers the middleware still answers 413 itself."""
    sent: list[Message] = []
    messages = [{"type": "http.request", "body": b"x" * 600, "more_body": True}] * 2

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body"):
            pass

    async def receive() -> Message:
        return messages.pop()

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "headers": [(b"content-length", b"chunked?")]}
    await BodySizeLimit(app, max_body_bytes=LIMIT)(scope, receive, send)
    assert [m.get("status") for m in sent] == [413, None]


async def test_error_after_the_response_started_propagates() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await receive()

    async def receive() -> Message:
        return {"type": "http.request", "body": b"x" * 2000}

    async def send(message: Message) -> None:
        pass

    with pytest.raises(BodyTooLarge, match="larger than 1000 bytes"):
        await BodySizeLimit(app, max_body_bytes=LIMIT)(
            {"type": "http", "headers": []}, receive, send
        )


async def test_other_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def receive() -> Message:  # pragma: no cover
        return {}

    async def send(message: Message) -> None:  # pragma: no cover
        pass

    await BodySizeLimit(app)({"type": "lifespan"}, receive, send)
    assert seen == ["lifespan"]


@pytest.mark.slow
async def test_real_server_refuses_large_uploads(database_url: str, tmp_path: Path) -> None:
    """Through uvicorn: a declared 5 MiB body and an endless-looking chunked one both get 413."""
    limit = 64 * 1024
    with Server(database_url, tmp_path, extra_env={"HEROES_MAX_BODY_BYTES": str(limit)}) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=20) as client:
            declared = await client.post("/heroes/", content=payload(5 * 1024 * 1024), headers=JSON)
            assert declared.status_code == 413
            assert declared.json()["detail"] == f"Request body is larger than {limit} bytes"
            streamed = await client.post(
                "/heroes/", content=chunks(payload(4 * limit), size=8192), headers=JSON
            )
            assert streamed.status_code == 413
            assert streamed.json()["detail"] == declared.json()["detail"]
            # The connection stays usable and nothing was stored.
            assert (await client.get("/heroes/")).json() == []
            ok = await client.post("/heroes/", content=payload(limit), headers=JSON)
            assert ok.status_code == 200
        assert "Traceback" not in server.log()
