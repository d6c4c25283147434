"""Table models: Alembic's autogenerate and drift check import this one module."""

from sqlalchemy import Index, text
from sqlmodel import Field

from heroes_api.heroes.schemas import HeroBase


class Hero(HeroBase, table=True):
    # ix_hero_age holds each hero's name too (migration 0003): an age filter is answered from
    # the index alone, without a table lookup per hero.
    __table_args__ = (Index("ix_hero_age", "age", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    secret_name: str
    # 1 for a new hero, one more on every change: the ETag's validator (migration 0002). The
    # database default also covers inserts by code that predates the column (rolling deploys).
    version: int = Field(default=1, sa_column_kwargs={"server_default": text("1")})
