"""Which database schemas this code runs on: its own revision, or a later one whose migrations
declare that code written for this revision still works (rolling deploys, docs/operations.md,
"Deploying a schema change").

Old code cannot read future migration files, so the answer is kept in the database. Every
migration module declares ``backward_compatible: bool`` (and, when False, may name the oldest
revision whose code still works on it, ``compatible_with_code_from``). ``alembic/env.py`` records
each step in the ``schema_compatibility`` table, in the migration's own transaction:

    revision | down_revision | oldest_code_revision

``oldest_code_revision`` is the oldest revision whose code may run on a database at
``revision``: for a backward-compatible revision, whatever its down revision allowed; otherwise
``compatible_with_code_from``, or the revision itself. An instance accepts the database when it
is at the instance's own revision, or when the instance's revision lies on the recorded chain
from the database's revision down to that revision's ``oldest_code_revision``.
"""

from collections.abc import Collection, Mapping
from typing import Any

from alembic.runtime.migration import MigrationContext, MigrationInfo
from alembic.script.revision import Revision
from sqlalchemy import Column, MetaData, String, Table, delete, func, insert, literal, select
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateTable

# The Alembic revision this code is written for. A test keeps it equal to the newest file in
# alembic/versions, so a new migration cannot be forgotten here.
SCHEMA_REVISION = "0004"

TABLE_NAME = "schema_compatibility"
COMPATIBILITY = Table(
    TABLE_NAME,
    MetaData(),
    Column("revision", String(64), primary_key=True),
    Column("down_revision", String(64), nullable=True),
    Column("oldest_code_revision", String(64), nullable=False),
)
_MAX_CHAIN = 10_000  # a loop in the recorded chain (hand-edited rows) cannot hang a health check


class CompatibilityUndeclared(RuntimeError):
    """A migration does not say whether older code keeps working on it."""


def declared_oldest_code(module: Any, revision: str) -> str | None:
    """The oldest code revision a migration module declares it serves: None means "whatever its
    down revision served" (``backward_compatible = True``)."""
    declared = getattr(module, "backward_compatible", None)
    if not isinstance(declared, bool):
        raise CompatibilityUndeclared(
            f"migration {revision} must declare `backward_compatible = True` (expand-only: code "
            "written for the previous revision keeps working) or `= False` (docs/operations.md, "
            "'Deploying a schema change')"
        )
    if declared:
        return None
    oldest = getattr(module, "compatible_with_code_from", revision)
    if not isinstance(oldest, str):
        raise CompatibilityUndeclared(f"migration {revision}: compatible_with_code_from is a str")
    return oldest


def record_step(
    ctx: MigrationContext, step: MigrationInfo, heads: Collection[Any], run_args: Mapping[str, Any]
) -> None:
    """Alembic's ``on_version_apply`` hook (``alembic/env.py``): keep the table in step with
    ``alembic_version``. Plain SQL through the migration context, so offline ``--sql`` output
    carries it too."""
    ctx.impl.execute(CreateTable(COMPATIBILITY, if_not_exists=True))
    for revision in step.up_revisions:
        if not isinstance(revision, Revision):
            continue
        ctx.impl.execute(delete(COMPATIBILITY).where(COMPATIBILITY.c.revision == revision.revision))
        if not step.is_upgrade:
            continue
        down = revision.down_revision if isinstance(revision.down_revision, str) else None
        oldest = declared_oldest_code(getattr(revision, "module", None), revision.revision)
        if oldest is None and down is None:
            oldest = revision.revision
        # Inherited from the down revision's row, in SQL (offline output has no reads); a
        # database migrated before this table existed has none: then the down revision itself.
        inherited = (
            select(COMPATIBILITY.c.oldest_code_revision)
            .where(COMPATIBILITY.c.revision == down)
            .scalar_subquery()
        )
        value: Any = literal(oldest) if oldest is not None else func.coalesce(inherited, down)
        ctx.impl.execute(
            insert(COMPATIBILITY).values(
                revision=revision.revision, down_revision=down, oldest_code_revision=value
            )
        )


def include_name(name: str | None, type_: str, _parents: Any) -> bool:
    """Autogenerate and the drift check skip the table: Alembic's bookkeeping, like
    ``alembic_version``, not a model."""
    return not (type_ == "table" and name == TABLE_NAME)


def read_chain(connection: Connection) -> dict[str, tuple[str | None, str]]:
    """The recorded revisions: revision -> (down_revision, oldest_code_revision); empty when the
    table does not exist (a database migrated before rolling deploys)."""
    if not connection.dialect.has_table(connection, TABLE_NAME):
        return {}
    rows = connection.execute(select(*COMPATIBILITY.c))
    return {revision: (down, oldest) for revision, down, oldest in rows}


def compatibility_problem(
    chain: dict[str, tuple[str | None, str]], database: str, own: str = SCHEMA_REVISION
) -> str | None:
    """Why code written for ``own`` must not run on a database at ``database``, or None."""
    if database == own:
        return None
    newest_first = [database]
    while len(newest_first) < _MAX_CHAIN and (row := chain.get(newest_first[-1])):
        if row[0] is None:
            break
        newest_first.append(row[0])
    if own not in newest_first:
        return (
            f"database schema is at revision {database!r}, which is neither {own!r} (the revision "
            f"this code needs) nor a later one recorded as compatible with it: run `alembic "
            "upgrade head` with this release's migrations (see docs/operations.md, 'Deploying "
            "a schema change')"
        )
    oldest = chain[database][1]
    if oldest in newest_first[: newest_first.index(own)]:
        return (
            f"database schema is at revision {database!r}, which serves code written for "
            f"{oldest!r} or later, not this code ({own!r}): deploy a newer release"
        )
    return None
