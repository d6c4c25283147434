"""ix_hero_age covers name: age filters read the index alone

An age filter reads its matches from ix_hero_age and then, per hero, the table row for its name:
on a large table, one random lookup per hero. With the name in the index (``(age, name)``; SQLite
has no INCLUDE), SQLite answers from the index alone ("USING COVERING INDEX"). PostgreSQL picks
an index-only or a bitmap scan by cost.

PostgreSQL builds the new index CONCURRENTLY beside the old one (writes go on), drops the old
one CONCURRENTLY and takes its name. SQLite rebuilds it in place, in the migration's transaction.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 02:00:00

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# Rolling deploys: an index change; code written for 0002 runs unchanged, and faster.
backward_compatible = True


def _rebuild(columns: list[str]) -> None:
    if op.get_context().dialect.name == "postgresql":
        # Build the new index beside the old one without blocking writes, then swap names.
        with op.get_context().autocommit_block():
            op.create_index("ix_hero_age_new", "hero", columns, postgresql_concurrently=True)
            op.drop_index("ix_hero_age", table_name="hero", postgresql_concurrently=True)
            op.execute("ALTER INDEX ix_hero_age_new RENAME TO ix_hero_age")
    else:
        op.drop_index("ix_hero_age", table_name="hero")
        op.create_index("ix_hero_age", "hero", columns)


def upgrade() -> None:
    _rebuild(["age", "name"])


def downgrade() -> None:
    _rebuild(["age"])
