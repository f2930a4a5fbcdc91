"""Backups of the SQLite database with SQLite's online backup API (safe while runs write), or of
a PostgreSQL database with `pg_dump --format=custom` (a consistent snapshot, also safe while runs
write), kept 7 daily, 4 weekly and 12 monthly per database; and the check that a file is a
facerec database this code knows, which every backup passes before it is kept (restoring one is
in restore.py). No Dagster here.

On PostgreSQL the password goes to pg_dump, pg_restore and psql in their PGPASSWORD environment
variable only, never on a command line, and never appears in a message.

Each database has its own folder of backups, storage/backups/<name>-<hash of its path>/, so
backing up one database never prunes another's backups. Files written before that (directly in
storage/backups/) are never pruned and can still be restored."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from facerec_pipeline.db.engine import is_postgresql, sqlite_path
from facerec_pipeline.db.migrate import PROJECT_TABLES, known_revisions

NAME = re.compile(r"^facerec-(\d{8}T\d{6}Z)\.(?:db|dump)$")
DUMP_SUFFIX = ".dump"  # PostgreSQL backups: pg_dump's custom format
STAMP = "%Y%m%dT%H%M%SZ"
SOURCE_NOTE = "database.txt"  # in each database's folder: the path of the database it backs up
# Tables every known schema revision has (those of 0001).
CORE_TABLES = (
    "domains",
    "domain_datasets",
    "people",
    "images",
    "faces",
    "face_embeddings",
    "galleries",
    "gallery_faces",
    "training_sessions",
    "asset_lineage",
)


class BackupError(RuntimeError):
    pass


class NotAFacerecDatabase(BackupError):
    """A file that is not a facerec database this code can use; the message says what it is."""


def sqlite_file(database_url: str) -> Path:
    path = sqlite_path(database_url)
    if path is None:
        raise BackupError(
            f"backups here cover the SQLite file only; back up "
            f"{make_url(database_url).get_backend_name()} with its own tools (pg_dump for "
            "PostgreSQL)"
        )
    return path


def _postgres_identity(database_url: str) -> str:
    """The PostgreSQL database `database_url` names (host, port, name), no user or password."""
    url = make_url(database_url)
    host = url.host or url.query.get("host") or "localhost"
    return f"postgresql://{host}:{url.port or 5432}/{url.database or ''}"


def postgres_client(database_url: str) -> tuple[str, dict[str, str], str | None]:
    """(libpq connection URI without the password, environment for pg_dump/pg_restore/psql with
    the password in PGPASSWORD, the password to mask in their messages)."""
    url = make_url(database_url)
    if not url.database:
        raise BackupError(
            f"DATABASE_URL {url.render_as_string(hide_password=True)} names no database"
        )
    uri = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    env = dict(os.environ)
    env.pop("PGPASSWORD", None)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    return uri, env, str(url.password) if url.password else None


def postgres_tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise BackupError(
            f"{name} not found: PostgreSQL backups need the PostgreSQL client tools on PATH "
            "(Debian: apt-get install postgresql-client)"
        )
    return found


def masked(text: str, password: str | None) -> str:
    text = text.strip()
    return text.replace(password, "***") if password else text


def run_postgres_tool(args: list[str], env: dict[str, str], password: str | None) -> str:
    """Run a PostgreSQL client tool; its stdout, else BackupError with its message (masked)."""
    try:
        done = subprocess.run(
            args, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
    except OSError as error:
        raise BackupError(f"cannot run {args[0]} ({masked(str(error), password)})") from error
    if done.returncode != 0:
        lines = masked(done.stderr, password).splitlines()
        raise BackupError(
            f"{Path(args[0]).name} failed ({'; '.join(lines[-3:]) or f'exit {done.returncode}'})"
        )
    return done.stdout


def database_backups_dir(database_url: str, backups_dir: Path) -> Path:
    """The folder of this database's backups: named after the database file and a hash of its
    resolved path (PostgreSQL: the database's name and a hash of its host, port and name), so two
    databases never share (or prune) one pool."""
    if is_postgresql(database_url):
        identity = _postgres_identity(database_url)
        name = make_url(database_url).database or "database"
    else:
        source = sqlite_file(database_url).resolve()
        identity, name = str(source), source.stem
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:40] or "database"
    return backups_dir / f"{stem}-{digest}"


def require_known_revision(path: Path, revisions: list[str]) -> None:
    """NotAFacerecDatabase unless `revisions` (the backup's alembic_version rows) is one schema
    revision this code knows."""
    known = known_revisions()
    if len(revisions) != 1 or revisions[0] not in known:
        found = ", ".join(revisions) or "none"
        raise NotAFacerecDatabase(
            f"{path} has the facerec tables but a schema revision this code does not know "
            f"({found}; known: {known[0]} to {known[-1]}): made by a newer facerec, or altered"
        )


def check_dump_file(path: Path) -> str:
    """The schema revision recorded in the pg_dump custom-format file `path` if it is a dump of a
    facerec database this code knows, else NotAFacerecDatabase saying what it is. Needs
    pg_restore (reads the file only)."""
    if not path.is_file():
        raise NotAFacerecDatabase(f"no file {path}")
    pg_restore = postgres_tool("pg_restore")
    try:
        listing = run_postgres_tool([pg_restore, "--list", str(path)], dict(os.environ), None)
        data = run_postgres_tool(
            [pg_restore, "--data-only", "--table=alembic_version", "--file=-", str(path)],
            dict(os.environ),
            None,
        )
    except BackupError as error:
        raise NotAFacerecDatabase(f"{path} is not a readable pg_dump archive ({error})") from error
    tables = set(re.findall(r"^\d+; \d+ \d+ TABLE \S+ (\S+) ", listing, re.MULTILINE))
    missing = [table for table in CORE_TABLES if table not in tables]
    if missing:
        raise NotAFacerecDatabase(
            f"{path} is not a dump of a facerec database: it lacks the tables "
            f"{', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}"
        )
    copied = re.search(r"^COPY \S*alembic_version .*?FROM stdin;\n(.*?)^\\\.$", data, re.M | re.S)
    revisions = copied.group(1).split() if copied else []
    require_known_revision(path, revisions)
    return revisions[0]


def check_backup_file(path: Path, thorough: bool = True) -> str:
    """The schema revision of the backup `path`: a pg_dump archive (.dump) or a SQLite file."""
    if path.suffix == DUMP_SUFFIX:
        return check_dump_file(path)
    return check_database_file(path, thorough)


def dump_postgres(database_url: str, target: Path) -> None:
    """`pg_dump --format=custom` of the database into `target`."""
    uri, env, password = postgres_client(database_url)
    pg_dump = postgres_tool("pg_dump")
    run_postgres_tool(
        [pg_dump, "--format=custom", "--no-password", f"--file={target}", f"--dbname={uri}"],
        env,
        password,
    )


def check_database_file(path: Path, thorough: bool = True) -> str:
    """The schema revision of the SQLite file `path` if it is a facerec database this code knows,
    else NotAFacerecDatabase saying what it is. Read-only. `thorough` adds SQLite's integrity
    check (reads every page)."""
    if not path.is_file():
        raise NotAFacerecDatabase(f"no file {path}")
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            if thorough:
                result = db.execute("PRAGMA integrity_check").fetchone()[0]
                if result != "ok":
                    raise NotAFacerecDatabase(f"{path} is damaged (integrity check: {result})")
            tables = {
                row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            revisions = (
                [row[0] for row in db.execute("SELECT version_num FROM alembic_version")]
                if "alembic_version" in tables
                else []
            )
    except sqlite3.DatabaseError as error:
        raise NotAFacerecDatabase(f"{path} is not a readable database (SQLite: {error})") from error
    if not tables:
        raise NotAFacerecDatabase(
            f"{path} is an empty SQLite database (no tables), not a facerec database"
        )
    missing = [table for table in CORE_TABLES if table not in tables]
    if missing:
        theirs = sorted(tables)
        raise NotAFacerecDatabase(
            f"{path} is not a facerec database: it lacks the tables {', '.join(missing[:4])}"
            f"{', ...' if len(missing) > 4 else ''} (its tables: {', '.join(theirs[:5])}"
            f"{', ...' if len(theirs) > 5 else ''})"
        )
    require_known_revision(path, revisions)
    if revisions[0] == known_revisions()[-1] and not PROJECT_TABLES <= tables:
        lacking = sorted(PROJECT_TABLES - tables)
        raise NotAFacerecDatabase(
            f"{path} says schema {revisions[0]} but lacks the tables {', '.join(lacking)}"
        )
    return revisions[0]


def online_copy(source: Path, target: Path, journal_mode: str = "DELETE") -> None:
    """Page-by-page online copy; `target` ends as one self-contained file (or in WAL mode when it
    is the live database being restored)."""
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
        dst.execute(f"PRAGMA journal_mode={journal_mode}")
        result = dst.execute("PRAGMA integrity_check").fetchone()[0]
    if result != "ok":
        raise BackupError(f"{target} failed its integrity check: {result}")


def _checked_copy(source: Path, partial: Path) -> None:
    try:
        online_copy(source, partial)
    except sqlite3.DatabaseError as error:
        raise BackupError(f"{source} cannot be copied ({error})") from error
    try:
        check_database_file(partial, thorough=False)  # _copy checked its integrity
    except NotAFacerecDatabase as error:
        raise BackupError(str(error).replace(str(partial), str(source))) from error


def backup_database(database_url: str, backups_dir: Path, now: datetime | None = None) -> Path:
    """Copy the database into its own folder under `backups_dir`; returns the new file. A
    database that is missing or not a facerec database is refused and no backup is touched."""
    if is_postgresql(database_url):
        return _backup_postgres(database_url, backups_dir, now)
    source = sqlite_file(database_url)
    if not source.is_file():
        raise BackupError(
            f"no database at {source}: nothing backed up, existing backups untouched (check "
            "DATABASE_URL and FACEREC_STORAGE_DIR)"
        )
    return _write_backup(
        database_url,
        backups_dir,
        now,
        ".db",
        lambda partial: _checked_copy(source, partial),
        source=str(source.resolve()),
    )


def _backup_postgres(database_url: str, backups_dir: Path, now: datetime | None) -> Path:
    def dump(partial: Path) -> None:
        dump_postgres(database_url, partial)
        check_dump_file(partial)

    identity = _postgres_identity(database_url)
    return _write_backup(
        database_url,
        backups_dir,
        now,
        DUMP_SUFFIX,
        dump,
        source=identity,
        partial_shown_as=identity,
    )


def _write_backup(
    database_url: str,
    backups_dir: Path,
    now: datetime | None,
    suffix: str,
    write: Callable[[Path], None],
    source: str,
    partial_shown_as: str | None = None,
) -> Path:
    """`write` a backup to a `.partial` file in the database's own folder, then give it its
    dated name; a failed write leaves no file behind and no earlier backup touched. `source`
    names the database (database.txt); `partial_shown_as` replaces the partial file's path in
    an error."""
    now = now or datetime.now(UTC)
    folder = database_backups_dir(database_url, backups_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"facerec-{now.strftime(STAMP)}{suffix}"
    partial = target.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    try:
        write(partial)
    except BackupError as error:
        partial.unlink(missing_ok=True)
        if not any(folder.iterdir()):
            folder.rmdir()
        shown = str(error)
        if partial_shown_as is not None:
            shown = shown.replace(str(partial), partial_shown_as)
        raise BackupError(f"{shown}; nothing backed up, existing backups untouched") from error
    partial.replace(target)
    (folder / SOURCE_NOTE).write_text(f"{source}\n")
    return target


def list_backups(backups_dir: Path) -> dict[datetime, Path]:
    found = {}
    for path in backups_dir.glob("facerec-*"):
        match = NAME.match(path.name)
        if match:
            found[datetime.strptime(match.group(1), STAMP).replace(tzinfo=UTC)] = path
    return found


def backups_to_keep(
    stamps: list[datetime], now: datetime, daily: int = 7, weekly: int = 4, monthly: int = 12
) -> set[datetime]:
    """The newest backup of each of the last `daily` days, `weekly` ISO weeks and `monthly`
    months (counting back from `now`)."""
    keep: set[datetime] = set()
    newest = sorted(stamps, reverse=True)

    def newest_per(key, periods: int, recent) -> None:
        seen = []
        for stamp in newest:
            period = key(stamp)
            if period not in seen and recent(stamp):
                seen.append(period)
                if len(seen) <= periods:
                    keep.add(stamp)

    day = now.date()
    newest_per(lambda s: s.date(), daily, lambda s: (day - s.date()).days < daily)
    newest_per(lambda s: s.isocalendar()[:2], weekly, lambda s: (day - s.date()).days < 7 * weekly)
    newest_per(
        lambda s: (s.year, s.month),
        monthly,
        lambda s: (day.year - s.year) * 12 + day.month - s.month < monthly,
    )
    return keep


def newest_good_backup(found: dict[datetime, Path]) -> datetime | None:
    """The stamp of the newest backup that is a facerec database this code can restore."""
    for stamp, path in sorted(found.items(), reverse=True):
        try:
            check_backup_file(path, thorough=False)
        except BackupError:
            continue
        return stamp
    return None


def prune_backups(backups_dir: Path, now: datetime | None = None) -> list[Path]:
    """Apply the 7/4/12 retention to the backups of one database (one folder). The newest good
    backup is always kept, however old."""
    found = list_backups(backups_dir)
    keep = backups_to_keep(list(found), now or datetime.now(UTC))
    newest_good = newest_good_backup(found)
    if newest_good is not None:
        keep.add(newest_good)
    removed = [path for stamp, path in sorted(found.items()) if stamp not in keep]
    for path in removed:
        path.unlink()
    return removed


def backup_and_prune(
    database_url: str, backups_dir: Path, now: datetime | None = None
) -> tuple[Path, list[Path]]:
    """Back up the database, then prune that database's backups alone."""
    path = backup_database(database_url, backups_dir, now)
    return path, prune_backups(path.parent, now)
