"""Backups of the SQLite database with SQLite's online backup API (safe while runs write), or of
a PostgreSQL database with `pg_dump --format=custom` (a consistent snapshot, also safe while runs
write), kept 7 daily, 4 weekly and 12 monthly per database; and a restore that checks the backup
is a facerec database first and keeps a copy of what it replaces. No Dagster here.

On PostgreSQL the password goes to pg_dump, pg_restore and psql in their PGPASSWORD environment
variable only, never on a command line, and never appears in a message.

Each database has its own folder of backups, storage/backups/<name>-<hash of its path>/, so
backing up one database never prunes another's backups. Files written before that (directly in
storage/backups/) are never pruned and can still be restored."""

from __future__ import annotations

import hashlib
import json
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

from facerec_pipeline.db.engine import dispose_engines
from facerec_pipeline.db.migrate import PROJECT_TABLES, known_revisions, upgrade

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
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        raise BackupError(
            f"backups here cover the SQLite file only; back up {url.get_backend_name()} with its "
            "own tools (pg_dump for PostgreSQL)"
        )
    return Path(url.database)


def is_postgres(database_url: str) -> bool:
    return make_url(database_url).get_backend_name() == "postgresql"


def _postgres_identity(database_url: str) -> str:
    """The PostgreSQL database `database_url` names (host, port, name), no user or password."""
    url = make_url(database_url)
    host = url.host or url.query.get("host") or "localhost"
    return f"postgresql://{host}:{url.port or 5432}/{url.database or ''}"


def _postgres_client(database_url: str) -> tuple[str, dict[str, str], str | None]:
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


def _postgres_tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise BackupError(
            f"{name} not found: PostgreSQL backups need the PostgreSQL client tools on PATH "
            "(Debian: apt-get install postgresql-client)"
        )
    return found


def _masked(text: str, password: str | None) -> str:
    text = text.strip()
    return text.replace(password, "***") if password else text


def _run_postgres_tool(args: list[str], env: dict[str, str], password: str | None) -> str:
    """Run a PostgreSQL client tool; its stdout, else BackupError with its message (masked)."""
    try:
        done = subprocess.run(
            args, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
    except OSError as error:
        raise BackupError(f"cannot run {args[0]} ({_masked(str(error), password)})") from error
    if done.returncode != 0:
        lines = _masked(done.stderr, password).splitlines()
        raise BackupError(
            f"{Path(args[0]).name} failed ({'; '.join(lines[-3:]) or f'exit {done.returncode}'})"
        )
    return done.stdout


def database_backups_dir(database_url: str, backups_dir: Path) -> Path:
    """The folder of this database's backups: named after the database file and a hash of its
    resolved path (PostgreSQL: the database's name and a hash of its host, port and name), so two
    databases never share (or prune) one pool."""
    if is_postgres(database_url):
        identity = _postgres_identity(database_url)
        name = make_url(database_url).database or "database"
    else:
        source = sqlite_file(database_url).resolve()
        identity, name = str(source), source.stem
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:40] or "database"
    return backups_dir / f"{stem}-{digest}"


def check_dump_file(path: Path) -> str:
    """The schema revision recorded in the pg_dump custom-format file `path` if it is a dump of a
    facerec database this code knows, else NotAFacerecDatabase saying what it is. Needs
    pg_restore (reads the file only)."""
    if not path.is_file():
        raise NotAFacerecDatabase(f"no file {path}")
    pg_restore = _postgres_tool("pg_restore")
    try:
        listing = _run_postgres_tool([pg_restore, "--list", str(path)], dict(os.environ), None)
        data = _run_postgres_tool(
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
    known = known_revisions()
    if len(revisions) != 1 or revisions[0] not in known:
        found = ", ".join(revisions) or "none"
        raise NotAFacerecDatabase(
            f"{path} has the facerec tables but a schema revision this code does not know "
            f"({found}; known: {known[0]} to {known[-1]}): made by a newer facerec, or altered"
        )
    return revisions[0]


def served_files_elsewhere(backup: Path, storage_dir: Path) -> str | None:
    """Why the SQLite backup `backup` belongs to another storage root, or None: it has gallery
    versions that served (production, published) with recorded file checksums, and not one of
    them is intact under `storage_dir` (restored here, every version would be damaged and the
    domains stuck). PostgreSQL archives and schemas before file checksums are not judged."""
    from facerec_pipeline.core.gallery.publish import damaged_files

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


def check_backup_file(path: Path, thorough: bool = True) -> str:
    """The schema revision of the backup `path`: a pg_dump archive (.dump) or a SQLite file."""
    if path.suffix == DUMP_SUFFIX:
        return check_dump_file(path)
    return check_database_file(path, thorough)


def _dump_postgres(database_url: str, target: Path) -> None:
    """`pg_dump --format=custom` of the database into `target`."""
    uri, env, password = _postgres_client(database_url)
    pg_dump = _postgres_tool("pg_dump")
    _run_postgres_tool(
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
    if is_postgres(database_url):
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
        _dump_postgres(database_url, partial)
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
    an older schema is upgraded. Pointer files are the caller's to reconcile.

    On PostgreSQL `backup` is a pg_dump archive (.dump): the database is dumped first as
    `pre-restore-...dump`, then the archive is replayed (pg_restore --clean --if-exists, through
    psql in one transaction: on any error nothing changes)."""
    if is_postgres(database_url):
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
    folder = database_backups_dir(database_url, backups_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime(STAMP)
    safety = folder / f"pre-restore-{stamp}{DUMP_SUFFIX}"
    for number in range(2, 1000):  # never over an earlier copy (two restores in one second)
        if not safety.exists():
            break
        safety = folder / f"pre-restore-{stamp}-{number}{DUMP_SUFFIX}"
    dispose_engines()
    try:
        _dump_postgres(database_url, safety)
    except BackupError as error:
        safety.unlink(missing_ok=True)
        raise BackupError(
            f"could not keep a copy of the database ({error}); nothing restored"
        ) from error
    uri, env, password = _postgres_client(database_url)
    pg_restore, psql = _postgres_tool("pg_restore"), _postgres_tool("psql")
    # Tables of a newer schema than the backup's would be left behind by --clean and block the
    # upgrade that follows: dropped first, in the same transaction.
    drops = "".join(
        f'DROP TABLE IF EXISTS "{table}" CASCADE;\n' for table in sorted(PROJECT_TABLES)
    )
    script = _run_postgres_tool(
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
        raise BackupError(f"cannot run psql ({_masked(str(error), password)})") from error
    if done.returncode != 0:
        lines = _masked(done.stderr, password).splitlines()
        raise BackupError(
            f"restoring {backup} failed ({'; '.join(lines[-3:])}); nothing restored, the "
            f"database is unchanged (its copy: {safety})"
        )
    return _upgrade_restored(database_url, backup, safety)


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
