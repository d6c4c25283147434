"""Settings, read from the environment (prefix ``HEROES_``) and ``.env`` only when asked for.

The standard library and pydantic only: Alembic, ``adopt`` and the logging setup read settings
without loading the web stack or a database driver.
"""

import hashlib
import os
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Drivers users name in URLs from tutorials and hosting platforms, mapped to the async ones.
_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+pysqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
    "postgresql+psycopg": "postgresql+asyncpg",
}
_URL = re.compile(r"(?P<driver>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)", re.DOTALL)
SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")


def to_async_url(url: str) -> str:
    """Map ``sqlite://`` / ``postgres(ql)://`` URLs to the async drivers this service runs on.

    libpq's ``sslmode`` query option (common in platform-provided URLs) becomes asyncpg's ``ssl``.
    """
    if (parsed := _URL.fullmatch(url)) is None:
        raise ValueError(f"not a database URL: {url!r}")
    driver = _ASYNC_DRIVERS.get(parsed["driver"], parsed["driver"])
    base, question, query = parsed["rest"].partition("?")
    if driver == "postgresql+asyncpg" and question:
        query = "&".join(re.sub(r"^sslmode=", "ssl=", option) for option in query.split("&"))
    return f"{driver}://{base}{question}{query}"


KeyDigests = frozenset[bytes]
MIN_KEY_LENGTH = 16
# RFC 6750's b64token: everything a Bearer credential can carry.
BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_ORIGIN = re.compile(r"https?://[^/?#\s]+")


def key_digest(key: str) -> bytes:
    """What is kept of an API key: its SHA-256 digest."""
    return hashlib.sha256(key.encode()).digest()


def key_digests(keys: Iterable[str], source: str) -> KeyDigests:
    """Digests of the keys, or a ValueError that says which key is unusable (never the key).

    A blank ``source`` as a whole means no key: ``HEROES_API_KEYS=`` is how compose files unset.
    """
    keys = [key.strip() for key in keys]
    if keys == [""]:
        return frozenset()
    for number, key in enumerate(keys, 1):
        if not key:
            raise ValueError(f"{source}: key {number} is empty")
        if len(key) < MIN_KEY_LENGTH:
            raise ValueError(f"{source}: key {number} is shorter than {MIN_KEY_LENGTH} characters")
        if not BEARER_TOKEN.fullmatch(key):
            raise ValueError(
                f"{source}: key {number} has a character a Bearer token cannot carry "
                "(letters, digits and -._~+/ only, then = padding)"
            )
    return frozenset(map(key_digest, keys))


def read_key_file(path: Path) -> KeyDigests:
    """Digests of a key file's keys: one a line, blank lines skipped (container secrets)."""
    try:
        text = path.read_bytes().decode(errors="replace")
    except OSError as exc:
        raise ValueError(f"HEROES_API_KEYS_FILE cannot be read: {path}: {exc.strerror}") from None
    keys = [line for line in text.splitlines() if line.strip()]
    if not keys:
        raise ValueError(f"HEROES_API_KEYS_FILE holds no key: {path}")
    return key_digests(keys, "HEROES_API_KEYS_FILE")


