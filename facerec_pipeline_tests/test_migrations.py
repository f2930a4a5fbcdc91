import sqlite3

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
