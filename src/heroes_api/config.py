"""Settings, read from the environment (prefix ``HEROES_``) only when asked for."""

from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# Drivers users name in URLs from tutorials and hosting platforms, mapped to the async ones.
_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+pysqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
    "postgresql+psycopg": "postgresql+asyncpg",
}


def to_async_url(url: str) -> str:
    """Map ``sqlite://`` / ``postgres(ql)://`` URLs to the async drivers this service runs on.

    libpq's ``sslmode`` query option (common in platform-provided URLs) becomes asyncpg's ``ssl``.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(f"not a database URL: {url!r}") from None
    parsed = parsed.set(drivername=_ASYNC_DRIVERS.get(parsed.drivername, parsed.drivername))
    if parsed.drivername == "postgresql+asyncpg" and "sslmode" in parsed.query:
        parsed = parsed.update_query_dict({"ssl": parsed.query["sslmode"]})
        parsed = parsed.difference_update_query(["sslmode"])
    return parsed.render_as_string(hide_password=False)


BATCH_MAX_SIZE_LIMIT = 4096


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HEROES_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///./heroes.db"
    # Seconds a SQLite connection waits for a competing writer before giving up.
    sqlite_busy_timeout: float = Field(default=30.0, gt=0)
    # SQLite reader connections per process (writes use one more, their own); requests queue for
    # them up to db_pool_timeout.
    sqlite_pool_size: int = Field(default=1, ge=1)
    # Memory-map up to this many MiB of the SQLite file (PRAGMA mmap_size). Faster scattered
    # reads (age ranges on a large table: +27%), but RSS then counts the mapped file pages, and
    # an I/O error on the file becomes a SIGBUS instead of an error. 0 (the default): off.
    sqlite_mmap_mb: int = Field(default=0, ge=0)
    # PostgreSQL connection pool.
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_pool_timeout: float = Field(default=10.0, gt=0)
    db_pool_recycle: int = Field(default=1800, ge=-1)
    db_pool_pre_ping: bool = True
    # With pre-ping on, only a connection idle for longer than this many seconds is pinged before
    # use (a dead one is replaced unseen); busy connections skip the round trip. 0 pings on every
    # checkout. A connection that died within the window fails its batch with a 503 and the pool
    # replaces every connection older than that failure.
    db_pool_ping_after: float = Field(default=1.0, ge=0)
    # Seconds a single PostgreSQL statement or connection attempt may take before the request fails.
    db_command_timeout: float = Field(default=10.0, gt=0)
    db_connect_timeout: float = Field(default=5.0, gt=0)
    # Share database round trips between concurrent requests (heroes_api.batching): point reads
    # become one SELECT per batch, writes one transaction per batch. false: one statement each.
    batching: bool = True
    # Most requests in one batch. 4096 keeps a batch of creates (3 values a row) and a batch of
    # ids within both SQLite's (32766) and PostgreSQL's (32767) bind-parameter limits.
    batch_max_size: int = Field(default=256, ge=1, le=BATCH_MAX_SIZE_LIMIT)
    # Largest request body accepted; larger ones get 413 before they are read.
    max_body_bytes: int = Field(default=1024 * 1024, ge=0)

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, url: str) -> str:
        return to_async_url(url)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
