"""`facerec db`: migrations, backups, restore."""

from __future__ import annotations

from pathlib import Path

import click

from facerec_pipeline.cli.common import (
    load_settings,
    upgrade_database,
    user_errors,
)
from facerec_pipeline.db.engine import session_scope


@click.group()
def db() -> None:
    """The database (SQLite at storage/facerec.db unless DATABASE_URL says otherwise)."""


@db.command("upgrade")
@user_errors
def db_upgrade() -> None:
    """Apply the database migrations."""
    settings = load_settings()
    before, after = upgrade_database(settings)
    click.echo(f"database {settings.database_label}: {before or 'empty'} -> {after}")


@db.command("backup")
@user_errors
def db_backup() -> None:
    """Back up the database (SQLite: online copy; PostgreSQL: pg_dump --format=custom) into its
    own folder under storage/backups; keep 7 daily, 4 weekly, 12 monthly of that database's
    backups, and always its newest good one."""
    from facerec_pipeline.app.backups import backup_and_prune

    settings = load_settings()  # never creates the database: a missing one is an error
    path, removed = backup_and_prune(settings.database_url, settings.backups_dir)
    click.echo(f"backed up to {path}; pruned {len(removed)} old backups of this database")


@db.command("restore")
@click.argument("backup", type=click.Path(dir_okay=False))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@user_errors
def db_restore(backup: str, yes: bool) -> None:
    """Replace the database with BACKUP once it is checked to be an undamaged facerec database;
    the current one is kept as pre-restore-*.db (PostgreSQL: BACKUP is a pg_dump archive,
    facerec-*.dump, and the current database is dumped as pre-restore-*.dump first), an older
    schema is upgraded and the production pointers are rewritten from the restored rows."""
    from facerec_pipeline.app.backups import NotAFacerecDatabase, check_backup_file
    from facerec_pipeline.app.promotion import reconcile_prod_pointers
    from facerec_pipeline.app.restore import restore_database, served_files_elsewhere
    from facerec_pipeline.db.migrate import head_revision
    from facerec_pipeline.defs.instance import dagster_instance
    from facerec_pipeline.defs.runs.recovery import RunInProgress, refuse_while_runs_live

    settings = load_settings()
    try:
        revision = check_backup_file(Path(backup))  # refuse before asking
        elsewhere = served_files_elsewhere(Path(backup), settings.storage_dir)
        if elsewhere:
            raise NotAFacerecDatabase(elsewhere)
        refuse_while_runs_live(dagster_instance(settings), "a restore")
    except (NotAFacerecDatabase, RunInProgress) as refused:
        raise type(refused)(f"{refused}; nothing restored, the database is unchanged") from refused
    if not yes:
        click.confirm(
            f"Replace {settings.database_label} with {backup} (schema {revision})?", abort=True
        )
    safety = restore_database(settings.database_url, Path(backup), settings.backups_dir)
    click.echo(f"restored {backup}" + (f"; the previous database is in {safety}" if safety else ""))
    head = head_revision(settings.database_url)
    if revision != head:
        click.echo(f"upgraded its schema from {revision} to {head}")
    with session_scope(settings.database_url) as session:
        changes = reconcile_prod_pointers(session, settings)
    for change in changes:
        click.echo(f"production pointer {change}")
