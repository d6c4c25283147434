"""hero.version: 1 for every hero, one more on every change (ETags, If-Match)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 00:00:00

Expand-only: code written for 0001 never names the column, and the constant default fills it on
its inserts. On PostgreSQL 11+ ``ADD COLUMN ... NOT NULL DEFAULT 1`` (a constant default) only
changes the catalog: no table rewrite, the ACCESS EXCLUSIVE lock is held for milliseconds
(tests/test_migrations.py checks that the table's relfilenode does not change). Waiting for that
lock behind a long transaction would queue every query on ``hero`` behind the migration, so it
gives up after ``lock_timeout`` instead: rerun it. On SQLite ``ADD COLUMN`` edits the schema in
place (no batch copy of the table).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# Rolling deploys: instances of 0001's code keep serving (they never read or write the column).
backward_compatible = True

LOCK_TIMEOUT = "5s"


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    op.add_column(
        "hero", sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False)
    )


def downgrade() -> None:
    with op.batch_alter_table("hero", schema=None) as batch_op:
        batch_op.drop_column("version")
