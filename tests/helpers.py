"""The helpers tests share: clients, test data made through the public API, metrics scrapes,
statement recorders. Test modules import from here, never from each other."""

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from typing import Any, Protocol

import asyncpg
import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp

from heroes_api.app import create_app
from heroes_api.config import Settings
from heroes_api.db import translate_errors


def asgi_client(app: ASGIApp, base_url: str = "http://test") -> httpx.AsyncClient:
    """An HTTP client calling the app in-process, without its lifespan; ``base_url``'s host is
    the address the app sees the request arrive on (``scope["server"]``)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


@asynccontextmanager
async def running_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client on the app with its lifespan running: schema check first, engines disposed last."""
    async with LifespanManager(app) as manager, asgi_client(manager.app) as client:
        yield client


@asynccontextmanager
async def aiosqlite_threads_joined() -> AsyncIterator[None]:
    """Wait, before the block ends, for every aiosqlite worker thread started in it to exit: the
    block must close (or dispose of) whatever connections it opened.

    aiosqlite answers a failed connect by telling its worker thread to stop, with the answer due
    on the running event loop, and does not wait for it (aiosqlite#241, unfixed in 0.22.1). A test
    that ends first closes its loop under the thread, which dies with "Event loop is closed", and
    pytest reports that as an error in whichever test is running by then.
    """
    before = set(threading.enumerate())
    yield
    started = [
        thread
        for thread in threading.enumerate()
        if thread not in before and thread.name.endswith("(_connection_worker_thread)")
    ]
    for thread in started:
        await asyncio.to_thread(thread.join, 10)
        assert not thread.is_alive(), f"{thread.name} outlived its connection"


class MakeClient(Protocol):
    """The ``make_client`` fixture: ``await make_client(**overrides)`` is a client on a new app
    built from ``Settings(database_url=<the test's database>, **overrides)``, its lifespan running
    until the test ends."""

    async def __call__(self, **overrides: Any) -> httpx.AsyncClient: ...


class MakeApp(Protocol):
    """The ``make_app`` fixture: ``make_app(**overrides)`` is a new app built from
    ``Settings(database_url=<the test's database>, **overrides)``, without its lifespan; its
    engines are disposed when the test ends."""

    def __call__(self, **overrides: Any) -> FastAPI: ...


async def make_hero(
    client: httpx.AsyncClient, *, headers: dict[str, str] | None = None, **overrides: Any
) -> dict[str, Any]:
    payload: dict[str, Any] = {"name": "Deadpond", "secret_name": "Dive Wilson", "age": 30}
    payload.update(overrides)
    response = await client.post("/heroes/", json=payload, headers=headers)
    assert response.status_code == 200, response.text
    hero: dict[str, Any] = response.json()
    return hero


async def read_all_heroes(client: httpx.AsyncClient) -> dict[int, dict[str, Any]]:
    """Every hero, by id, paging through ``GET /heroes/`` (bounded: at most 100,000 heroes)."""
    heroes: dict[int, dict[str, Any]] = {}
    for offset in range(0, 100_000, 100):
        response = await client.get("/heroes/", params={"offset": offset})
        assert response.status_code == 200, response.text
        page = response.json()
        heroes.update((hero["id"], hero) for hero in page)
        if len(page) < 100:
            return heroes
    raise AssertionError("more than 100,000 heroes")  # pragma: no cover


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return parse(response.text)


def requests(samples: Samples, method: str, route: str, status: str) -> float:
    return value(samples, "heroes_http_requests_total", method=method, route=route, status=status)


@contextmanager
def executed(
    engine: AsyncEngine, keep: Callable[[str], bool]
) -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
    """(statement, parameters) of every statement ``keep`` selects that the engine runs
    meanwhile."""
    seen: list[tuple[str, tuple[Any, ...]]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if keep(statement):
            seen.append((statement, tuple(parameters)))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


def hero_selects(engine: AsyncEngine) -> AbstractContextManager[list[tuple[str, tuple[Any, ...]]]]:
    """Every ``SELECT ... FROM hero`` the engine runs meanwhile."""
    return executed(engine, lambda s: s.lstrip().startswith("SELECT") and "FROM hero" in s)


dbapi = AsyncAdapt_asyncpg_dbapi(asyncpg)  # type: ignore[no-untyped-call]


def dbapi_error(
    orig: Exception, *, invalidated: bool = False, cls: type[sa_exc.DBAPIError] = sa_exc.DBAPIError
) -> sa_exc.DBAPIError:
    return cls("SELECT 1", {"secret": "x"}, orig, connection_invalidated=invalidated)


def pg_error(error: type[asyncpg.PostgresError]) -> sa_exc.DBAPIError:
    """What SQLAlchemy raises for an asyncpg error: a DBAPIError around the adapter's Error."""
    error_class: type[Exception] = dbapi.Error
    return dbapi_error(error_class("boom", error("boom")))


def failing_app() -> FastAPI:
    app = create_app(Settings(database_url="sqlite://"))
    errors: dict[str, Exception] = {
        "data": pg_error(asyncpg.UntranslatableCharacterError),
        "dropped": dbapi_error(ValueError(), invalidated=True),
        "pool": sa_exc.TimeoutError("QueuePool limit reached"),
        "sql": pg_error(asyncpg.PostgresSyntaxError),
        "bug": RuntimeError("a bug"),
    }

    @app.get("/fail/{kind}")
    async def fail(kind: str) -> None:
        with translate_errors():  # as the hero service and the health check do
            raise errors[kind]

    @app.get("/os-error")
    async def os_error() -> None:
        raise ConnectionRefusedError  # not from a session: a bug like any other

    return app
