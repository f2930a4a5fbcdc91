"""`facerec artifacts`: the files the pipeline wrote, listed, verified against their rows and
garbage-collected."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from facerec_pipeline.cli.common import echo_json, settings_ready, user_errors
from facerec_pipeline.cli.formatting import artifacts_table
from facerec_pipeline.db.engine import session_scope
from facerec_pipeline.settings import Settings

DOMAIN_HELP = "One domain (default: every domain)."


@contextmanager
def domain_session(code: str | None) -> Iterator[tuple[Settings, Session]]:
    """Settings and a session; an unknown --domain is an error naming the known ones."""
    from facerec_pipeline.app.domains import get_domain

    settings = settings_ready(create=False)
    with session_scope(settings.database_url) as session:
        if code is not None:
            get_domain(session, code)
        yield settings, session


@click.group()
def artifacts() -> None:
    """Every file the pipeline writes is a row: list, verify, gc."""


@artifacts.command("list")
@click.option("--domain", "code", default=None, help=DOMAIN_HELP)
@click.option("--stage", default=None, help="Only this stage (original, thumbnail_400, ...).")
@click.option("--json", "as_json", is_flag=True, help="Every row as JSON instead of counts.")
@user_errors
def artifacts_list(code: str | None, stage: str | None, as_json: bool) -> None:
    """Files per domain and stage (count and size), or every row with --json."""
    from facerec_pipeline.db.models import Artifact

    chosen = [Artifact.domain == code] if code is not None else []
    chosen += [Artifact.stage == stage] if stage is not None else []
    with domain_session(code) as (_, session):
        query = select(Artifact).where(*chosen)
        query = query.order_by(Artifact.domain, Artifact.stage, Artifact.path)
        if as_json:
            echo_json(
                [
                    {
                        column.name: getattr(row, column.name)
                        for column in Artifact.__table__.columns
                    }
                    for row in session.scalars(query)
                ]
            )
            return
        counts = session.execute(
            select(Artifact.domain, Artifact.stage, func.count(), func.sum(Artifact.size))
            .where(*chosen)
            .group_by(Artifact.domain, Artifact.stage)
            .order_by(Artifact.domain, Artifact.stage)
        ).all()
    if not counts:
        click.echo("no artifacts recorded" + (f" for domain {code!r}" if code else ""))
        return
    click.echo(artifacts_table(counts))


def _echo_findings(title: str, findings: list, limit: int = 50) -> None:
    if not findings:
        return
    click.echo(f"{title}: {len(findings)}")
    for finding in findings[:limit]:
        click.echo(f"  {finding.path}  {finding.detail}")
    if len(findings) > limit:
        click.echo(f"  ... and {len(findings) - limit} more (--json lists all)")


@artifacts.command("verify")
@click.option("--domain", "code", default=None, help=DOMAIN_HELP)
@click.option("--json", "as_json", is_flag=True)
@user_errors
def artifacts_verify(code: str | None, as_json: bool) -> None:
    """Every row's file exists and matches its sha256; every file under the tracked areas of
    storage/ has a row. Exits 1 when a file is missing, damaged or orphaned."""
    from facerec_pipeline.core.artifacts.audit import verify

    with domain_session(code) as (settings, session):
        audit = verify(session, settings, code)
    if as_json:
        echo_json(audit.to_dict())
    else:
        click.echo(
            f"checked {audit.rows_checked} rows and {audit.files_seen} files"
            + (f" of domain {code!r}" if code else "")
        )
        _echo_findings("missing (a row, no file)", audit.missing)
        _echo_findings("damaged (size or sha256 differs from its row)", audit.damaged)
        _echo_findings("orphaned (a file, no row)", audit.orphaned)
        _echo_findings("written in the last 30 minutes, not judged", audit.recent)
        if audit.ok:
            click.echo("ok: every row has its file and every file its row")
        else:
            click.echo(
                "fix: `facerec run --domain X` writes missing or damaged photos, crops and "
                "previews again; a damaged gallery version is refused when served (`facerec "
                "gallery rollback`); `facerec artifacts gc --yes` removes orphaned files"
            )
    if not audit.ok:
        raise SystemExit(1)


@artifacts.command("gc")
@click.option("--domain", "code", default=None, help=DOMAIN_HELP)
@click.option("--yes", is_flag=True, help="Remove them (default: a dry run that only lists).")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def artifacts_gc(code: str | None, yes: bool, as_json: bool) -> None:
    """Remove files no row names (orphans). Never a file a serving, published or pinned gallery
    version uses, nor one the database references, nor one written in the last 30 minutes."""
    from facerec_pipeline.core.artifacts.audit import collect_garbage

    with domain_session(code) as (settings, session):
        collection = collect_garbage(session, settings, code, dry_run=not yes)
    if as_json:
        echo_json(collection.to_dict())
        return
    verb = "removed" if yes else "would remove"
    for path in collection.removed:
        click.echo(f"{verb} {path}")
    for finding in collection.kept:
        click.echo(f"kept {finding.path}: {finding.detail}")
    click.echo(
        f"{verb} {len(collection.removed)} orphaned files ({collection.bytes_freed / 1e6:.1f} MB)"
        f"; kept {len(collection.kept)}; {len(collection.recent)} too recent to judge"
        + ("" if yes else "; run again with --yes to remove them")
    )
