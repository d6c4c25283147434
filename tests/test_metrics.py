"""GET /metrics: Prometheus text that prometheus-client's own parser reads, with counters that move
by exactly the requests made."""

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from heroes_api.app import create_app
from heroes_api.config import Settings
from heroes_api.state import app_state
from tests.helpers import (
    MakeClient,
    Samples,
    aiosqlite_threads_joined,
    asgi_client,
    make_hero,
    requests,
    scrape,
    value,
)


async def test_counters_move_by_exactly_the_requests_made(client: httpx.AsyncClient) -> None:
    hero = await make_hero(client)
    before = await scrape(client)
    for _ in range(7):
        assert (await client.get(f"/heroes/{hero['id']}")).status_code == 200
    for _ in range(3):
        assert (await client.get("/heroes/2147483647")).status_code == 404
    for _ in range(2):
        assert (await client.post("/heroes/", json={"name": "x"})).status_code == 422
    assert (await client.get("/no/such/route")).status_code == 404
    after = await scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    point = {"method": "GET", "route": "/heroes/{hero_id}"}
    assert moved("heroes_http_requests_total", **point, status="200") == 7
    assert moved("heroes_http_requests_total", **point, status="404") == 3
    assert moved("heroes_http_requests_total", method="POST", route="/heroes/", status="422") == 2
    assert moved("heroes_http_requests_total", method="GET", route="<unmatched>", status="404") == 1
    assert moved("heroes_http_requests_total", method="GET", route="/metrics", status="200") == 1
    # The latency histogram counts the same requests; each took some time, well under 10 s.
    assert moved("heroes_http_request_duration_seconds_count", **point, status="200") == 7
    assert (
        moved("heroes_http_request_duration_seconds_bucket", **point, status="200", le="10.0") == 7
    )
    assert moved("heroes_http_request_duration_seconds_sum", **point, status="200") > 0
    # Every point read was a batch of one here (one client, one request at a time).
    assert moved("heroes_batch_size_count", batcher="reads") == 10
    assert moved("heroes_batch_size_sum", batcher="reads") == 10
    # Only the /metrics request itself is in flight while it is answered; no connection is out.
    assert value(after, "heroes_http_requests_in_flight") == 1
    assert value(after, "heroes_db_connections_in_use", pool="main") == 0


async def test_no_raw_paths_or_ids_in_labels(client: httpx.AsyncClient) -> None:
    for hero_id in (1, 2, 3):
        await client.get(f"/heroes/{hero_id}")
    routes = {dict(labels).get("route") for _, labels in await scrape(client)}
    assert "/heroes/{hero_id}" in routes
    assert not any(
        route and route.startswith("/heroes/") and route[8:].isdigit() for route in routes
    )


async def test_batch_sizes_are_observed_under_concurrency(client: httpx.AsyncClient) -> None:
    import asyncio

    hero = await make_hero(client)
    before = await scrape(client)
    await asyncio.gather(*(client.get(f"/heroes/{hero['id']}") for _ in range(50)))
    after = await scrape(client)
    items = value(after, "heroes_batch_size_sum", batcher="reads") - value(
        before, "heroes_batch_size_sum", batcher="reads"
    )
    batches = value(after, "heroes_batch_size_count", batcher="reads") - value(
        before, "heroes_batch_size_count", batcher="reads"
    )
    assert items == 50
    assert batches < 50  # some were shared


