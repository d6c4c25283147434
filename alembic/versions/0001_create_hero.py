"""create the hero table

Revision ID: 0001
Revises:
Create Date: 2026-11-22 00:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import context, op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# Rolling deploys (docs/operations.md, "Deploying a schema change"): no older code to serve.
backward_compatible = True

ADOPT_HINT = (
    "This database already has a 'hero' table that Alembic does not manage (for example the "
    "FastAPI tutorial's database.db, built without Alembic). Nothing was changed. To keep its "
    "rows, "
    "adopt it instead: `python -m heroes_api.adopt` checks that its schema matches this revision, "
    "marks it as migrated, and then `alembic upgrade head` works (see docs/operations.md, "
    "'Coming from the tutorial')."
)


def upgrade() -> None:
    if not context.is_offline_mode() and sa.inspect(op.get_bind()).has_table("hero"):
        from alembic.util import CommandError

        raise CommandError(ADOPT_HINT)
    # Columns in the order the tutorial's SQLModel table creation produces them.
    op.create_table(
        "hero",
        sa.Column("name", sqlmodel.AutoString(), nullable=False),
        sa.Column("age", sa.Integer(), nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("secret_name", sqlmodel.AutoString(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("hero", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hero_age"), ["age"], unique=False)
        batch_op.create_index(batch_op.f("ix_hero_name"), ["name"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("hero", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hero_name"))
        batch_op.drop_index(batch_op.f("ix_hero_age"))
    op.drop_table("hero")