def cors_origins(text: str) -> tuple[str, ...]:
    """The origins in a comma-separated list; one that no browser can send is a ValueError."""
    origins = tuple(origin.strip().lower() for origin in text.split(",") if origin.strip())
    for origin in origins:
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            raise ValueError(
                f"HEROES_CORS_ORIGINS: {origin!r} is not an origin (scheme://host[:port], no path)"
            )
    return origins


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
    # multi-host URL. Raise the statement timeout for slow statements (batches near the largest
    # HEROES_BATCH_MAX_SIZE on a busy server can take seconds; the default 256 takes milliseconds).
    db_command_timeout: float = Field(default=3.0, gt=0)
    db_connect_timeout: float = Field(default=2.0, gt=0)
    # false: no prepared statements are cached or reused (asyncpg's statement cache and
    # SQLAlchemy's asyncpg one off, each statement prepared under a unique name), so the service
    # runs behind PgBouncer in transaction mode (README, "Scaling out on PostgreSQL"). Ignored on
    # SQLite. true: statements are prepared once per connection and reused (faster).
    db_prepared_statements: bool = True
    # A PostgreSQL replica (or a multi-host list of replicas) for point reads and pages; writes,
    # the reads inside a write batch and /health stay on HEROES_DATABASE_URL. Unset: one database.
    read_database_url: str | None = None
    # With a replica: seconds a read carrying a Consistency-Token waits for the replica to replay
    # past it before reading from the primary instead.
    read_fresh_wait: float = Field(default=0.05, ge=0)
    # With a replica: a token-less read goes to the primary when the replica lags more than this
    # many seconds behind it.
    read_max_lag: float = Field(default=1.0, gt=0)
    # Share database round trips between concurrent requests (heroes_api.batching): point reads
    # become one SELECT per batch, writes one transaction per batch. false: one statement each.
    batching: bool = True
    # Most requests in one batch. 4096 keeps a batch of creates (3 values a row) and a batch of
    # ids within both SQLite's (32766) and PostgreSQL's (32767) bind-parameter limits.
    batch_max_size: int = Field(default=256, ge=1, le=BATCH_MAX_SIZE_LIMIT)
    # Seconds a write's stored answer (Idempotency-Key) is kept: a repeat within it is answered
    # from it; after it, the key counts as never used. Expired keys are purged as writes go on.
    idempotency_ttl: float = Field(default=24 * 3600.0, gt=0)
    # Largest request body accepted; larger ones get 413 before they are read.
    max_body_bytes: int = Field(default=1024 * 1024, ge=0)
    # Log lines as plain text or as one JSON object each (heroes_api.logs).
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
        url = to_async_url(url)
        if not url.startswith(tuple(f"{driver}://" for driver in SUPPORTED_DRIVERS)):
            scheme = url.partition("://")[0]
            raise ValueError(
                f"{scheme!r} is not supported: heroes_api runs on SQLite "
                "(sqlite:///path/to/heroes.db) or PostgreSQL (postgresql://user@host/db)"
            )
        return url

    @field_validator("read_database_url")
    @classmethod
    def _replica(cls, url: str | None) -> str | None:
        if not url:
            return None
        url = to_async_url(url)
        if not url.startswith("postgresql+asyncpg://"):
            raise ValueError("must be a PostgreSQL URL: read replicas are PostgreSQL's")
        return url

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
        if self.read_database_url and self.is_sqlite:
            raise ValueError("HEROES_READ_DATABASE_URL needs a PostgreSQL HEROES_DATABASE_URL")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


# Settings also come from this file in the working directory; real environment variables win.
# HEROES_ENV_FILE names another file, or none when empty (the test suite sets it empty).
DEFAULT_ENV_FILE = ".env"


class SettingsError(ValueError):
    """Settings that cannot be used: one line per problem, each naming the variable as the user
    wrote it and where it came from."""


def _env_file() -> Path | None:
    name = os.environ.get("HEROES_ENV_FILE", DEFAULT_ENV_FILE)
    return Path(name) if name else None


def _source(field: str, env_file: Path | None) -> str:
    """``HEROES_X (from the environment)`` or ``... (from .env)``, spelled as the user did
    (pydantic-settings matches names case-insensitively)."""
    wanted = f"HEROES_{field}".upper()
    for name in os.environ:
        if name.upper() == wanted:
            return f"{name} (from the environment)"
    if env_file is not None and env_file.is_file():
        for line in env_file.read_text(errors="replace").splitlines():
            name = line.strip().removeprefix("export ").partition("=")[0].strip()
            if name.upper() == wanted:
                return f"{name} (from {env_file})"
    return wanted


def _problems(error: ValidationError, env_file: Path | None) -> list[str]:
    problems = []
    for detail in error.errors():
        message = detail["msg"].removeprefix("Value error, ")
        if not detail["loc"]:  # a rule between settings: its message names them
            problems.append(message)
            continue
        name = _source(str(detail["loc"][0]), env_file)
        message = message.removeprefix(f"{name.partition(' ')[0]}: ")  # named once is enough
        problems.append(f"{name}: {message}")
    return problems


def load_settings() -> Settings:
    """The environment, then ``.env``, then the defaults; a ``SettingsError`` saying what to fix
    when a value cannot be used."""
    env_file = _env_file()
    try:
        return Settings(_env_file=env_file)
    except ValidationError as error:
        raise SettingsError("\n".join(_problems(error, env_file))) from None


@lru_cache
def get_settings() -> Settings:
    """The served settings (``load_settings``, once). Code that builds ``Settings(...)`` itself
    (tests, tools) reads only the environment and its arguments."""
    return load_settings()
