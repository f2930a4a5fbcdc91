"""artifacts (every file the pipeline writes, with its hash, size, dimensions and parameters) and
processing_failures (per-photo failures of a stage, with their retry count)

Files written before this revision get their rows when a run next meets them (adopted, never
rewritten); until then `facerec artifacts verify` lists them as orphaned and `gc` keeps every file
the database still references.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "artifacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("domain", sa.String(length=50), nullable=False),
        sa.Column("image_sha256", sa.String(length=64), nullable=True),
        sa.Column("stage", sa.String(length=30), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("gallery_version", sa.Integer(), nullable=True),
        sa.Column("blurhash", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["domain"], ["domains.code"], name=op.f("fk_artifacts_domain_domains")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
        sa.UniqueConstraint("path", name=op.f("uq_artifacts_path")),
        sa.UniqueConstraint(
            "domain",
            "image_sha256",
            "stage",
            "parameters",
            name=op.f("uq_artifacts_domain_image_sha256_stage_parameters"),
        ),
    )
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_artifacts_domain"), ["domain"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_artifacts_image_sha256"), ["image_sha256"], unique=False
        )
    op.create_table(
        "processing_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("domain", sa.String(length=50), nullable=False),
        sa.Column("image_sha256", sa.String(length=64), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=True),
        sa.Column("stage", sa.String(length=30), nullable=False),
        sa.Column("item", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["domain"], ["domains.code"], name=op.f("fk_processing_failures_domain_domains")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_processing_failures")),
        sa.UniqueConstraint(
            "domain",
            "image_sha256",
            "stage",
            name=op.f("uq_processing_failures_domain_image_sha256_stage"),
        ),
    )
    with op.batch_alter_table("processing_failures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_processing_failures_domain"), ["domain"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("processing_failures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_processing_failures_domain"))
    op.drop_table("processing_failures")
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_artifacts_image_sha256"))
        batch_op.drop_index(batch_op.f("ix_artifacts_domain"))
    op.drop_table("artifacts")
