"""The application factory: ``create_app(settings)`` builds one app with everything it owns.

The served instance (``uvicorn heroes_api.main:app``) lives in ``heroes_api.main``, which tests
never import: they build apps with settings of their own.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware import Middleware

from heroes_api import __version__, docs, health
from heroes_api.auth import key_guard
from heroes_api.config import Settings, get_settings
from heroes_api.cors import Cors
from heroes_api.db import make_engine, make_sessionmaker, make_write_engine, schema_problem
from heroes_api.errors import install_error_handlers
from heroes_api.heroes.router import hero_reads, hero_writes
from heroes_api.heroes.service import HeroService
from heroes_api.limits import BodySizeLimit
from heroes_api.metrics import Metrics, metrics_router
from heroes_api.observe import Observe
from heroes_api.open_writes import OpenWritesWarning
from heroes_api.replicas import Replica
from heroes_api.state import AppState, app_state


class SchemaNotMigrated(RuntimeError):
    """The database is not at the revision this code needs; the service refuses to start."""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    shared = app_state(app)
    try:
        if problem := await schema_problem(shared.engine):
            raise SchemaNotMigrated(f"heroes_api cannot start: {problem}")
        yield
    finally:
        await shared.hero_service.close()
        await shared.engine.dispose()
        await shared.write_engine.dispose()
        if shared.read_engine is not None:
            await shared.read_engine.dispose()
        if shared.metrics is not None:
            shared.metrics.process_exited()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app: its engines, hero service and metrics (one typed ``AppState``), its
    middleware, routes and error handlers.

    The middleware, outermost first (each wraps all that follow it):

    1. ``Observe``: request id, access log and request metrics. Outermost, so every answer
       carries the request id and is logged and counted, CORS refusals and 413s included.
    2. ``Cors`` (with ``HEROES_CORS_ORIGINS``): outside the body limit and the routes, so that
       413s and error answers carry the CORS headers a browser needs to read them.
    3. ``OpenWritesWarning`` (without API keys): warns once when a request arrives on a public
       address while writes need no key.
    4. ``BodySizeLimit``: innermost, right before routing: nothing reads a body it refuses.
    """
    settings = settings or get_settings()
    metrics = Metrics() if settings.metrics else None
    engine = make_engine(settings)
    write_engine = make_write_engine(settings, engine)
    read_engine, replica = None, None
    if settings.read_database_url:
        read_engine = make_engine(settings, settings.read_database_url)
        replica = Replica(
            make_sessionmaker(read_engine),
            fresh_wait=settings.read_fresh_wait,
            max_lag=settings.read_max_lag,
            on_lag=metrics.replica_lag.set if metrics else None,
        )
    shared = AppState(
        settings=settings,
        engine=engine,
        write_engine=write_engine,
        read_engine=read_engine,
        metrics=metrics,
        hero_service=HeroService(
            make_sessionmaker(engine),
            make_sessionmaker(write_engine),
            batching=settings.batching,
            max_batch=settings.batch_max_size,
            idempotency_ttl=settings.idempotency_ttl,
            replica=replica,
            batch_observer=metrics.batch_observer if metrics else None,
        ),
    )
    middleware = [
        Middleware(Observe, metrics=metrics, access_log=settings.access_log),
        *([Middleware(Cors, origins=settings.cors_origins)] if settings.cors_origins else []),
        *([] if settings.api_keys else [Middleware(OpenWritesWarning)]),
        Middleware(BodySizeLimit, max_body_bytes=settings.max_body_bytes),
    ]
    app = FastAPI(
        title="Heroes API",
        version=__version__,
        summary="The FastAPI SQL tutorial's heroes, async and migrated.",
        lifespan=lifespan,
        middleware=middleware,
        docs_url=None,  # docs.install serves /docs and /redoc without CDNs
        redoc_url=None,
    )
    app.state.shared = shared
    install_error_handlers(app, metrics)
    guard = key_guard(settings.api_keys, metrics.count_auth_failure if metrics else None)
    app.include_router(hero_writes, **guard)
    app.include_router(hero_reads, **(guard if settings.protect_reads else {}))
    app.include_router(health.router)
    docs.install(app)
    if metrics is not None:
        metrics.watch_pool(engine, "main")
        if write_engine is not engine:
            metrics.watch_pool(write_engine, "writer")
        if read_engine is not None:
            metrics.watch_pool(read_engine, "replica")
        app.include_router(metrics_router(metrics))
    return app
