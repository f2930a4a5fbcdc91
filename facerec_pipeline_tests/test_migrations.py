import sqlite3

import pytest
from alembic import command
from sqlalchemy import inspect

from facerec_pipeline.db.engine import get_engine
from facerec_pipeline.db.migrate import alembic_config, current_revision, head_revision, upgrade


def test_an_older_database_is_upgraded_with_its_data_kept(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    config = alembic_config(url)
    with get_engine(url).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    with sqlite3.connect(tmp_path / "old.db") as db:
        db.execute(
            "INSERT INTO domains (code, display_name, source, countries, occupations, "
            "min_sitelinks, max_people, images_per_person, serp_budget, refresh_cron, is_active, "
            "stats, created_at, updated_at) VALUES ('serbia', 'Serbia', 'wikidata', '[]', '[]', "
            "10, 500, 10, 0, '0 3 * * 1', 1, '{}', '2026-01-01', '2026-01-01')"
        )
    assert current_revision(url) == "0001"
    assert upgrade(url) == ("0001", head_revision(url))
    assert {"source_skips", "serp_calls"} <= set(inspect(get_engine(url)).get_table_names())
    with sqlite3.connect(tmp_path / "old.db") as db:
        assert db.execute("SELECT code FROM domains").fetchall() == [("serbia",)]
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert upgrade(url) == (head_revision(url), head_revision(url))  # nothing left to do
    # 0006: the columns nothing wrote are gone, and the way back restores them, data kept.
    columns = {
        table: {c["name"] for c in inspect(get_engine(url)).get_columns(table)}
        for table in ("domains", "people")
    }
    assert "stats" not in columns["domains"] and "images_by_source" not in columns["people"]
    with get_engine(url).begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0005")
    assert "stats" in {c["name"] for c in inspect(get_engine(url)).get_columns("domains")}
    assert upgrade(url) == ("0005", head_revision(url))
    with sqlite3.connect(tmp_path / "old.db") as db:
        assert db.execute("SELECT code FROM domains").fetchall() == [("serbia",)]


def _migrate(url: str, revision: str, down: bool = False) -> None:
    config = alembic_config(url)
    with get_engine(url).begin() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)


OLD_REFS = [
    ("photos", "folder:ana_ivanovic", "ana_ivanovic"),
    ("photos", "folder:[1]", "[1]"),  # a folder name that looks like JSON stays a folder name
    ("serbia", "wikidata:Q1", '["Novak Đoković 2019.jpg", "B.jpg"]'),
    ("serbia", "wikidata:Q2", "[]"),
    ("serbia", "wikidata:Q3", None),
]


