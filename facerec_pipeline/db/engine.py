"""Engines and sessions. SQLite gets WAL, foreign keys and a busy timeout on every connection;
any other SQLAlchemy URL (PostgreSQL) is used as given. No directory is ever created here: a
SQLite file whose directory is missing is an error, not a new empty database somewhere."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from threading import Lock

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

SQLITE_BUSY_TIMEOUT_MS = 30_000

_engines: dict[str, Engine] = {}
_lock = Lock()


class DatabaseUnavailable(RuntimeError):
    """The database cannot be opened or written; the message says where and why."""


class DatabaseDamaged(DatabaseUnavailable):
    """The database file is not a readable SQLite database."""


def driver_reason(error: BaseException) -> str:
    """The first line of what the database driver said (SQLAlchemy's wrapper adds the SQL and
    its parameters after it), else of the error itself; its type's name when it says nothing."""
    orig = getattr(error, "orig", None)
    text = str(orig if orig is not None else error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# What SQLite says when the bytes it reads are not what it wrote (the file, its `-wal`).
DAMAGE_SIGNS = ("disk i/o error", "malformed", "not a database", "database corruption")


def database_damage(error: BaseException) -> str | None:
    """Why `error` means the database's stored bytes are damaged, or None: SQLite's own words
    for a damaged file or `-wal`, or a stored value that no longer has its column's form (a
    flipped byte in a WAL frame the reader trusts reaches SQLAlchemy's result processors)."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(error, DBAPIError):
        reason = driver_reason(error)
        return reason if any(sign in reason.lower() for sign in DAMAGE_SIGNS) else None
    if isinstance(error, ValueError | TypeError):  # JSONDecodeError is a ValueError
        frames = traceback.extract_tb(error.__traceback__)
        if any(
            "_apply_processors" in frame.name or "_processors" in frame.filename for frame in frames
        ):
            return str(error)
    return None


def _causes(error: BaseException) -> list[BaseException]:
    """`error` and what caused it, outermost first."""
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        chain.append(error)
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return chain


def database_down(error: BaseException) -> str | None:
    """Why `error` means the database could not be reached or used (PostgreSQL stopped, a cut
    connection, SQLite locked by another process past the busy timeout, a full disk), in one
    line, or None. Dagster's own storage failing the same way counts too."""
    from sqlalchemy.exc import InterfaceError, OperationalError, TimeoutError

    for cause in reversed(_causes(error)):  # the innermost names the reason
        psycopg = type(cause).__name__ == "OperationalError" and "psycopg" in type(cause).__module__
        if psycopg or isinstance(cause, OperationalError | InterfaceError | TimeoutError):
            return driver_reason(cause)
    for cause in _causes(error):
        if type(cause).__name__ == "DagsterPostgresException":
            return str(cause)
    return None


def sqlite_path(database_url: str) -> Path | None:
    """The file of a SQLite database URL; None for another kind of database or an in-memory
    one. With is_postgresql, the one test of which database a URL names."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def is_postgresql(database_url: str) -> bool:
    return make_url(database_url).get_backend_name() == "postgresql"


def _configure_sqlite(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _check_sqlite_folder(database: str | None) -> None:
    if not database or database == ":memory:":
        return
    folder = Path(database).absolute().parent
    if not folder.is_dir():
        raise DatabaseUnavailable(
            f"no directory {folder} for the SQLite database {database}: a database is never "
            "created in a missing directory; fix DATABASE_URL or FACEREC_STORAGE_DIR, or create "
            "the directory"
        )


def get_engine(url: str) -> Engine:
    """One engine per URL per process."""
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            parsed = make_url(url)
            if parsed.get_backend_name() == "sqlite":
                _check_sqlite_folder(parsed.database)
                engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
                event.listen(engine, "connect", _configure_sqlite)
            else:
                engine = create_engine(url, pool_pre_ping=True)
            _engines[url] = engine
        return engine


def dispose_engines() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


@contextmanager
def reuse_or_open(url: str, session: Session | None) -> Iterator[Session]:
    """The caller's session (a request's one session, whose transactions it ends), or a new one
    in its own transaction (session_scope)."""
    if session is not None:
        yield session
        return
    with session_scope(url) as own:
        yield own


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on any error."""
    with Session(get_engine(url), expire_on_commit=False) as session, session.begin():
        yield session
