"""API keys and CORS (README, "Security"): both off by default, on by settings."""

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pydantic import ValidationError

from heroes_api.config import Settings
from tests.helpers import MakeApp, MakeClient, asgi_client, make_hero, scrape, value
from tests.servers import Server

KEY = "k3y-0ne.with~all+token/chars=="
OTHER_KEY = "another-valid-key-2"
WRONG_KEY = "not-one-of-the-keys"
KEYS = f"{KEY}, {OTHER_KEY}"
HERO = {"name": "Deadpond", "secret_name": "Dive Wilson", "age": 30}
ORIGIN = "https://heroes.example"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def log_text(caplog: pytest.LogCaptureFixture) -> Any:
    """Everything logged during the test, for checks that no key leaks into a log line."""
    caplog.set_level(logging.DEBUG)
    return lambda: caplog.text


@pytest.fixture
async def keyed(make_client: MakeClient) -> httpx.AsyncClient:
    """A client on an app whose writes need one of two keys; it sends no key by itself."""
    return await make_client(api_keys=KEYS)


@pytest.fixture
async def private(make_client: MakeClient) -> httpx.AsyncClient:
    return await make_client(api_keys=KEY, protect_reads=True)


async def write(client: httpx.AsyncClient, route: str, headers: dict[str, Any]) -> httpx.Response:
    """One write route, with ``headers``, on hero 1 for PATCH and DELETE."""
    if route == "POST":
        return await client.post("/heroes/", json=HERO, headers=headers)
    if route == "PATCH":
        return await client.patch("/heroes/1", json={"age": 31}, headers=headers)
    return await client.delete("/heroes/1", headers=headers)


@pytest.mark.parametrize("route", ["POST", "PATCH", "DELETE"])
@pytest.mark.parametrize(
    ("headers", "error", "detail"),
    [
        ({}, None, "Not authenticated: send Authorization: Bearer <API key>"),
        (bearer(WRONG_KEY), "invalid_token", "Invalid API key"),
        (bearer(KEY[:-1]), "invalid_token", "Invalid API key"),
        (bearer("x" + KEY), "invalid_token", "Invalid API key"),
        ({"Authorization": KEY}, "invalid_request", "Malformed Authorization header"),
        ({"Authorization": f"Basic {KEY}"}, "invalid_request", "Malformed Authorization header"),
        ({"Authorization": "Bearer "}, "invalid_request", "Malformed Authorization header"),
        ({"Authorization": f"Bearer {KEY} x"}, "invalid_request", "Malformed Authorization header"),
        (
            {"Authorization": f"Bearer {KEY}\u00e9".encode()},
            "invalid_request",
            "Malformed Authorization header",
        ),
    ],
)
async def test_writes_without_a_valid_key_are_401_and_change_nothing(
    keyed: httpx.AsyncClient,
    log_text: Any,
    route: str,
    headers: dict[str, Any],
    error: str | None,
    detail: str,
) -> None:
    hero = await make_hero(keyed, headers=bearer(KEY))

    response = await write(keyed, route, headers)

    assert response.status_code == 401
    assert response.json() == {"detail": detail}
    challenge = "Bearer" if error is None else f'Bearer error="{error}"'
    assert response.headers["www-authenticate"] == challenge
    assert (await keyed.get("/heroes/")).json() == [hero]
    assert KEY not in log_text()
    assert WRONG_KEY not in log_text()
    assert KEY[:-1] not in log_text()
    reason = {None: "missing", "invalid_request": "malformed", "invalid_token": "invalid"}[error]
    assert f"authentication failed ({reason}): {route} /heroes/" in log_text()
    samples = await scrape(keyed)
    assert value(samples, "heroes_auth_failures_total", reason=reason) == 1


@pytest.mark.parametrize("key", [KEY, OTHER_KEY])
async def test_every_configured_key_opens_every_write(keyed: httpx.AsyncClient, key: str) -> None:
    created = await keyed.post("/heroes/", json=HERO, headers=bearer(key))
    assert created.status_code == 200
    hero_id = created.json()["id"]

    patched = await keyed.patch(f"/heroes/{hero_id}", json={"age": 31}, headers=bearer(key))
    assert patched.json() == {"id": hero_id, "name": "Deadpond", "age": 31}

    lowercase_scheme = {"Authorization": f"bearer {key}"}
    deleted = await keyed.delete(f"/heroes/{hero_id}", headers=lowercase_scheme)
    assert deleted.json() == {"ok": True}
    assert (await keyed.get("/heroes/")).json() == []


async def test_reads_and_health_stay_open_with_keys(keyed: httpx.AsyncClient) -> None:
    hero = await make_hero(keyed, headers=bearer(KEY))

    assert (await keyed.get("/heroes/")).json() == [hero]
    assert (await keyed.get(f"/heroes/{hero['id']}")).json() == hero
    assert (await keyed.get("/heroes/999")).status_code == 404
    assert (await keyed.get("/health")).status_code == 200
    # A bad key on an open route is not checked: reads answer as they would without it.
    assert (await keyed.get("/heroes/", headers=bearer(WRONG_KEY))).status_code == 200


