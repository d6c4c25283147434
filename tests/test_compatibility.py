"""Rolling deploys: an instance serves its own schema revision or a later one recorded as
compatible with it, and refuses older, unknown and incompatible ones. Every migration declares."""

import asyncio
import types

import httpx
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from asgi_lifespan import LifespanManager
from sqlalchemy import text
from sqlalchemy.engine import Connection

from heroes_api.adopt import inspect_database
from heroes_api.app import SchemaNotMigrated
from heroes_api.compatibility import (
    SCHEMA_REVISION,
    CompatibilityUndeclared,
    compatibility_problem,
    declared_oldest_code,
    read_chain,
)
from tests.databases import alembic_config
from tests.helpers import MakeApp, MakeClient, asgi_client, make_hero

# revision -> (down_revision, oldest_code_revision): A <- B (expand) <- C (contract serving code
# from B on) <- D (expand) <- E (breaks everything before it).
CHAIN: dict[str, tuple[str | None, str]] = {
    "A": (None, "A"),
    "B": ("A", "A"),
    "C": ("B", "B"),
    "D": ("C", "B"),
    "E": ("D", "E"),
}


@pytest.mark.parametrize(
    ("database", "own", "accepted"),
    [
        ("A", "A", True),
        ("B", "A", True),  # expand-only: old code keeps serving
        ("C", "A", False),  # contract: code for A still used what C dropped
        ("C", "B", True),
        ("D", "B", True),
        ("D", "C", True),
        ("D", "A", False),
        ("E", "D", False),  # marks itself incompatible
        ("E", "E", True),
        ("A", "B", False),  # older than the code
        ("Z", "A", False),  # unknown
        ("B", "Q", False),  # code from another history
    ],
)
def test_the_compatibility_rule(database: str, own: str, accepted: bool) -> None:
    problem = compatibility_problem(CHAIN, database, own)
    assert (problem is None) is accepted, problem


def test_a_loop_in_the_recorded_chain_is_refused_not_hung() -> None:
    chain: dict[str, tuple[str | None, str]] = {"X": ("Y", "Y"), "Y": ("X", "X")}
    assert compatibility_problem(chain, "X", "A") is not None


def test_every_migration_declares_whether_it_is_backward_compatible() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    for revision in script.walk_revisions():
        assert isinstance(getattr(revision.module, "backward_compatible", None), bool), (
            f"{revision.path} must set backward_compatible = True or False"
        )


def test_an_undeclared_migration_refuses_to_run() -> None:
    with pytest.raises(CompatibilityUndeclared, match="backward_compatible"):
        declared_oldest_code(types.ModuleType("m"), "0009")
    broken = types.ModuleType("m")
    broken.backward_compatible = False  # type: ignore[attr-defined]
    broken.compatible_with_code_from = 7  # type: ignore[attr-defined]
    with pytest.raises(CompatibilityUndeclared, match="compatible_with_code_from"):
        declared_oldest_code(broken, "0009")
    broken.compatible_with_code_from = "0007"  # type: ignore[attr-defined]
    assert declared_oldest_code(broken, "0009") == "0007"


def test_migrations_record_their_chain_and_downgrades_remove_it(empty_database_url: str) -> None:
    url = empty_database_url
    command.upgrade(alembic_config(url), "head")
    chain = inspect_database(url, read_chain)
    script = ScriptDirectory.from_config(alembic_config(url))
    assert set(chain) == {revision.revision for revision in script.walk_revisions()}
    assert chain["0001"] == (None, "0001")
    command.downgrade(alembic_config(url), "base")
    assert inspect_database(url, read_chain) == {}


def move_ahead(url: str, revision: str, oldest_code: str) -> None:
    """Pretend a later release migrated the database to ``revision``."""

    def run(connection: Connection) -> None:
        connection.execute(
            text(
                "INSERT INTO schema_compatibility (revision, down_revision, oldest_code_revision) "
                "VALUES (:r, :d, :o)"
            ),
            {"r": revision, "d": SCHEMA_REVISION, "o": oldest_code},
        )
        connection.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
        connection.commit()

    inspect_database(url, run)


async def test_a_later_compatible_revision_keeps_the_instance_serving(
    database_url: str, client: httpx.AsyncClient, make_client: MakeClient
) -> None:
    hero = await make_hero(client)
    await asyncio.to_thread(move_ahead, database_url, "9999_later", SCHEMA_REVISION)
    assert (await client.get("/health")).json() == {"status": "ok"}
    assert (await client.get(f"/heroes/{hero['id']}")).json() == hero
    other = await make_client()  # and a new instance of this code starts
    assert (await other.get("/health")).status_code == 200


async def test_a_later_incompatible_revision_is_refused(
    database_url: str, make_app: MakeApp
) -> None:
    await asyncio.to_thread(move_ahead, database_url, "9999_breaking", "9999_breaking")
    async with asgi_client(make_app()) as client:
        health = await client.get("/health")
    assert health.status_code == 503
    assert "serves code written for '9999_breaking' or later" in health.json()["detail"]
    with pytest.raises(SchemaNotMigrated, match="deploy a newer release"):
        async with LifespanManager(make_app()):
            pass  # pragma: no cover


async def test_an_unknown_revision_is_refused(database_url: str, make_app: MakeApp) -> None:
    def run(connection: Connection) -> None:
        connection.execute(text("UPDATE alembic_version SET version_num = 'from_elsewhere'"))
        connection.commit()

    await asyncio.to_thread(inspect_database, database_url, run)
    with pytest.raises(SchemaNotMigrated, match=f"neither {SCHEMA_REVISION!r}"):
        async with LifespanManager(make_app()):
            pass  # pragma: no cover
