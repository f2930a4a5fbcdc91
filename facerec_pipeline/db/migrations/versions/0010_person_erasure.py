"""person erasure: `erased_people` (the sha256 of each erased person's source key, per domain, so
a source refresh does not bring them back) and `erasures` (the audit: who, when, counts)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "erased_people",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("domain", sa.String(length=50), nullable=False),
        sa.Column("person_key_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["domain"], ["domains.code"], name=op.f("fk_erased_people_domain_domains")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erased_people")),
        sa.UniqueConstraint(
            "domain", "person_key_sha256", name=op.f("uq_erased_people_domain_person_key_sha256")
        ),
    )
    with op.batch_alter_table("erased_people", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_erased_people_domain"), ["domain"], unique=False)
    op.create_table(
        "erasures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("domain", sa.String(length=50), nullable=False),
        sa.Column("person_key_sha256", sa.String(length=64), nullable=False),
        sa.Column("operator", sa.String(length=200), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("new_gallery_version", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["domain"], ["domains.code"], name=op.f("fk_erasures_domain_domains")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erasures")),
    )
    with op.batch_alter_table("erasures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_erasures_domain"), ["domain"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("erasures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_erasures_domain"))
    op.drop_table("erasures")
    with op.batch_alter_table("erased_people", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_erased_people_domain"))
    op.drop_table("erased_people")
