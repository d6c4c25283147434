"""Table models and their bases: Alembic's autogenerate and drift check import this one module.

The column widths live here with the columns they bound; ``heroes.schemas`` builds the request and
response models on ``HeroBase``.
"""

from sqlalchemy import Index, text
from sqlmodel import Field, SQLModel

# The widest integer every supported database stores in ``hero.id`` and ``hero.age``
# (PostgreSQL ``INTEGER`` is 32-bit; SQLite's is 64-bit), and the widest SQL ``OFFSET``.
INT32_MAX = 2**31 - 1
INT32_MIN = -(2**31)
INT64_MAX = 2**63 - 1
TEXT_MAX_LENGTH = 255


class HeroBase(SQLModel):
    name: str = Field(index=True)
    age: int | None = Field(default=None)  # indexed by Hero's ix_hero_age


class Hero(HeroBase, table=True):
    # ix_hero_age holds each hero's name too (migration 0003): an age filter is answered from
    # the index alone, without a table lookup per hero.
    __table_args__ = (Index("ix_hero_age", "age", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    secret_name: str
    # 1 for a new hero, one more on every change: the ETag's validator (migration 0002). The
    # database default also covers inserts by code that predates the column (rolling deploys).
    version: int = Field(default=1, sa_column_kwargs={"server_default": text("1")})


class IdempotencyKey(SQLModel, table=True):
    """The answer a keyed write got (``Idempotency-Key``), stored in the write's own transaction:
    a crash before COMMIT leaves neither, a crash after leaves both (migration 0004)."""

    __tablename__ = "idempotency_key"
    __table_args__ = (Index("ix_idempotency_key_created", "created"),)

    # Whose key: a digest of the API key that sent it, or "" when the service has no keys.
    scope: str = Field(primary_key=True, max_length=64)
    key: str = Field(primary_key=True, max_length=255)
    # SHA-256 of the request (method, route, hero id, validated body): a reuse must match it.
    fingerprint: str = Field(max_length=64)
    status: int
    body: bytes
    etag: str | None = Field(default=None, max_length=64)
    # Seconds since the epoch when the answer was stored; HEROES_IDEMPOTENCY_TTL counts from it.
    created: float