async def test_pool_connections_in_use_are_seen_while_checked_out(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    async with app_state(app).engine.connect():
        during = await scrape(client)
    after = await scrape(client)
    assert value(during, "heroes_db_connections_in_use", pool="main") == 1
    assert value(after, "heroes_db_connections_in_use", pool="main") == 0


async def test_database_errors_are_counted_by_class_and_status(
    failing_app: FastAPI,
) -> None:
    transport = httpx.ASGITransport(app=failing_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        before = await scrape(client)
        assert (await client.get("/fail/data")).status_code == 422
        for _ in range(2):
            assert (await client.get("/fail/dropped")).status_code == 503
        assert (await client.get("/fail/pool")).status_code == 503
        assert (await client.get("/fail/bug")).status_code == 500
        after = await scrape(client)

    def moved(**labels: str) -> float:
        name = "heroes_db_errors_total"
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved(error="DBAPIError", status="422") == 1
    assert moved(error="DBAPIError", status="503") == 2
    assert moved(error="TimeoutError", status="503") == 1
    assert sum(v for (name, _), v in after.items() if name == "heroes_db_errors_total") == 4
    assert requests(after, "GET", "/fail/{kind}", "500") == 1


async def test_an_unreachable_database_is_counted(tmp_path: object) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/no-such-dir/heroes.db"))
    async with aiosqlite_threads_joined(), asgi_client(app) as client:
        assert (await client.get("/health")).status_code == 503
        assert (await client.get("/heroes/1")).status_code == 503
        samples = await scrape(client)
        await app_state(app).engine.dispose()
    assert value(samples, "heroes_db_errors_total", error="OperationalError", status="503") == 2


@pytest.fixture
async def unmetered(make_client: MakeClient) -> httpx.AsyncClient:
    return await make_client(metrics=False)


async def test_metrics_can_be_turned_off(unmetered: httpx.AsyncClient) -> None:
    assert (await unmetered.get("/metrics")).status_code == 404
    hero = await make_hero(unmetered)
    response = await unmetered.get(f"/heroes/{hero['id']}")
    assert response.status_code == 200
    assert response.headers["x-request-id"]


def test_metrics_are_not_in_the_openapi_document() -> None:
    schema = create_app(Settings(database_url="sqlite://")).openapi()
    assert "/metrics" not in schema["paths"]
    assert "/health/live" in schema["paths"]


async def test_probes_and_metrics_need_no_key_when_reads_do(make_client: MakeClient) -> None:
    client = await make_client(api_keys="metrics-test-api-key-0123456789", protect_reads=True)
    assert (await client.get("/heroes/1")).status_code == 401
    assert (await client.get("/health/live")).status_code == 200
    assert (await client.get("/health")).status_code == 200
    samples = await scrape(client)
    assert requests(samples, "GET", "/heroes/{hero_id}", "401") == 1


def statuses(samples: Samples, route: str) -> dict[tuple[str, str], float]:
    """Requests counted under ``route``, by method and status."""
    return {
        (labels["method"], labels["status"]): count
        for (name, label_set), count in samples.items()
        if name == "heroes_http_requests_total"
        and (labels := dict(label_set)).get("route") == route
    }


async def test_docs_openapi_and_assets_are_counted_under_their_routes() -> None:
    """Routes FastAPI does not label itself (plain Starlette routes such as /openapi.json, the
    docs' assets mount) get their templates; requests routing matched to nothing stay
    ``<unmatched>``: a 404 and the redirect to the path with a slash."""
    app = create_app(Settings(database_url="sqlite://"))  # no database needed: no lifespan
    async with asgi_client(app) as client:
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
            assert (await client.get(path)).status_code == 200, path
        assert (await client.get("/docs/assets/swagger-ui.css")).status_code == 200
        assert (await client.get("/docs/assets/redoc.standalone.js")).status_code == 200
        assert (await client.get("/docs/assets/no-such-file.js")).status_code == 404
        assert (await client.post("/openapi.json")).status_code == 405
        assert (await client.get("/no/such/route")).status_code == 404
        assert (await client.get("/heroes")).status_code == 307
        samples = await scrape(client)
    for route in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        assert statuses(samples, route) == {("GET", "200"): 1}, route
    assert statuses(samples, "/openapi.json") == {("GET", "200"): 1, ("POST", "405"): 1}
    assert statuses(samples, "/docs/assets/{path}") == {("GET", "200"): 2, ("GET", "404"): 1}
    assert statuses(samples, "<unmatched>") == {("GET", "404"): 1, ("GET", "307"): 1}


async def test_a_413_is_counted_under_its_route_declared_or_chunked() -> None:
    """A declared Content-Length over the limit is refused before routing, a chunked body while
    the route reads it: both count under the route the request was for."""
    limit = 100
    app = create_app(Settings(database_url="sqlite://", max_body_bytes=limit))
    body = b'{"name": "x", "secret_name": "y"' + b" " * limit + b"}"

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 10):
            yield body[start : start + 10]

    json = {"content-type": "application/json"}
    async with asgi_client(app) as client:
        assert (await client.post("/heroes/", content=body, headers=json)).status_code == 413
        assert (await client.post("/heroes/", content=chunked(), headers=json)).status_code == 413
        assert (await client.patch("/heroes/7", content=body, headers=json)).status_code == 413
        assert (await client.post("/no/such/route", content=body)).status_code == 413
        samples = await scrape(client)
    assert statuses(samples, "/heroes/") == {("POST", "413"): 2}
    assert statuses(samples, "/heroes/{hero_id}") == {("PATCH", "413"): 1}
    assert statuses(samples, "<unmatched>") == {("POST", "413"): 1}


def test_a_request_outside_an_app_is_unmatched() -> None:
    """The middleware used without a Starlette app around it labels what it cannot match."""
    from heroes_api.observe import UNMATCHED, route_template

    scope = {"type": "http", "method": "GET", "path": "/docs", "headers": []}
    assert route_template(scope) == UNMATCHED


async def test_a_cors_preflight_is_counted_under_the_route_it_asks_about() -> None:
    """The CORS middleware answers a preflight before routing; it counts under its route."""
    app = create_app(Settings(database_url="sqlite://", cors_origins="https://app.example"))
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "PATCH"}
    async with asgi_client(app) as client:
        assert (await client.options("/heroes/7", headers=preflight)).status_code == 200
        samples = await scrape(client)
    assert statuses(samples, "/heroes/{hero_id}") == {("OPTIONS", "200"): 1}
