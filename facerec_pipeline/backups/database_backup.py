"""Backups of the SQLite database with SQLite's online backup API (safe while runs write), kept
7 daily, 4 weekly and 12 monthly per database; and a restore that checks the file is a facerec
database first and keeps a copy of what it replaces. No Dagster here.

Each database has its own folder of backups, storage/backups/<name>-<hash of its path>/, so
backing up one database never prunes another's backups. Files written before that (directly in
storage/backups/) are never pruned and can still be restored."""

from __future__ import annotations

import hashlib
import re
import shutil
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from facerec_pipeline.db.engine import dispose_engines
from facerec_pipeline.db.migrate import PROJECT_TABLES, known_revisions, upgrade

NAME = re.compile(r"^facerec-(\d{8}T\d{6}Z)\.db$")
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
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        raise BackupError(
            f"backups here cover the SQLite file only; back up {url.get_backend_name()} with its "
            "own tools (pg_dump for PostgreSQL)"
        )
    return Path(url.database)


def database_backups_dir(database_url: str, backups_dir: Path) -> Path:
    """The folder of this database's backups: named after the database file and a hash of its
    resolved path, so two databases never share (or prune) one pool."""
    source = sqlite_file(database_url).resolve()
    digest = hashlib.sha256(str(source).encode()).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", source.stem)[:40] or "database"
    return backups_dir / f"{stem}-{digest}"


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
    known = known_revisions()
    if len(revisions) != 1 or revisions[0] not in known:
        found = ", ".join(revisions) or "none"
        raise NotAFacerecDatabase(
            f"{path} has the facerec tables but a schema revision this code does not know "
            f"({found}; known: {known[0]} to {known[-1]}): made by a newer facerec, or altered"
        )
    if revisions[0] == known[-1] and not PROJECT_TABLES <= tables:
        lacking = sorted(PROJECT_TABLES - tables)
        raise NotAFacerecDatabase(
            f"{path} says schema {revisions[0]} but lacks the tables {', '.join(lacking)}"
        )
    return revisions[0]


def _copy(source: Path, target: Path, journal_mode: str = "DELETE") -> None:
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
        _copy(source, partial)
    except sqlite3.DatabaseError as error:
        raise BackupError(f"{source} cannot be copied ({error})") from error
    try:
        check_database_file(partial, thorough=False)  # _copy checked its integrity
    except NotAFacerecDatabase as error:
        raise BackupError(str(error).replace(str(partial), str(source))) from error


def backup_database(database_url: str, backups_dir: Path, now: datetime | None = None) -> Path:
    """Copy the database into its own folder under `backups_dir`; returns the new file. A
    database that is missing or not a facerec database is refused and no backup is touched."""
    source = sqlite_file(database_url)
    if not source.is_file():
        raise BackupError(
            f"no database at {source}: nothing backed up, existing backups untouched (check "
            "DATABASE_URL and FACEREC_STORAGE_DIR)"
        )
    now = now or datetime.now(UTC)
    folder = database_backups_dir(database_url, backups_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"facerec-{now.strftime(STAMP)}.db"
    partial = target.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    try:
        _checked_copy(source, partial)
    except BackupError as error:
        partial.unlink(missing_ok=True)
        if not any(folder.iterdir()):
            folder.rmdir()
        raise BackupError(f"{error}; nothing backed up, existing backups untouched") from error
    partial.replace(target)
    (folder / SOURCE_NOTE).write_text(f"{source.resolve()}\n")
    return target


def list_backups(backups_dir: Path) -> dict[datetime, Path]:
    found = {}
    for path in backups_dir.glob("facerec-*.db"):
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
            check_database_file(path, thorough=False)
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


def _keep_pre_restore_copy(target: Path, folder: Path) -> Path:
    """Copy the live database aside before a restore replaces it: an online copy when it is
    readable, else its bytes as they are (with its -wal file), so a damaged database can still be
    replaced without losing it."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime(STAMP)
    safety = folder / f"pre-restore-{stamp}.db"
    for number in range(2, 1000):  # never over an earlier copy (two restores in one second)
        if not safety.exists():
            break
        safety = folder / f"pre-restore-{stamp}-{number}.db"
    try:
        _copy(target, safety)
    except (sqlite3.DatabaseError, BackupError):
        safety.unlink(missing_ok=True)
        shutil.copyfile(target, safety)
        wal = target.with_name(target.name + "-wal")
        if wal.exists():
            shutil.copyfile(wal, safety.with_name(safety.name + "-wal"))
    if not safety.is_file() or safety.stat().st_size < min(target.stat().st_size, 1):
        raise BackupError(f"could not keep a copy of {target} in {safety}; nothing restored")
    return safety


def _replace_live(backup: Path, target: Path) -> None:
    try:
        _copy(backup, target, journal_mode="WAL")
    except sqlite3.DatabaseError:
        # The live file is not a database at all (its copy is kept): start it afresh.
        for path in (target, *(target.with_name(target.name + s) for s in ("-wal", "-shm"))):
            path.unlink(missing_ok=True)
        _copy(backup, target, journal_mode="WAL")


def restore_database(database_url: str, backup: Path, backups_dir: Path) -> Path | None:
    """Replace the database with `backup` once it is known to be an undamaged facerec database
    of a schema revision this code knows (else NotAFacerecDatabase, nothing touched). The
    current database is copied into its backups folder as `pre-restore-...db` (returned), and
    an older schema is upgraded. Pointer files are the caller's to reconcile."""
    target = sqlite_file(database_url)
    if not backup.is_file():
        raise BackupError(f"no backup file {backup}")
    if target.exists() and backup.resolve() == target.resolve():
        raise BackupError(f"{backup} is the database itself; name a backup file")
    try:
        check_database_file(backup)
    except NotAFacerecDatabase as refused:
        raise NotAFacerecDatabase(
            f"{refused}; nothing restored, the database is unchanged"
        ) from refused
    if not target.absolute().parent.is_dir():
        raise BackupError(
            f"no directory {target.absolute().parent} for the database; nothing "
            "restored (fix DATABASE_URL or FACEREC_STORAGE_DIR)"
        )
    dispose_engines()
    safety = None
    if target.exists():
        safety = _keep_pre_restore_copy(target, database_backups_dir(database_url, backups_dir))
    _replace_live(backup, target)
    dispose_engines()
    try:
        upgrade(database_url)
    except Exception as error:
        raise BackupError(
            f"restored {backup} but could not upgrade its schema ({error}); the previous "
            f"database is in {safety}"
        ) from error
    return safety
