"""a checksum for every gallery batch file; a rollback pins the version it serves

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 22:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("galleries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("file_checksums", sa.JSON(), nullable=True))
    with op.batch_alter_table("domains", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pinned_version", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("pinned_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("domains", schema=None) as batch_op:
        batch_op.drop_column("pinned_at")
        batch_op.drop_column("pinned_version")
    with op.batch_alter_table("galleries", schema=None) as batch_op:
        batch_op.drop_column("file_checksums")
