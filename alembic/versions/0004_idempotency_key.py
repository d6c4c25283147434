"""idempotency_key: the stored answers of writes sent with an Idempotency-Key

A keyed write stores its answer here in its own transaction, so a retry of it gets the answer
back instead of writing again. ``created`` is indexed for the purge of expired keys.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 03:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# Rolling deploys: a new table; code written for 0003 never touches it.
backward_compatible = True


def upgrade() -> None:
    op.create_table(
        "idempotency_key",
        sa.Column("scope", sqlmodel.AutoString(length=64), nullable=False),
        sa.Column("key", sqlmodel.AutoString(length=255), nullable=False),
        sa.Column("fingerprint", sqlmodel.AutoString(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("etag", sqlmodel.AutoString(length=64), nullable=True),
        sa.Column("created", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key"),
    )
    op.create_index("ix_idempotency_key_created", "idempotency_key", ["created"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_key_created", table_name="idempotency_key")
    op.drop_table("idempotency_key")
