"""drop columns nothing ever wrote (domains.stats, people.images_by_source); new galleries
rows default to `candidate` in the database as in the model

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 23:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("domains", schema=None) as batch_op:
        batch_op.drop_column("stats")
    with op.batch_alter_table("people", schema=None) as batch_op:
        batch_op.drop_column("images_by_source")
    # 0003 back-filled the versions built before it as `published`; rows written since then
    # always carry their status, and a row added by hand now starts as a candidate too.
    with op.batch_alter_table("galleries", schema=None) as batch_op:
        batch_op.alter_column("status", existing_type=sa.String(20), server_default="candidate")


def downgrade() -> None:
    with op.batch_alter_table("galleries", schema=None) as batch_op:
        batch_op.alter_column("status", existing_type=sa.String(20), server_default="published")
    with op.batch_alter_table("people", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("images_by_source", sa.JSON(), nullable=False, server_default="{}")
        )
    with op.batch_alter_table("domains", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stats", sa.JSON(), nullable=False, server_default="{}"))
