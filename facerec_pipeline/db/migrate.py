"""Alembic migrations, run programmatically (`facerec db upgrade`, and before every run).

A database that cannot be opened, or one that is not this project's (another application's
schema revision, or a SQLite file of foreign tables), is refused with DatabaseUnavailable rather
than migrated into."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError, DBAPIError, OperationalError

from facerec_pipeline.db.engine import (
    DatabaseDamaged,
    DatabaseUnavailable,
    driver_reason,
    get_engine,
)
from facerec_pipeline.db.models import Base

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
PROJECT_TABLES = frozenset(Base.metadata.tables) | {"alembic_version"}


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@lru_cache(maxsize=1)
def known_revisions() -> tuple[str, ...]:
    """Every schema revision this code knows, oldest first."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    scripts = ScriptDirectory.from_config(config).walk_revisions()
    return tuple(script.revision for script in reversed(list(scripts)))


def current_revision(url: str) -> str | None:
    with get_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def _cannot_open(error: DBAPIError) -> bool:
    """The database could not be reached, opened or written (not a fault of the SQL)."""
    return isinstance(error, OperationalError) or type(error) is DatabaseError


def _state(url: str) -> tuple[str | None, list[str]]:
    """(schema revision, table names) of the database at `url`."""
    shown = make_url(url).render_as_string(hide_password=True)
    try:
        with get_engine(url).connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
            return revision, inspect(connection).get_table_names()
    except DBAPIError as error:
        if not _cannot_open(error):
            raise
        damaged = any(sign in driver_reason(error) for sign in ("not a database", "malformed"))
        raise (DatabaseDamaged if damaged else DatabaseUnavailable)(
            f"cannot open the database {shown} ({driver_reason(error)})"
        ) from error


def upgrade(url: str) -> tuple[str | None, str | None]:
    """Bring the database at `url` to the newest schema. Returns (before, after) revisions."""
    before, tables = _state(url)
    head = head_revision(url)
    shown = make_url(url).render_as_string(hide_password=True)
    if before is not None and before not in known_revisions():
        raise DatabaseUnavailable(
            f"the database {shown} is at schema revision {before!r}, which this code does not "
            "know: it is another application's database (Dagster's runs.db has one too) or one "
            "made by a newer facerec"
        )
    foreign = sorted(set(tables) - PROJECT_TABLES)
    # A SQLite file belongs to one application; a PostgreSQL database may well be shared.
    if before is None and foreign and make_url(url).get_backend_name() == "sqlite":
        raise DatabaseUnavailable(
            f"the database {shown} is not a facerec database (it has the tables "
            f"{', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''} and no facerec schema)"
        )
    if before != head:
        config = alembic_config(url)
        try:
            with get_engine(url).begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except DBAPIError as error:
            if not _cannot_open(error):
                raise
            raise DatabaseUnavailable(
                f"cannot bring the database {shown} to schema {head} ({driver_reason(error)})"
            ) from error
    return before, head
