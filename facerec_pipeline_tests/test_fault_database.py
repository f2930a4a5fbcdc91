"""Database faults an operator meets: restoring the wrong file, a wrong or garbage DATABASE_URL,
a read-only data root, backups of two databases side by side, and small input mistakes. Each
must end in the right answer or a one-line error naming what to fix, with nothing stored lost."""

import json
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from alembic import command

from facerec_pipeline.app.backups import (
    backup_database,
    database_backups_dir,
    list_backups,
    prune_backups,
)
from facerec_pipeline.db.engine import dispose_engines, get_engine
from facerec_pipeline.db.migrate import alembic_config, head_revision
from facerec_pipeline.defs.backups.jobs import database_backup_job
from facerec_pipeline.defs.resources import FacerecStorage
from facerec_pipeline.settings import Settings, masked_url
from facerec_pipeline_tests.conftest import build_folder

PASSWORD = "hunter2-s3cret"
STAMP = "%Y%m%dT%H%M%SZ"


def one_line_error(result, *expected: str) -> str:
    """The command failed with a single `Error:` line (no traceback) containing `expected`."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    for text in expected:
        assert text in errors[0], result.output
    return errors[0]


def domain_codes(facerec, **env) -> list[str]:
    listed = facerec("domains", "list", **env)
    assert listed.exit_code == 0, listed.output
    return [line.split()[0] for line in listed.stdout.splitlines()[2:]]


def backed_up_to(result) -> Path:
    assert result.exit_code == 0, result.output
    return Path(result.stdout.split("backed up to ")[1].split(";")[0])


def add_domain(facerec, code: str, folder: Path, **env) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    added = facerec(
        "domains",
        "add",
        code,
        "--name",
        code.title(),
        "--source",
        "folder",
        "--path",
        str(folder),
        **env,
    )
    assert added.exit_code == 0, added.output


def old_database(path: Path, revision: str, code: str) -> Path:
    """A facerec database at an older schema `revision`, holding one domain."""
    url = f"sqlite:///{path}"
    config = alembic_config(url)
    with get_engine(url).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO domains (code, display_name, source, countries, occupations, "
            "min_sitelinks, max_people, images_per_person, serp_budget, refresh_cron, is_active, "
            "stats, created_at, updated_at) VALUES (?, 'Old', 'wikidata', '[]', '[]', 10, 500, 10, "
            "0, '0 3 * * 1', 1, '{}', '2026-01-01', '2026-01-01')",
            (code,),
        )
    with get_engine(url).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    dispose_engines()
    return path


# --- restore --------------------------------------------------------------------------------------
def test_restore_of_an_older_backup_upgrades_it_and_keeps_the_replaced_database(facerec, tmp_path):
    add_domain(facerec, "current", tmp_path / "photos")
    pointer = facerec.storage / "recognized_faces_prod" / "current" / "gallery.json"
    pointer.parent.mkdir(parents=True)  # a pointer the restored database does not know
    pointer.write_text(json.dumps({"version": 2, "batches": [], "model_config": "Dlib"}))
    backup = old_database(tmp_path / "old.db", "0003", "restored")

    result = facerec("db", "restore", str(backup), "--yes")
    assert result.exit_code == 0, result.output
    assert f"upgraded its schema from 0003 to {head_revision('sqlite://')}" in result.output
    # The restored rows know no gallery of 'current': its pointer no longer claims one serves.
    assert "production pointer current: " in result.output
    assert not (facerec.storage / "recognized_faces_prod/current/gallery.json").exists()
    assert domain_codes(facerec) == ["restored"]
    safety = Path(result.output.split("the previous database is in ")[1].split()[0])
    assert safety.name.startswith("pre-restore-") and safety.exists()
    with sqlite3.connect(safety) as kept:
        assert kept.execute("SELECT code FROM domains").fetchall() == [("current",)]


def foreign_files(tmp_path: Path) -> dict[str, Path]:
    unrelated = tmp_path / "unrelated.db"
    with sqlite3.connect(unrelated) as db:
        db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")):
        pass  # Dagster's own run storage, as `facerec db restore` must not take it
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    sqlite3.connect(tmp_path / "no_tables.db").close()
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(4096))
    return {
        "not a facerec database: it lacks the tables domains": unrelated,
        "not a facerec database: it lacks the tables domains, ": tmp_path
        / "dagster_home/history/runs.db",
        "is an empty SQLite database (no tables)": empty,
        "is an empty SQLite database": tmp_path / "no_tables.db",
        "is not a readable database (SQLite: file is not a database)": garbage,
    }


def test_restore_refuses_foreign_empty_and_garbage_files(facerec, tmp_path):
    add_domain(facerec, "kept", tmp_path / "photos")
    database = facerec.storage / "facerec.db"
    for expected, path in foreign_files(tmp_path).items():
        assert path.exists(), path
        refused = facerec("db", "restore", str(path), "--yes")
        one_line_error(refused, expected, "nothing restored, the database is unchanged")
        asked = facerec("db", "restore", str(path))  # refused before asking
        one_line_error(asked, "nothing restored")
        assert "Replace" not in asked.output
    assert domain_codes(facerec) == ["kept"]
    assert database.exists() and not list(facerec.storage.glob("backups/*/pre-restore-*"))


def test_restore_refuses_a_backup_of_another_storage_root(facerec, tmp_path, photos, models_dir):
    """Same domain code, other files: restored here, every version would be damaged."""
    other = tmp_path / "other_root"
    other.mkdir()
    (other / "models").symlink_to(models_dir, target_is_directory=True)
    for storage, photo in ((facerec.storage, "obama.jpg"), (other, "biden.jpg")):
        folder = build_folder(tmp_path / f"photos_{photo}", {"someone": [photos / photo]})
        env = {"FACEREC_STORAGE_DIR": str(other)} if storage == other else {}
        add_domain(facerec, "demo", folder, **env)
        ran = facerec("run", "--domain", "demo", **env)
        assert ran.exit_code == 0, ran.output
    foreign = backed_up_to(facerec("db", "backup", FACEREC_STORAGE_DIR=str(other)))
    own = backed_up_to(facerec("db", "backup"))
    database = facerec.storage / "facerec.db"
    before = database.read_bytes()
    error = one_line_error(
        facerec("db", "restore", str(foreign), "--yes"),
        f"{foreign} was taken with another storage root",
        f"none of its 1 served gallery versions has its files under {facerec.storage}",
        "v1 of 'demo': recognized_faces_batched/demo/",
        "FACEREC_STORAGE_DIR set to the storage root it was taken with",
        "nothing restored, the database is unchanged",
    )
    assert "missing" in error or "altered" in error
    assert database.read_bytes() == before
    restored = facerec("db", "restore", str(own), "--yes")  # its own backup still restores
    assert restored.exit_code == 0, restored.output


def test_restore_refuses_a_revision_this_code_does_not_know(facerec, tmp_path):
    newer = old_database(tmp_path / "newer.db", "0003", "future")
    with sqlite3.connect(newer) as db:
        db.execute("UPDATE alembic_version SET version_num = '9999'")
    one_line_error(
        facerec("db", "restore", str(newer), "--yes"),
        "schema revision this code does not know (9999",
        "nothing restored",
    )


def test_a_damaged_database_says_restore_and_restore_keeps_its_bytes(facerec, tmp_path):
    add_domain(facerec, "kept", tmp_path / "photos")
    backup = backed_up_to(facerec("db", "backup"))
    database = facerec.storage / "facerec.db"
    for companion in facerec.storage.glob("facerec.db-*"):
        companion.unlink()
    damaged = os.urandom(8192)
    database.write_bytes(damaged)
    one_line_error(
        facerec("domains", "list"),
        "file is not a database",
        "restore a backup with `facerec db restore BACKUP`",
    )
    for _ in range(2):  # twice in a second: the second copy does not replace the first
        restored = facerec("db", "restore", str(backup), "--yes")
        assert restored.exit_code == 0, restored.output
    assert domain_codes(facerec) == ["kept"]
    copies = sorted(backup.parent.glob("pre-restore-*.db"))
    assert len(copies) == 2 and damaged in [copy.read_bytes() for copy in copies]


def test_a_damaged_wal_or_value_says_restore_in_one_line(facerec, tmp_path):
    """A `-wal` cut while a reader holds it open ("disk I/O error"), and a value no longer in its
    type's form (a flipped byte the reader trusts): one line naming the newest backup to restore."""
    add_domain(facerec, "kept", tmp_path / "photos")
    backup = backed_up_to(facerec("db", "backup"))
    database = facerec.storage / "facerec.db"
    reader = sqlite3.connect(database)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM domains").fetchall()  # holds the WAL open
    writer = sqlite3.connect(database)
    for step in range(30):
        writer.execute("UPDATE domains SET display_name = ?", (f"Kept {step}",))
        writer.commit()
    writer.close()
    wal = database.with_name("facerec.db-wal")
    os.truncate(wal, wal.stat().st_size // 2 + 123)
    try:
        for args in (["domains", "list"], ["stats"], ["domains", "show", "kept"]):
            one_line_error(
                facerec(*args),
                f"the database sqlite:///{database} is damaged (disk I/O error)",
                f"facerec db restore {backup}",
            )
    finally:
        reader.close()
    restored = facerec("db", "restore", str(backup), "--yes")
    assert restored.exit_code == 0, restored.output
    assert domain_codes(facerec) == ["kept"]

    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE domains SET created_at = '2026-1Z-02 17:1'")
    one_line_error(
        facerec("domains", "show", "kept"),
        f"the database sqlite:///{database} is damaged",
        "(Invalid isoformat string: '2026-1Z-02 17:1')",
        f"facerec db restore {backup}",
    )


# --- DATABASE_URL ---------------------------------------------------------------------------------
def test_a_database_url_into_a_missing_directory_creates_nothing(facerec, tmp_path):
    missing = tmp_path / "nonexistent_dir"
    url = f"sqlite:///{missing / 'x.db'}"
    for args in (["domains", "list"], ["db", "upgrade"], ["db", "backup"], ["stats"]):
        one_line_error(
            facerec(*args, DATABASE_URL=url),
            f"DATABASE_URL={url}",
            f"the directory {missing} does not exist",
        )
    assert not missing.exists()
    assert not (facerec.storage / "facerec.db").exists()


def test_commands_that_only_read_never_create_a_database(facerec, tmp_path, photos):
    typo = tmp_path / "facerc.db"  # a mistyped file name in an existing directory
    url = f"sqlite:///{typo}"
    for args in (
        ["recognize", "--domain", "demo", str(photos / "obama.jpg")],
        ["evaluate", "--domain", "demo", "--probes", str(tmp_path)],
        ["domains", "list"],
        ["domains", "show", "demo"],
        ["stats"],
        ["skips", "--domain", "demo"],
        ["gallery", "list", "--domain", "demo"],
        ["artifacts", "verify"],
        ["models", "list"],
    ):
        one_line_error(
            facerec(*args, DATABASE_URL=url),
            f"no database at {typo} (DATABASE_URL)",
            "never creates one; fix DATABASE_URL",
        )
    assert not typo.exists()
    # A fresh storage root: listing says there is nothing yet, and still creates nothing.
    assert "no domains yet" in facerec("domains", "list").output
    assert facerec("stats").exit_code == 0
    assert facerec("models", "list").exit_code == 0
    one_line_error(
        facerec("recognize", "--domain", "demo", str(photos / "obama.jpg")),
        "no database at",
        "add a domain first",
    )
    assert not (facerec.storage / "facerec.db").exists()


def test_a_database_another_process_locks_says_so(facerec, monkeypatch):
    import sqlite3

    from facerec_pipeline.db import engine as db_engine

    assert facerec("domains", "list").exit_code == 0  # the database exists
    monkeypatch.setattr(db_engine, "SQLITE_BUSY_TIMEOUT_MS", 300)  # wait 0.3 s, not 30
    holder = sqlite3.connect(facerec.storage / "facerec.db")
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        error = one_line_error(facerec("domains", "list"), "database is locked")
        assert "another process holds the database locked" in error
        assert "writable" not in error
    finally:
        holder.rollback()
        holder.close()
    assert facerec("domains", "list").exit_code == 0


def test_a_run_under_a_long_lock_fails_in_one_line_and_keeps_its_history(
    facerec, tmp_path, photos, monkeypatch
):
    """Another process holds the database (an exclusive lock) when the run ends and past it: the
    run's history row cannot be written. One line says so, and the next command writes the row
    once the lock is gone (it was missing from `facerec history` for good)."""
    from facerec_pipeline.db import engine as db_engine
    from facerec_pipeline.defs import launch as pipeline_run

    folder = build_folder(tmp_path / "photos", {"barack_obama": [photos / "obama.jpg"]})
    add_domain(facerec, "demo", folder)
    monkeypatch.setattr(db_engine, "SQLITE_BUSY_TIMEOUT_MS", 300)  # wait 0.3 s, not 30
    holders = []
    record_run = pipeline_run.record_run

    def locked_first(*args, **kwargs):
        dispose_engines()  # the run's idle pooled connections: another process has none
        holder = sqlite3.connect(facerec.storage / "facerec.db")
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holders.append(holder)
        return record_run(*args, **kwargs)

    monkeypatch.setattr(pipeline_run, "record_run", locked_first)
    try:
        ran = facerec("run", "--domain", "demo")
    finally:
        for holder in holders:
            holder.rollback()
            holder.close()
    assert len(holders) == 1 and ran.exit_code == 1, ran.output
    assert "Traceback" not in ran.output
    last = ran.output.strip().splitlines()[-1]
    assert last.startswith("Error: run ") and "of 'demo' succeeded, but its history" in last, last
    assert "could not be written: the database is unavailable (database is locked)" in last
    assert "the next `facerec run` or `facerec history` writes it" in last
    monkeypatch.undo()
    listed = facerec("history", "--domain", "demo", "--json")
    assert listed.exit_code == 0, listed.output
    assert "history written (the run ended SUCCESS without writing it)" in listed.output
    history = json.loads(listed.stdout[listed.stdout.index("[") :])
    assert [row["status"] for row in history] == ["succeeded"]
    assert history[0]["counts"]["candidates"]["people"] == 1


@pytest.mark.parametrize(
    "url",
    [
        "notaurl",
        "postgresql://",
        "sqlit:///facerec.db",
        "sqlite://",
        f"postgresql://bob:{PASSWORD}@127.0.0.1:1/facerec",
        f"postgresql//bob:{PASSWORD}@db/facerec",
        f"sqlite://bob:{PASSWORD}@/facerec.db",
    ],
)
def test_a_garbage_database_url_is_a_one_line_error_naming_it(facerec, url):
    for args in (["domains", "list"], ["db", "upgrade"]):
        result = facerec(*args, DATABASE_URL=url)
        one_line_error(result, "DATABASE_URL")
        assert PASSWORD not in result.output
    assert not (facerec.storage / "facerec.db").exists()


def test_the_database_url_in_use_is_named_with_its_password_masked(facerec, tmp_path):
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    upgraded = facerec("db", "upgrade", DATABASE_URL=url)
    assert upgraded.exit_code == 0, upgraded.output
    note = upgraded.stderr.splitlines()[0]
    assert note == f"using DATABASE_URL={url} (no database file there yet)"
    assert "using DATABASE_URL" not in facerec("domains", "list").output  # the default is quiet
    secret = f"postgresql://bob:{PASSWORD}@db.example/facerec"
    assert masked_url(secret) == "postgresql://bob:***@db.example/facerec"
    assert PASSWORD not in masked_url(f"postgresql//bob:{PASSWORD}@db/facerec")  # unparsable
    shown = Settings(tmp_path, secret, database_url_from_env=True)
    assert PASSWORD not in shown.database_label + shown.database_hint()


def test_a_read_only_data_root_is_a_one_line_error(facerec, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    for root in (a_file, a_file / "storage"):
        one_line_error(
            facerec("domains", "list", FACEREC_STORAGE_DIR=str(root)),
            "FACEREC_STORAGE_DIR",
            str(root),
        )


@pytest.mark.skipif(
    os.geteuid() == 0,
    reason="root writes through chmod 555 (the case of a path "
    "under a regular file is tested above)",
)
def test_a_chmod_555_data_root_is_a_one_line_error(facerec, tmp_path):
    root = tmp_path / "read_only"
    root.mkdir()
    root.chmod(0o555)
    try:
        for storage in (root, root / "storage"):
            one_line_error(
                facerec("domains", "list", FACEREC_STORAGE_DIR=str(storage)),
                "FACEREC_STORAGE_DIR",
                str(storage),
            )
    finally:
        root.chmod(0o755)


# --- backups --------------------------------------------------------------------------------------
def test_backups_of_two_databases_do_not_prune_each_other(facerec, tmp_path):
    add_domain(facerec, "real", tmp_path / "photos")
    real_backup = backed_up_to(facerec("db", "backup"))
    wrong_url = f"sqlite:///{tmp_path / 'wrong.db'}"
    assert facerec("db", "upgrade", DATABASE_URL=wrong_url).exit_code == 0
    wrong_backups = [
        backed_up_to(facerec("db", "backup", DATABASE_URL=wrong_url)) for _ in range(2)
    ]
    assert real_backup.exists() and real_backup.parent != wrong_backups[0].parent
    with sqlite3.connect(real_backup) as db:
        assert db.execute("SELECT code FROM domains").fetchall() == [("real",)]

    # The scheduled job writes beside `facerec db backup` of the same database.
    settings = Settings(facerec.storage, f"sqlite:///{facerec.storage / 'facerec.db'}")
    resources = {
        "facerec": FacerecStorage(
            storage_dir=str(settings.storage_dir), database_url=settings.database_url
        )
    }
    assert database_backup_job.execute_in_process(resources=resources).success
    assert real_backup.parent == database_backups_dir(settings.database_url, settings.backups_dir)
    # Retention keeps the newest backup of the day: the job's, or the CLI's when both fell in
    # the same second (the same file name).
    (newest, newest_path), *_ = sorted(list_backups(real_backup.parent).items(), reverse=True)
    assert newest_path.exists() and newest >= datetime.strptime(
        real_backup.stem.removeprefix("facerec-"), "%Y%m%dT%H%M%SZ"
    ).replace(tzinfo=UTC)
    assert all(path.parent == wrong_backups[0].parent for path in wrong_backups)

    restored = facerec("db", "restore", str(newest_path), "--yes")
    assert restored.exit_code == 0, restored.output
    flat = facerec.storage / "backups" / "facerec-20260101T000000Z.db"  # the layout before
    flat.write_bytes(newest_path.read_bytes())
    assert facerec("db", "restore", str(flat), "--yes").exit_code == 0
    assert domain_codes(facerec) == ["real"]


def test_a_missing_or_foreign_database_is_not_backed_up_and_prunes_nothing(facerec, tmp_path):
    add_domain(facerec, "real", tmp_path / "photos")
    assert facerec("db", "backup").exit_code == 0
    before = sorted(facerec.storage.glob("backups/**/*"))
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    one_line_error(
        facerec("db", "backup", DATABASE_URL=missing),
        f"no database at {tmp_path / 'missing.db'}",
        "backups untouched",
    )
    assert not (tmp_path / "missing.db").exists()
    for path in foreign_files(tmp_path).values():
        one_line_error(
            facerec("db", "backup", DATABASE_URL=f"sqlite:///{path}"),
            str(path),
            "nothing backed up, existing backups untouched",
        )
    assert sorted(facerec.storage.glob("backups/**/*")) == before


def test_retention_keeps_the_newest_good_backup(settings):
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    good = backup_database(settings.database_url, settings.backups_dir, now - timedelta(hours=3))
    folder = good.parent
    for hours in (1, 2):  # later the same day: copies of something that is not the database
        (folder / f"facerec-{(now - timedelta(hours=hours)).strftime(STAMP)}.db").write_bytes(b"")
    assert good not in prune_backups(folder, now) and good.exists()

    lone = backup_database(settings.database_url, settings.backups_dir, now - timedelta(days=500))
    for path in list_backups(folder).values():
        if path != lone:
            path.unlink()
    assert prune_backups(folder, now) == [] and lone.exists()  # older than every window, kept


# --- smaller mistakes -----------------------------------------------------------------------------
def test_stats_of_an_empty_domain_code_is_an_error(facerec, tmp_path):
    add_domain(facerec, "serbia", tmp_path / "photos")
    one_line_error(facerec("stats", "--domain", ""), "invalid domain code ''")
    one_line_error(facerec("stats", "--domain", "", "--json"), "invalid domain code ''")


def test_an_invalid_cron_is_rejected_naming_the_option(facerec, tmp_path):
    for cron in ("not a cron", "61 * * * *", "0 3 31 2 *", "* * * * * *"):
        rejected = facerec(
            "domains",
            "add",
            "serbia",
            "--name",
            "Serbia",
            "--source",
            "folder",
            "--path",
            str(tmp_path),
            "--cron",
            cron,
        )
        one_line_error(rejected, f"--cron {cron!r}")
    assert domain_codes(facerec) == []


def test_an_inactive_domain_answers_with_a_note(facerec, tmp_path, photos):
    folder = build_folder(
        tmp_path / "photos",
        {
            "barack_obama": [photos / "obama.jpg", photos / "obama2.jpg"],
            "joe_biden": [photos / "biden.jpg"],
        },
    )
    add_domain(facerec, "demo", folder)
    assert facerec("run", "--domain", "demo").exit_code == 0
    assert (
        "is inactive"
        not in facerec("recognize", "--domain", "demo", str(photos / "obama3.jpg")).output
    )
    assert facerec("domains", "deactivate", "demo").exit_code == 0
    answered = facerec("recognize", "--domain", "demo", str(photos / "obama3.jpg"))
    assert answered.exit_code == 0, answered.output
    assert answered.stderr.splitlines()[0] == (
        "note: domain 'demo' is inactive: its gallery is no longer rebuilt and may be stale "
        "(`facerec domains activate demo` to build it again)"
    )
    assert "Barack Obama (demo)" in answered.stdout
