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
