"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
${imports if imports else ""}

revision: str = ${repr(up_revision)}
down_revision: str | None = ${repr(down_revision)}
branch_labels: str | Sequence[str] | None = ${repr(branch_labels)}
depends_on: str | Sequence[str] | None = ${repr(depends_on)}
# Rolling deploys (README, "Deploying a schema change"): can instances running code written for
# the previous revision keep serving on this schema? True only for expand-only changes (new
# tables, nullable or defaulted columns, indexes). Say so, or the migration refuses to run:
# backward_compatible = True
# backward_compatible = False  # optionally: compatible_with_code_from = "<revision>"


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
