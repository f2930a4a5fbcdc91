"""one truth for production: `galleries.status = 'production'` replaces `galleries.is_prod`
(which could disagree with it), with at most one production version per domain

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ONE_PER_DOMAIN = "one_production_version_per_domain"
WHERE = sa.text("status = 'production'")


def upgrade() -> None:
    # The version that serves becomes `production`; the ones served before stay `published`.
    # Should a database hold two serving rows of one domain (it never should), the newest wins.
    op.execute(
        "UPDATE galleries SET status = 'production' WHERE is_prod AND id = "
        "(SELECT MAX(g.id) FROM galleries g WHERE g.domain = galleries.domain AND g.is_prod)"
    )
    op.execute("UPDATE galleries SET status = 'published' WHERE is_prod AND status <> 'production'")
    with op.batch_alter_table("galleries", schema=None) as batch_op:
        batch_op.drop_column("is_prod")
    op.create_index(
        ONE_PER_DOMAIN,
        "galleries",
        ["domain"],
        unique=True,
        sqlite_where=WHERE,
        postgresql_where=WHERE,
    )


def downgrade() -> None:
    op.drop_index(ONE_PER_DOMAIN, table_name="galleries")
    with op.batch_alter_table("galleries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("is_prod", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.execute("UPDATE galleries SET is_prod = (status = 'production')")
    op.execute("UPDATE galleries SET status = 'published' WHERE status = 'production'")
