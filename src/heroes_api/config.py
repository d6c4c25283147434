"""Settings, read from the environment (prefix ``HEROES_``) and ``.env`` only when asked for."""

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from heroes_api.security import KeyDigests, cors_origins, key_digests, read_key_file

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
    # hide_input_in_errors: a refused setting is never echoed, since it may be an API key.
    model_config = SettingsConfigDict(
        env_prefix="HEROES_", extra="ignore", hide_input_in_errors=True
    )

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
    # Seconds a single PostgreSQL statement, or a connection attempt (also a pooled connection's
    # ping), may take before the request fails with 503. Against a database that hangs (accepts
    # but never answers) these bound the wait: a request on a connection in use waits the
    # statement timeout, on a pinged one the ping and a reconnect (2 x connect), on a new one the
    # connect timeout; 3 s and 2 s make the first 503 come within 4 s, the next in 2 s (were 10 s
    # and 5 s: 12 s, then 5 s each). One connect timeout covers the whole host list of a
    # multi-host URL. Raise the statement timeout for slow statements (this service has none).
    db_command_timeout: float = Field(default=3.0, gt=0)
    db_connect_timeout: float = Field(default=2.0, gt=0)
    # false: no prepared statements are cached or reused (asyncpg's statement cache and
    # SQLAlchemy's asyncpg one off, each statement prepared under a unique name), so the service
    # runs behind PgBouncer in transaction mode (README, "Scaling out on PostgreSQL"). Ignored on
    # SQLite. true: statements are prepared once per connection and reused (faster).
    db_prepared_statements: bool = True
    # Share database round trips between concurrent requests (heroes_api.batching): point reads
    # become one SELECT per batch, writes one transaction per batch. false: one statement each.
    batching: bool = True
    # Most requests in one batch. 4096 keeps a batch of creates (3 values a row) and a batch of
    # ids within both SQLite's (32766) and PostgreSQL's (32767) bind-parameter limits.
    batch_max_size: int = Field(default=256, ge=1, le=BATCH_MAX_SIZE_LIMIT)
    # Largest request body accepted; larger ones get 413 before they are read.
    max_body_bytes: int = Field(default=1024 * 1024, ge=0)
    # Log lines as plain text or as one JSON object each (heroes_api.logs, logging.json).
    log_format: Literal["text", "json"] = "text"
    # One access-log line per request (method, route template, status, duration, request id).
    access_log: bool = True
    # GET /metrics in Prometheus text format, and the counters behind it.
    metrics: bool = True

    # API keys (README, "Security"), comma-separated, and a file of them, one a line. With any
    # key set, writes need `Authorization: Bearer <key>`; reads too with protect_reads. Only
    # SHA-256 digests of the keys are kept, here and anywhere else.
    api_keys: Annotated[KeyDigests, NoDecode] = frozenset()
    api_keys_file: Path | None = None
    protect_reads: bool = False
    # Browser origins (scheme://host[:port], comma-separated; "*" for any) allowed to call the
    # API through CORS. Empty: no CORS, as in the tutorial.
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, url: str) -> str:
        return to_async_url(url)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _digest_keys(cls, keys: object) -> object:
        return key_digests(keys.split(","), "HEROES_API_KEYS") if isinstance(keys, str) else keys

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, origins: object) -> object:
        return cors_origins(origins) if isinstance(origins, str) else origins

    @model_validator(mode="after")
    def _keys_from_file(self) -> Self:
        if self.api_keys_file is not None:
            self.api_keys |= read_key_file(self.api_keys_file)
        if self.protect_reads and not self.api_keys:
            raise ValueError("HEROES_PROTECT_READS needs HEROES_API_KEYS or HEROES_API_KEYS_FILE")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


# Settings also come from this file in the working directory; real environment variables win.
# HEROES_ENV_FILE names another file, or none when empty (the test suite sets it empty).
DEFAULT_ENV_FILE = ".env"


@lru_cache
def get_settings() -> Settings:
    """The served settings: the environment, then ``.env``, then the defaults. Code that builds
    ``Settings(...)`` itself (tests, tools) reads only the environment and its arguments."""
    env_file = os.environ.get("HEROES_ENV_FILE", DEFAULT_ENV_FILE) or None
    return Settings(_env_file=env_file)