def _old_database(tmp_path, refs=OLD_REFS) -> str:
    """A database at 0006 whose people hold the untyped source_ref of the code before 0007."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    _migrate(url, "0006")
    with sqlite3.connect(tmp_path / "old.db") as db:
        for code, source in (("photos", "folder"), ("serbia", "wikidata")):
            db.execute(
                "INSERT INTO domains (code, display_name, source, countries, occupations, "
                "min_sitelinks, max_people, images_per_person, serp_budget, refresh_cron, "
                "is_active, created_at, updated_at) VALUES (?, ?, ?, '[]', '[]', 10, 500, 10, 0, "
                "'0 3 * * 1', 1, '2026-01-01', '2026-01-01')",
                (code, code.title(), source),
            )
        for number, (code, key, ref) in enumerate(refs):
            db.execute(
                "INSERT INTO people (domain, person_key, full_name, normalized_name, source_ref, "
                "status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', "
                "'2026-01-01', '2026-01-01')",
                (code, key, f"Person {number}", f"person_{number}", ref),
            )
    return url


def test_0007_gives_the_people_of_an_older_database_typed_source_refs(tmp_path):
    from sqlalchemy import select

    from facerec_pipeline.db.engine import session_scope
    from facerec_pipeline.db.models import Person
    from facerec_pipeline.db.source_refs import CommonsRef, FolderRef, parse_source_ref

    url = _old_database(tmp_path)
    assert upgrade(url) == ("0006", head_revision(url))
    with sqlite3.connect(tmp_path / "old.db") as db:
        stored = [row[0] for row in db.execute("SELECT source_ref FROM people ORDER BY id")]
    assert stored[0] == '{"kind": "folder", "folder": "ana_ivanovic"}'
    assert [None if s is None else parse_source_ref(s) for s in stored] == [
        FolderRef("ana_ivanovic"),
        FolderRef("[1]"),
        CommonsRef(("Novak Đoković 2019.jpg", "B.jpg")),
        CommonsRef(()),
        None,
    ]
    with session_scope(url) as session:  # what the stages read: typed values
        refs = [person.source_ref for person in session.scalars(select(Person).order_by(Person.id))]
    assert refs[:3] == [
        FolderRef("ana_ivanovic"),
        FolderRef("[1]"),
        CommonsRef(("Novak Đoković 2019.jpg", "B.jpg")),
    ]
    # The way back restores the untyped forms, value for value.
    _migrate(url, "0006", down=True)
    with sqlite3.connect(tmp_path / "old.db") as db:
        back = [row[0] for row in db.execute("SELECT source_ref FROM people ORDER BY id")]
    assert back == [ref for _, _, ref in OLD_REFS]


def test_0007_refuses_a_source_ref_it_cannot_read_and_changes_nothing(tmp_path):
    url = _old_database(tmp_path, [*OLD_REFS, ("serbia", "wikidata:Q4", "not json")])
    with pytest.raises(RuntimeError, match=r"person 6 of domain 'serbia'.*'not json'"):
        _migrate(url, "0007")
    assert current_revision(url) == "0006"
    with sqlite3.connect(tmp_path / "old.db") as db:
        kept = [row[0] for row in db.execute("SELECT source_ref FROM people ORDER BY id")]
    assert kept[0] == "ana_ivanovic" and kept[-1] == "not json"


def test_0008_makes_the_serving_version_the_one_production_row(tmp_path):
    """`galleries.is_prod` and `galleries.status` could disagree; after 0008 the status alone
    says what serves, and the database refuses a second production row of a domain."""
    import sqlalchemy

    url = f"sqlite:///{tmp_path / 'old.db'}"
    _migrate(url, "0007")
    with sqlite3.connect(tmp_path / "old.db") as db:
        db.execute(
            "INSERT INTO domains (code, display_name, source, countries, occupations, "
            "min_sitelinks, max_people, images_per_person, serp_budget, refresh_cron, "
            "is_active, created_at, updated_at) VALUES ('serbia', 'Serbia', 'folder', '[]', "
            "'[]', 10, 500, 10, 0, '0 3 * * 1', 1, '2026-01-01', '2026-01-01')"
        )
        for version, is_prod, status in (
            (1, 0, "published"),
            (2, 1, "published"),
            (3, 0, "rejected"),
        ):
            db.execute(
                "INSERT INTO galleries (domain, version, content_sha256, model_config, dim, "
                "batch_paths, person_count, face_count, quarantined_count, evaluation, "
                "created_at, is_prod, status, checks) VALUES ('serbia', ?, 'x', 'm', 128, '[]', "
                "1, 1, 0, '{}', '2026-01-01', ?, ?, '{}')",
                (version, is_prod, status),
            )
    assert upgrade(url) == ("0007", head_revision(url))
    columns = {c["name"] for c in inspect(get_engine(url)).get_columns("galleries")}
    assert "is_prod" not in columns
    with sqlite3.connect(tmp_path / "old.db") as db:
        rows = db.execute("SELECT version, status FROM galleries ORDER BY version").fetchall()
        assert rows == [(1, "published"), (2, "production"), (3, "rejected")]
    with pytest.raises(sqlalchemy.exc.IntegrityError), get_engine(url).begin() as connection:
        connection.execute(
            sqlalchemy.text("UPDATE galleries SET status = 'production' WHERE version = 1")
        )
    _migrate(url, "0007", down=True)
    with sqlite3.connect(tmp_path / "old.db") as db:
        rows = db.execute("SELECT version, is_prod, status FROM galleries ORDER BY version")
        assert rows.fetchall() == [(1, 0, "published"), (2, 1, "published"), (3, 0, "rejected")]
