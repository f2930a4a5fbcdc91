"""Backups of the SQLite database with SQLite's online backup API (safe while runs write), kept
7 daily, 4 weekly and 12 monthly; and a restore that keeps a copy of what it replaces.
No Dagster here."""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from facerec_pipeline.db.engine import dispose_engines

NAME = re.compile(r"^facerec-(\d{8}T\d{6}Z)\.db$")
STAMP = "%Y%m%dT%H%M%SZ"


class BackupError(RuntimeError):
    pass


def sqlite_file(database_url: str) -> Path:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        raise BackupError(
            f"backups here cover the SQLite file only; back up {url.get_backend_name()} with its "
            "own tools (pg_dump for PostgreSQL)"
        )
    return Path(url.database)


def _copy(source: Path, target: Path, journal_mode: str = "DELETE") -> None:
    """Page-by-page online copy; `target` ends as one self-contained file (or in WAL mode when it
    is the live database being restored)."""
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
        dst.execute(f"PRAGMA journal_mode={journal_mode}")
        result = dst.execute("PRAGMA integrity_check").fetchone()[0]
    if result != "ok":
        raise BackupError(f"{target} failed its integrity check: {result}")


def backup_database(database_url: str, backups_dir: Path, now: datetime | None = None) -> Path:
    source = sqlite_file(database_url)
    if not source.exists():
        raise BackupError(f"no database at {source} to back up")
    now = now or datetime.now(UTC)
    backups_dir.mkdir(parents=True, exist_ok=True)
    target = backups_dir / f"facerec-{now.strftime(STAMP)}.db"
    partial = target.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    _copy(source, partial)
    partial.replace(target)
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
    newest_per(lambda s: (s.year, s.month), monthly,
               lambda s: (day.year - s.year) * 12 + day.month - s.month < monthly)  # fmt: skip
    return keep


def prune_backups(backups_dir: Path, now: datetime | None = None) -> list[Path]:
    found = list_backups(backups_dir)
    keep = backups_to_keep(list(found), now or datetime.now(UTC))
    removed = [path for stamp, path in sorted(found.items()) if stamp not in keep]
    for path in removed:
        path.unlink()
    return removed


def restore_database(database_url: str, backup: Path, backups_dir: Path) -> Path | None:
    """Replace the database with `backup` (checked first). The current database is backed up
    beside the others as `pre-restore-...db` and returned."""
    target = sqlite_file(database_url)
    if not backup.is_file():
        raise BackupError(f"no backup file {backup}")
    try:
        with closing(sqlite3.connect(f"file:{backup}?mode=ro", uri=True)) as check:
            healthy = check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    except sqlite3.DatabaseError as error:
        raise BackupError(
            f"{backup} is not a readable database ({error}); nothing restored"
        ) from error
    if not healthy:
        raise BackupError(f"{backup} is damaged; nothing was restored")
    safety = None
    dispose_engines()
    if target.exists():
        backups_dir.mkdir(parents=True, exist_ok=True)
        safety = backups_dir / f"pre-restore-{datetime.now(UTC).strftime(STAMP)}.db"
        _copy(target, safety)
    _copy(backup, target, journal_mode="WAL")
    return safety
