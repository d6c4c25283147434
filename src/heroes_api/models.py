"""Table models: Alembic's autogenerate and drift check import this one module."""

from sqlmodel import Field

from heroes_api.heroes.schemas import HeroBase


class Hero(HeroBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    secret_name: str
