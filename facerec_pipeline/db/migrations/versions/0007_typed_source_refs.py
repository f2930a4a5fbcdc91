"""people.source_ref becomes a typed reference with a kind tag: a folder person's bare folder
name becomes {"kind": "folder", "folder": NAME}, a Wikidata person's JSON list of P18 files
{"kind": "commons", "files": [...]}; the way back restores the untyped forms

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 10:00:00

The forms are written out here rather than imported from facerec_pipeline.db.source_refs, so this
revision keeps doing what it did whatever that module becomes. Which old form a row holds is
decided by its domain's source, never guessed from the text.
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PEOPLE = sa.table(
    "people",
    sa.column("id", sa.Integer),
    sa.column("domain", sa.String),
    sa.column("source_ref", sa.Text),
)
DOMAINS = sa.table("domains", sa.column("code", sa.String), sa.column("source", sa.String))


def _rows(connection) -> list:
    return connection.execute(
        sa.select(PEOPLE.c.id, PEOPLE.c.domain, PEOPLE.c.source_ref, DOMAINS.c.source)
        .join(DOMAINS, DOMAINS.c.code == PEOPLE.c.domain)
        .where(PEOPLE.c.source_ref.is_not(None))
        .order_by(PEOPLE.c.id)
    ).all()


def _problem(row, why: str) -> RuntimeError:
    return RuntimeError(
        f"migration 0007: person {row.id} of domain {row.domain!r} ({row.source} source) has "
        f"source_ref {row.source_ref!r}, {why}; fix or clear that value (the next run of the "
        "domain's candidates writes it again), then upgrade again"
    )


def _typed(row) -> str:
    if row.source == "folder":
        return json.dumps({"kind": "folder", "folder": row.source_ref}, ensure_ascii=False)
    if row.source == "wikidata":
        try:
            files = json.loads(row.source_ref)
        except ValueError:
            files = None
        if not isinstance(files, list) or not all(isinstance(f, str) and f for f in files):
            raise _problem(row, "not a JSON list of Commons file names")
        return json.dumps({"kind": "commons", "files": files}, ensure_ascii=False)
    raise _problem(row, "and that source is unknown")


def _untyped(row) -> str:
    value = json.loads(row.source_ref)
    if value.get("kind") == "folder":
        return value["folder"]
    return json.dumps(value["files"], ensure_ascii=False)


def _rewrite(convert) -> None:
    connection = op.get_bind()
    for row in _rows(connection):
        connection.execute(
            sa.update(PEOPLE).where(PEOPLE.c.id == row.id).values(source_ref=convert(row))
        )


def upgrade() -> None:
    _rewrite(_typed)


def downgrade() -> None:
    _rewrite(_untyped)
