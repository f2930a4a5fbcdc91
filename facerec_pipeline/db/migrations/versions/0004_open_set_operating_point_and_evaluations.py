"""open-set operating point per gallery version, target FAR per domain, probe evaluations

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 20:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("domains", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("target_far", sa.Float(), server_default="0.01", nullable=False)
        )
        batch_op.add_column(
            sa.Column("max_quality_drop", sa.Float(), server_default="0.05", nullable=False)
        )
    with op.batch_alter_table("galleries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("operating_point", sa.JSON(), nullable=True))
    op.create_table(
        "gallery_evaluations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("gallery_id", sa.Integer(), nullable=False),
        sa.Column("domain", sa.String(length=50), nullable=False),
        sa.Column("probes_dir", sa.Text(), nullable=False),
        sa.Column("unknown_dir", sa.Text(), nullable=True),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["domain"], ["domains.code"]),
        sa.ForeignKeyConstraint(["gallery_id"], ["galleries.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("gallery_evaluations", schema=None) as batch_op:
        batch_op.create_index("ix_gallery_evaluations_domain", ["domain"], unique=False)
        batch_op.create_index("ix_gallery_evaluations_gallery_id", ["gallery_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("gallery_evaluations", schema=None) as batch_op:
        batch_op.drop_index("ix_gallery_evaluations_gallery_id")
        batch_op.drop_index("ix_gallery_evaluations_domain")
    op.drop_table("gallery_evaluations")
    with op.batch_alter_table("galleries", schema=None) as batch_op:
        batch_op.drop_column("operating_point")
    with op.batch_alter_table("domains", schema=None) as batch_op:
        batch_op.drop_column("max_quality_drop")
        batch_op.drop_column("target_far")