async def test_protected_reads_need_a_key_too(private: httpx.AsyncClient) -> None:
    hero = await make_hero(private, headers=bearer(KEY))

    for path in ("/heroes/", f"/heroes/{hero['id']}"):
        refused = await private.get(path)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert (await private.get(path, headers=bearer(WRONG_KEY))).status_code == 401
    assert (await private.get("/heroes/", headers=bearer(KEY))).json() == [hero]
    assert (await private.get(f"/heroes/{hero['id']}", headers=bearer(KEY))).json() == hero
    assert (await private.get("/health")).status_code == 200


async def test_key_file_holds_one_key_a_line(make_client: MakeClient, tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text(f"{KEY}\n\n  {OTHER_KEY}  \n")
    client = await make_client(api_keys_file=key_file)
    assert (await client.post("/heroes/", json=HERO)).status_code == 401
    for key in (KEY, OTHER_KEY):
        assert (await client.post("/heroes/", json=HERO, headers=bearer(key))).is_success


async def test_keys_from_both_settings_are_valid(make_client: MakeClient, tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text(OTHER_KEY)
    client = await make_client(api_keys=KEY, api_keys_file=key_file)
    for key in (KEY, OTHER_KEY):
        assert (await client.post("/heroes/", json=HERO, headers=bearer(key))).is_success


def test_only_digests_of_the_keys_are_kept(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text(OTHER_KEY)
    settings = Settings(api_keys=KEY, api_keys_file=key_file)

    held = repr(settings) + repr(settings.model_dump())
    assert KEY not in held
    assert OTHER_KEY not in held
    assert len(settings.api_keys) == 2
    assert all(len(digest) == 32 for digest in settings.api_keys)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (f"{KEY},", "HEROES_API_KEYS: key 2 is empty"),
        (f"{KEY},,{OTHER_KEY}", "HEROES_API_KEYS: key 2 is empty"),
        (f"{KEY},short-key-15chr", "HEROES_API_KEYS: key 2 is shorter than 16 characters"),
        ("has a space in it!", "HEROES_API_KEYS: key 1 has a character a Bearer token cannot"),
        (f"{KEY}\u00e9", "HEROES_API_KEYS: key 1 has a character a Bearer token cannot"),
    ],
)
def test_bad_keys_refuse_to_start_without_echoing_them(keys: str, message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(api_keys=keys)
    assert message in str(refused.value)
    for key in filter(None, (key.strip() for key in keys.split(","))):
        assert key not in str(refused.value)


def test_bad_key_file_refuses_to_start(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text(f"{KEY}\nshort\n")
    with pytest.raises(ValidationError, match="HEROES_API_KEYS_FILE: key 2 is shorter than 16"):
        Settings(api_keys_file=short)

    empty = tmp_path / "empty"
    empty.write_text("\n \n")
    with pytest.raises(ValidationError, match="HEROES_API_KEYS_FILE holds no key"):
        Settings(api_keys_file=empty)

    with pytest.raises(ValidationError, match="HEROES_API_KEYS_FILE cannot be read"):
        Settings(api_keys_file=tmp_path / "missing")


def test_protected_reads_without_keys_refuse_to_start() -> None:
    with pytest.raises(ValidationError, match="HEROES_PROTECT_READS needs HEROES_API_KEYS"):
        Settings(protect_reads=True)


def test_keys_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEROES_API_KEYS", KEYS)
    monkeypatch.setenv("HEROES_PROTECT_READS", "true")
    settings = Settings()
    assert len(settings.api_keys) == 2
    assert settings.protect_reads


def test_a_blank_key_variable_means_no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEROES_API_KEYS", " ")
    assert Settings().api_keys == frozenset()


def _security_of(document: dict[str, Any]) -> dict[str, Any]:
    return {
        f"{method.upper()} {path}": operation.get("security")
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    }


async def test_openapi_declares_the_key_where_it_is_needed(
    keyed: httpx.AsyncClient, private: httpx.AsyncClient
) -> None:
    document = (await keyed.get("/openapi.json")).json()
    scheme = document["components"]["securitySchemes"]["APIKey"]
    assert scheme["type"] == "http"
    assert scheme["scheme"] == "bearer"
    needs_key: list[dict[str, list[str]]] = [{"APIKey": []}]
    assert _security_of(document) == {
        "POST /heroes/": needs_key,
        "GET /heroes/": None,
        "GET /heroes/{hero_id}": None,
        "PATCH /heroes/{hero_id}": needs_key,
        "DELETE /heroes/{hero_id}": needs_key,
        "GET /health": None,
        "GET /health/live": None,
    }
    assert "401" in document["paths"]["/heroes/"]["post"]["responses"]
    assert "401" not in document["paths"]["/heroes/"]["get"]["responses"]
    assert KEY not in str(document)
    assert OTHER_KEY not in str(document)

    protected = (await private.get("/openapi.json")).json()
    assert _security_of(protected)["GET /heroes/"] == needs_key
    assert _security_of(protected)["GET /health"] is None
    assert _security_of(protected)["GET /health/live"] is None


async def test_without_keys_openapi_has_no_security(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert "securitySchemes" not in document.get("components", {})
    assert not any(_security_of(document).values())


@pytest.fixture
async def browser(make_client: MakeClient) -> httpx.AsyncClient:
    return await make_client(api_keys=KEY, cors_origins=f"{ORIGIN}, http://localhost:5173")


def _cors_headers(response: httpx.Response) -> set[str]:
    return {name for name in response.headers if name.startswith("access-control-")}


async def test_preflight_from_an_allowed_origin(browser: httpx.AsyncClient) -> None:
    response = await browser.options(
        "/heroes/1",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    allowed_methods = response.headers["access-control-allow-methods"].split(", ")
    assert {"GET", "POST", "PATCH", "DELETE"} <= set(allowed_methods)
    assert "authorization" in response.headers["access-control-allow-headers"].lower()


async def test_preflight_for_a_method_not_allowed(browser: httpx.AsyncClient) -> None:
    response = await browser.options(
        "/heroes/", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "PUT"}
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "Disallowed CORS method"}
    assert "PUT" not in response.headers["access-control-allow-methods"]


@pytest.mark.parametrize("origin", ["https://evil.example", f"{ORIGIN}.evil.example", "null"])
async def test_preflight_from_another_origin_gets_no_cors_headers(
    browser: httpx.AsyncClient, origin: str
) -> None:
    response = await browser.options(
        "/heroes/",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "Disallowed CORS origin"}
    assert _cors_headers(response) == set()


async def test_simple_requests_from_allowed_and_other_origins(browser: httpx.AsyncClient) -> None:
    created = await browser.post("/heroes/", json=HERO, headers={"Origin": ORIGIN, **bearer(KEY)})
    assert created.status_code == 200
    assert created.headers["access-control-allow-origin"] == ORIGIN
    exposed = created.headers["access-control-expose-headers"].lower().split(", ")
    assert {"link", "x-request-id", "etag"} <= set(exposed)  # ETag: for If-Match
    assert {"idempotent-replayed", "retry-after"} <= set(exposed)  # a page can retry writes
    preflight = await browser.options(
        "/heroes/",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "idempotency-key",
        },
    )
    assert preflight.status_code == 200

    # Another origin's request is served (CORS binds browsers, not servers), but its answer
    # carries no CORS header, so the browser keeps it from the page.
    other = await browser.get("/heroes/", headers={"Origin": "https://evil.example"})
    assert other.status_code == 200
    assert _cors_headers(other) == set()
    assert "origin" in other.headers["vary"].lower()

    # A 401 carries the CORS headers too, so the page can read why it failed.
    refused = await browser.post("/heroes/", json=HERO, headers={"Origin": ORIGIN})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == ORIGIN


async def test_without_origins_there_is_no_cors(client: httpx.AsyncClient) -> None:
    preflight = await client.options(
        "/heroes/", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 405
    simple = await client.get("/heroes/", headers={"Origin": ORIGIN})
    assert _cors_headers(simple) == set()


@pytest.mark.parametrize("origin", ["https://heroes.example/", "heroes.example", "ftp://x.example"])
def test_origins_that_can_never_match_refuse_to_start(origin: str) -> None:
    with pytest.raises(ValidationError, match=r"HEROES_CORS_ORIGINS: .* is not an origin"):
        Settings(cors_origins=f"{ORIGIN},{origin}")


async def _get_health_via(app: Any, host: str) -> None:
    async with asgi_client(app, f"http://{host}:8000") as client:
        assert (await client.get("/health")).status_code == 200


async def test_open_writes_on_a_public_address_warn_once(make_app: MakeApp, log_text: Any) -> None:
    async with LifespanManager(make_app()) as manager:
        for host in ("127.0.0.1", "[::1]", "localhost", "testserver"):
            await _get_health_via(manager.app, host)
        assert "writes are open" not in log_text()
        await _get_health_via(manager.app, "192.0.2.10")
        await _get_health_via(manager.app, "192.0.2.10")
    assert log_text().count("writes are open to anyone who reaches 192.0.2.10") == 1

    async with LifespanManager(make_app(api_keys=KEY)) as manager:
        await _get_health_via(manager.app, "192.0.2.11")
    assert "reaches 192.0.2.11" not in log_text()


@pytest.mark.slow
def test_real_server_logs_no_key(database_url: str, tmp_path: Path) -> None:
    """A served app, refusing and admitting keys: its whole log (uvicorn's included) holds none."""
    with Server(database_url, tmp_path, extra_env={"HEROES_API_KEYS": KEYS}) as server:
        with httpx.Client(base_url=server.base_url) as client:
            assert client.post("/heroes/", json=HERO, headers=bearer(WRONG_KEY)).status_code == 401
            assert client.post("/heroes/", json=HERO, headers={"Authorization": KEY}).is_error
            assert client.post("/heroes/", json=HERO, headers=bearer(KEY)).is_success
        log = server.log()
    assert "authentication failed (invalid): POST /heroes/" in log
    for key in (KEY, OTHER_KEY, WRONG_KEY):
        assert key not in log
