"""the face model is a domain setting (domains.face_model): domains that exist keep `dlib`, the
model their galleries were built with; new domains start with `sface`

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN and UPDATE: no table copy, which SQLite would refuse while other tables'
    # rows point at `domains` (foreign keys are on).
    op.add_column(
        "domains",
        sa.Column("face_model", sa.String(40), nullable=False, server_default="sface"),
    )
    op.execute("UPDATE domains SET face_model = 'dlib'")


def downgrade() -> None:
    op.drop_column("domains", "face_model")  # ALTER TABLE ... DROP COLUMN (SQLite 3.35+)
