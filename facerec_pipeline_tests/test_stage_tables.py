import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from facerec_pipeline.app.stage_tables import (
    STAGE_TABLES,
    load_stage_output,
    write_stage_output,
)
from facerec_pipeline.db.engine import session_scope
from facerec_pipeline.db.models import Person
from facerec_pipeline_tests.conftest import add_folder_domain

PEOPLE = STAGE_TABLES["candidates"]


def people_frame(*names, sitelinks=None):
    return pd.DataFrame(
        {
            "person_key": [f"folder:{n}" for n in names],
            "full_name": [n.title() for n in names],
            "normalized_name": list(names),
            "sitelinks": sitelinks if sitelinks is not None else [np.nan] * len(names),
        }
    )


def write(settings, frame, partition="demo"):
    with session_scope(settings.database_url) as session:
        return write_stage_output(session, PEOPLE, frame, partition)


def test_upsert_counts_soft_removal_and_restore(settings, tmp_path):
    add_folder_domain(settings, "demo", tmp_path)
    first = write(settings, people_frame("ana", "bob"))
    assert (first.inserted, first.updated, first.unchanged, first.removed) == (2, 0, 0, 0)
    again = write(settings, people_frame("ana", "bob"))
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2)
    changed = write(settings, people_frame("ana", "cid", sitelinks=[5.0, np.nan]))
    assert (changed.inserted, changed.updated, changed.removed) == (1, 1, 1)
    with session_scope(settings.database_url) as session:
        rows = {p.normalized_name: p for p in session.scalars(select(Person))}
        assert rows["bob"].removed_at is not None  # kept, marked
        assert rows["ana"].sitelinks == 5 and isinstance(rows["ana"].sitelinks, int)
        present = load_stage_output(session, PEOPLE, "demo")
    assert sorted(present["normalized_name"]) == ["ana", "cid"]
    restored = write(settings, people_frame("ana", "bob", "cid", sitelinks=[5.0, None, None]))
    assert (restored.updated, restored.inserted) == (1, 0)
    with session_scope(settings.database_url) as session:
        assert (
            session.scalar(select(Person).where(Person.normalized_name == "bob")).removed_at is None
        )
        assert len(session.scalars(select(Person)).all()) == 3


def test_bad_outputs_are_refused_and_nothing_is_written(settings, tmp_path):
    add_folder_domain(settings, "demo", tmp_path)
    write(settings, people_frame("ana"))
    with pytest.raises(ValueError, match="repeats a key"):
        write(settings, people_frame("bob", "bob"))
    with pytest.raises(ValueError, match="columns not in table"):
        write(settings, people_frame("bob").assign(shoe_size=42))
    with pytest.raises(ValueError, match="partition"):
        write(settings, people_frame("bob").assign(domain="other"))
    with session_scope(settings.database_url) as session:
        assert [p.normalized_name for p in session.scalars(select(Person))] == ["ana"]
