"""Restoring a backup made by backups.py: a restore that checks the backup is a facerec database
first (and, for SQLite, that it was taken with this storage root) and keeps a copy of what it
replaces, then brings an older schema up to this code's. No Dagster here.

On PostgreSQL the backup is a pg_dump archive, replayed through psql in one transaction; the
password goes to pg_dump, pg_restore and psql in their PGPASSWORD environment variable only,
never on a command line, and never appears in a message."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from facerec_pipeline.app.backups import (
    DUMP_SUFFIX,
    STAMP,
    BackupError,
    NotAFacerecDatabase,
    check_database_file,
    check_dump_file,
    database_backups_dir,
    dump_postgres,
    masked,
    online_copy,
    postgres_client,
    postgres_tool,
    run_postgres_tool,
    sqlite_file,
)
from facerec_pipeline.db.engine import dispose_engines, is_postgresql
from facerec_pipeline.db.migrate import PROJECT_TABLES, upgrade


def served_files_elsewhere(backup: Path, storage_dir: Path) -> str | None:
    """Why the SQLite backup `backup` belongs to another storage root, or None: it has gallery
    versions that served (production, published) with recorded file checksums, and not one of
    them is intact under `storage_dir` (restored here, every version would be damaged and the
    domains stuck). PostgreSQL archives and schemas before file checksums are not judged."""
    from facerec_pipeline.core.gallery.loading import damaged_files

    if backup.suffix == DUMP_SUFFIX:
        return None
    try:
        with closing(sqlite3.connect(f"file:{backup}?mode=ro", uri=True)) as connection:
            versions = connection.execute(
                "SELECT domain, version, file_checksums FROM galleries WHERE file_checksums IS "
                "NOT NULL AND status IN ('production', 'published') ORDER BY domain, version"
            ).fetchall()
    except sqlite3.Error:
        return None
    first_problem = None
    for domain, version, checksums in versions:
        problems = damaged_files(storage_dir, json.loads(checksums or "{}"))
        if not problems:
            return None  # one served version's files are here: this storage root's database
        first_problem = first_problem or f"v{version} of {domain!r}: {problems[0]}"
    if first_problem is None:
        return None
    return (
        f"{backup} was taken with another storage root: none of its {len(versions)} served gallery "
        f"versions has its files under {storage_dir} ({first_problem}); restore it with "
        "FACEREC_STORAGE_DIR set to the storage root it was taken with"
    )


def _pre_restore_path(folder: Path, suffix: str) -> Path:
    """A new `pre-restore-<now><suffix>` path in `folder` (made if missing) for the copy of the
    database a restore replaces."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime(STAMP)
    safety = folder / f"pre-restore-{stamp}{suffix}"
    for number in range(2, 1000):  # never over an earlier copy (two restores in one second)
        if not safety.exists():
            break
        safety = folder / f"pre-restore-{stamp}-{number}{suffix}"
    return safety


def _keep_pre_restore_copy(target: Path, folder: Path) -> Path:
    """Copy the live database aside before a restore replaces it: an online copy when it is
    readable, else its bytes as they are (with its -wal file), so a damaged database can still be
    replaced without losing it."""
    safety = _pre_restore_path(folder, ".db")
    try:
        online_copy(target, safety)
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
        online_copy(backup, target, journal_mode="WAL")
    except sqlite3.DatabaseError:
        # The live file is not a database at all (its copy is kept): start it afresh.
        for path in (target, *(target.with_name(target.name + s) for s in ("-wal", "-shm"))):
            path.unlink(missing_ok=True)
        online_copy(backup, target, journal_mode="WAL")


def restore_database(database_url: str, backup: Path, backups_dir: Path) -> Path | None:
    """Replace the database with `backup` once it is known to be an undamaged facerec database
    of a schema revision this code knows (else NotAFacerecDatabase, nothing touched). The
    current database is copied into its backups folder as `pre-restore-...db` (returned), and
    an older schema is upgraded. Pointer files are the caller's to reconcile.

    On PostgreSQL `backup` is a pg_dump archive (.dump): the database is dumped first as
    `pre-restore-...dump`, then the archive is replayed (pg_restore --clean --if-exists, through
    psql in one transaction: on any error nothing changes)."""
    if is_postgresql(database_url):
        return _restore_postgres(database_url, backup, backups_dir)
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
    return _upgrade_restored(database_url, backup, safety)


def _restore_postgres(database_url: str, backup: Path, backups_dir: Path) -> Path:
    if not backup.is_file():
        raise BackupError(f"no backup file {backup}")
    if backup.suffix != DUMP_SUFFIX:
        raise BackupError(
            f"{backup} is not a pg_dump archive (facerec-*{DUMP_SUFFIX}); a PostgreSQL database is "
            "restored from its own backups (`facerec db backup` with this DATABASE_URL)"
        )
    try:
        check_dump_file(backup)
    except NotAFacerecDatabase as refused:
        raise NotAFacerecDatabase(
            f"{refused}; nothing restored, the database is unchanged"
        ) from refused
    safety = _pre_restore_path(database_backups_dir(database_url, backups_dir), DUMP_SUFFIX)
    dispose_engines()
    _keep_pre_restore_dump(database_url, safety)
    _replay_dump(database_url, backup, safety)
    return _upgrade_restored(database_url, backup, safety)


def _keep_pre_restore_dump(database_url: str, safety: Path) -> None:
    """Dump the live PostgreSQL database into `safety` before a restore replaces it."""
    try:
        dump_postgres(database_url, safety)
    except BackupError as error:
        safety.unlink(missing_ok=True)
        raise BackupError(
            f"could not keep a copy of the database ({error}); nothing restored"
        ) from error


def _replay_dump(database_url: str, backup: Path, safety: Path) -> None:
    """Replay the pg_dump archive `backup` into the database (pg_restore --clean --if-exists,
    through psql in one transaction: on any error nothing changes; `safety` is named then)."""
    uri, env, password = postgres_client(database_url)
    pg_restore, psql = postgres_tool("pg_restore"), postgres_tool("psql")
    # Tables of a newer schema than the backup's would be left behind by --clean and block the
    # upgrade that follows: dropped first, in the same transaction.
    drops = "".join(
        f'DROP TABLE IF EXISTS "{table}" CASCADE;\n' for table in sorted(PROJECT_TABLES)
    )
    script = run_postgres_tool(
        [
            pg_restore,
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-privileges",
            "--file=-",
            str(backup),
        ],
        env,
        password,
    )
    try:
        done = subprocess.run(
            [
                psql,
                "--no-psqlrc",
                "--quiet",
                "--no-password",
                "--single-transaction",
                "--set=ON_ERROR_STOP=1",
                f"--dbname={uri}",
                "--file=-",
            ],
            input=drops + script,
            env=env,
            capture_output=True,
            text=True,
        )
    except OSError as error:
        raise BackupError(f"cannot run psql ({masked(str(error), password)})") from error
    if done.returncode != 0:
        lines = masked(done.stderr, password).splitlines()
        raise BackupError(
            f"restoring {backup} failed ({'; '.join(lines[-3:])}); nothing restored, the "
            f"database is unchanged (its copy: {safety})"
        )


def _upgrade_restored(database_url: str, backup: Path, safety: Path | None) -> Path | None:
    """A restored database brought up to this code's schema (a backup may be older)."""
    dispose_engines()
    try:
        upgrade(database_url)
    except Exception as error:
        raise BackupError(
            f"restored {backup} but could not upgrade its schema ({error}); the previous "
            f"database is in {safety}"
        ) from error
    return safety
