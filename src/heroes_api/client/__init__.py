"""An async client for the heroes service: ``async with HeroesClient(url) as heroes: ...``.

Needs only httpx and pydantic: nothing here imports the service (FastAPI, SQLAlchemy, the
database drivers) or another heroes_api module.
"""

from heroes_api.client.answers import Hero
from heroes_api.client.errors import (
    Conflict,
    HeroesError,
    NotFound,
    PreconditionFailed,
    RateLimited,
    Unauthorized,
    Unavailable,
    UnexpectedResponse,
    ValidationFailed,
)
from heroes_api.client.heroes import HeroChanges, HeroesClient

__all__ = [
    "Conflict",
    "Hero",
    "HeroChanges",
    "HeroesClient",
    "HeroesError",
    "NotFound",
    "PreconditionFailed",
    "RateLimited",
    "Unauthorized",
    "Unavailable",
    "UnexpectedResponse",
    "ValidationFailed",
]
