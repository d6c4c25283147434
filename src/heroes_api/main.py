"""The application factory, and ``app`` for ``uvicorn heroes_api.main:app``."""

import gc
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from heroes_api import __version__, docs, health, metrics
from heroes_api.config import Settings, get_settings
from heroes_api.db import make_engine, make_sessionmaker, make_write_engine, schema_problem
from heroes_api.errors import install_error_handlers
from heroes_api.heroes import router as heroes
from heroes_api.heroes.store import HeroStore
from heroes_api.limits import BodySizeLimit
from heroes_api.metrics import Metrics
from heroes_api.observe import Observe
from heroes_api.security import (
    Cors,
    OpenWritesWarning,
    command_line_host,
    key_guard,
    warn_if_public,
)


class SchemaNotMigrated(RuntimeError):
    """The database is not at the revision this code needs; the service refuses to start."""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    try:
        if problem := await schema_problem(app.state.engine):
            raise SchemaNotMigrated(f"heroes_api cannot start: {problem}")
        if app.state.listen_host and not app.state.settings.api_keys:
            warn_if_public(app.state.listen_host)
        yield
    finally:
        await app.state.heroes.close()
        await app.state.engine.dispose()
        await app.state.write_engine.dispose()
        if app.state.metrics is not None:
            app.state.metrics.process_exited()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="Heroes API",
        version=__version__,
        summary="The FastAPI SQL tutorial's heroes, async and migrated.",
        lifespan=lifespan,
        docs_url=None,  # docs.install serves /docs and /redoc without CDNs
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = Metrics() if settings.metrics else None
    app.state.engine = make_engine(settings)
    app.state.sessionmaker = make_sessionmaker(app.state.engine)
    app.state.write_engine = make_write_engine(settings, app.state.engine)
    app.state.write_sessionmaker = make_sessionmaker(app.state.write_engine)
    app.state.heroes = HeroStore(
        app.state.sessionmaker,
        app.state.write_sessionmaker,
        batching=settings.batching,
        max_batch=settings.batch_max_size,
        batch_observer=app.state.metrics and app.state.metrics.batch_observer,
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_body_bytes=settings.max_body_bytes)
    app.state.listen_host = command_line_host(sys.argv, os.environ)
    if not settings.api_keys and app.state.listen_host is None:
        app.add_middleware(OpenWritesWarning)
    if settings.cors_origins:  # outside the rest: errors and 413s carry the CORS headers too
        app.add_middleware(Cors, origins=settings.cors_origins)
    guard = key_guard(settings.api_keys)
    app.include_router(heroes.writes, **guard)
    app.include_router(heroes.reads, **(guard if settings.protect_reads else {}))
    # Added last, so it runs first: every response, a 413 included, carries the request id.
    app.add_middleware(Observe, metrics=app.state.metrics, access_log=settings.access_log)
    app.include_router(health.router)
    docs.install(app)
    if app.state.metrics is not None:
        app.state.metrics.watch_pool(app.state.engine, "main")
        if app.state.write_engine is not app.state.engine:
            app.state.metrics.watch_pool(app.state.write_engine, "writer")
        app.include_router(metrics.router)
    return app


app = create_app()
# The served process's startup objects (modules, routes, models: ~100,000) live as long as it
# does. Moving them out of the cyclic collector's reach keeps its full collections from pausing
# every request in flight (measured ~110 ms each under load, the p99 spikes).
gc.freeze()
