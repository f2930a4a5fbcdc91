"""What every command group shares: user errors as one-line messages, settings and the database
made ready, the Dagster home and partitions, JSON output."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from facerec_pipeline.app.domains import DomainError
from facerec_pipeline.core.faces.weights import ModelWeightsMissing
from facerec_pipeline.core.files import full_disk
from facerec_pipeline.db.engine import (
    DatabaseDamaged,
    DatabaseUnavailable,
    database_damage,
    session_scope,
    sqlite_path,
)
from facerec_pipeline.db.migrate import upgrade
from facerec_pipeline.settings import InvalidDomainCode, Settings, SettingsError

USER_ERRORS = (
    DomainError,
    InvalidDomainCode,
    ModelWeightsMissing,
    SettingsError,
    DatabaseUnavailable,
    LookupError,
    ValueError,
    RuntimeError,
)


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Known problems become a one-line message and exit status 1, not a traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except Exception as error:
            damage = database_damage(error)
            if damage is not None:
                raise click.ClickException(damaged_database_message(damage)) from error
            if isinstance(error, USER_ERRORS):
                raise click.ClickException(str(error)) from error
            raise

    return wrapper


def damaged_database_message(reason: str) -> str:
    """One line: the database is damaged, and the backup to restore (the newest good one)."""
    from facerec_pipeline.app.backups import (
        database_backups_dir,
        list_backups,
        newest_good_backup,
    )

    settings = Settings.from_env()
    database_file = sqlite_path(settings.database_url)
    full = full_disk(settings.storage_dir, *([database_file] if database_file else []))
    if full:  # SQLite says "disk I/O error" when it cannot grow its -wal
        return f"{full}: the database could not write ({reason}); free space and try again"
    found = list_backups(database_backups_dir(settings.database_url, settings.backups_dir))
    newest = newest_good_backup(found)
    restore = (
        f"`facerec db restore {found[newest]}` (the newest good backup)"
        if newest is not None
        else f"`facerec db restore BACKUP` (no backup of it was found in {settings.backups_dir})"
    )
    return (
        f"the database {settings.database_label} is damaged ({reason}); stop what uses it and "
        f"restore the last backup: {restore}"
    )


def load_settings() -> Settings:
    """Settings from the environment (a set DATABASE_URL is checked, then named on stderr with
    its password masked), with the storage root created if missing."""
    settings = Settings.from_env()
    if settings.database_url_from_env:
        database_file = sqlite_path(settings.database_url)
        missing = database_file is not None and not database_file.exists()
        note = " (no database file there yet)" if missing else ""
        click.echo(f"using DATABASE_URL={settings.database_label}{note}", err=True)
    settings.prepare_storage()
    return settings


def upgrade_database(settings: Settings) -> tuple[str | None, str | None]:
    """Bring the schema up to date; a database that cannot be opened says which setting to fix."""
    try:
        return upgrade(settings.database_url)
    except DatabaseDamaged as error:
        other = " or fix DATABASE_URL" if settings.database_url_from_env else ""
        raise DatabaseDamaged(
            f"{error}: the file is damaged or not a database; restore a backup with "
            f"`facerec db restore BACKUP`{other}"
        ) from error
    except DatabaseUnavailable as error:
        if "locked" in str(error):  # there and writable, but another process holds it
            raise DatabaseUnavailable(
                f"{error}; another process holds the database locked (a sqlite3 shell or "
                "tool with an open transaction or `PRAGMA locking_mode=EXCLUSIVE`, a stuck "
                "process): close it and try again"
            ) from error
        raise DatabaseUnavailable(f"{error}; {settings.database_hint()}") from error


def settings_ready(create: bool = True) -> Settings:
    """Settings from the environment, with the database schema brought up to date. A command
    that only reads passes `create=False`: a SQLite file that does not exist is then an error
    (NoDatabase), never a new empty database (a mistyped DATABASE_URL would otherwise answer
    from one)."""
    settings = load_settings()
    missing = missing_database(settings)
    if missing is not None and not create:
        raise NoDatabase(missing)
    upgrade_database(settings)
    return settings


class NoDatabase(DatabaseUnavailable):
    """A command that only reads found no database (and created none)."""


def missing_database(settings: Settings) -> str | None:
    """Why the settings' SQLite file does not exist yet (None when it does, or not SQLite)."""
    path = sqlite_path(settings.database_url)
    if path is None or path.exists() or not path.absolute().parent.is_dir():
        return None  # there; or in a missing directory, which opening it refuses and names
    if settings.database_url_from_env:
        return (
            f"no database at {path} (DATABASE_URL): this command only reads and never "
            "creates one; fix DATABASE_URL (a mistyped file name?)"
        )
    return (
        f"no database at {path} yet: this command only reads and never creates one; "
        "add a domain first (`facerec domains add`, or `facerec sample`)"
    )


def read_db(query: Callable[..., Any], *args: Any, missing: Any = NoDatabase) -> Any:
    """Run `query(session, *args)` against an up-to-date database and return its result; never
    creates the database. With none at the default place (a fresh storage root), `missing` is
    the answer when given; one DATABASE_URL names but that does not exist is always NoDatabase."""
    try:
        settings = settings_ready(create=False)
    except NoDatabase:
        if missing is NoDatabase or load_settings().database_url_from_env:
            raise
        return missing
    with session_scope(settings.database_url) as session:
        return query(session, *args)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))
