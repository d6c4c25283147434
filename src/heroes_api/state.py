"""What one app shares between its requests, in one typed, frozen object.

``create_app`` builds it and keeps it on ``app.state``; code reads it through
``app_state(request.app)`` (or a dependency built on it), never through ``app.state`` attributes.
"""

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from heroes_api.config import Settings
from heroes_api.heroes.service import HeroService
from heroes_api.metrics import Metrics


@dataclass(frozen=True, slots=True)
class AppState:
    settings: Settings
    # Reads (and, on PostgreSQL, writes); on SQLite writes have an engine of their own.
    engine: AsyncEngine
    write_engine: AsyncEngine
    # With HEROES_READ_DATABASE_URL: the replica's (point reads and pages).
    read_engine: AsyncEngine | None
    metrics: Metrics | None
    hero_service: HeroService


def app_state(app: Starlette) -> AppState:
    state: AppState = app.state.shared
    return state
