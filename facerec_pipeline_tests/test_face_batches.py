"""The face stages in batches, each a step of its own (defs/batched_stages.py), run by Dagster in
this process on a real SQLite file with real inference: a batch whose step raises is retried on
its own while the other batches' steps run once, the result equals a build in one batch, and a
re-run sends no photo again."""

import dataclasses
from collections import Counter

import dagster as dg
import numpy as np
import pytest
from sqlalchemy import text

from facerec_pipeline.app.stages import detected_faces
from facerec_pipeline.db.engine import session_scope
from facerec_pipeline.defs.assembly import ASSET_CHECKS, ASSETS, build_resources
from facerec_pipeline.defs.partitions import domain_partitions
from facerec_pipeline.settings import ExecutorSettings
from facerec_pipeline_tests.conftest import add_folder_domain, build_folder, make_settings

PEOPLE = {"barack_obama": ["obama.jpg", "obama2.jpg", "obama3.jpg"], "joe_biden": ["biden.jpg"]}


def build(settings, instance, code: str) -> dg.ExecuteInProcessResult:
    if not instance.has_dynamic_partition(domain_partitions.name, code):
        instance.add_dynamic_partitions(domain_partitions.name, [code])
    return dg.materialize(
        [*ASSETS, *ASSET_CHECKS],
        partition_key=code,
        resources=build_resources(settings),
        instance=instance,
    )


def faces_of(settings, code: str) -> dict:
    with session_scope(settings.database_url) as session:
        rows = session.execute(
            text(
                "SELECT f.image_sha256, f.status, f.crop_sha256, e.embedding FROM faces f "
                "LEFT JOIN face_embeddings e ON e.image_sha256 = f.image_sha256 "
                "WHERE f.domain = :code"
            ),
            {"code": code},
        ).all()
    return {sha: (status, crop, np.frombuffer(vector, "<f4")) for sha, status, crop, vector in rows}


@pytest.fixture
def folder(tmp_path, photos):
    return build_folder(
        tmp_path / "photos",
        {person: [photos / name for name in names] for person, names in PEOPLE.items()},
    )


def test_a_failed_batch_is_retried_alone_and_the_batches_equal_one(
    tmp_path, folder, models_dir, instance, monkeypatch
):
    one_batch = make_settings(tmp_path / "one", models_dir)
    add_folder_domain(one_batch, "demo", folder)
    assert build(one_batch, instance, "demo").success

    settings = make_settings(tmp_path / "batched", models_dir)
    settings = dataclasses.replace(settings, executor=ExecutorSettings(face_batch_size=1))
    add_folder_domain(settings, "batched", folder)
    judge, calls = detected_faces.validate_photos, []

    def storage_lost_once(engine, gates, paths, pool):
        calls.append(paths)
        if len(calls) == 2:  # the second batch, its first try
            raise OSError("the storage mount went away")
        return judge(engine, gates, paths, pool)

    monkeypatch.setattr(detected_faces, "validate_photos", storage_lost_once)
    result = build(settings, instance, "batched")
    assert result.success and len(calls) == 5  # four batches, one of them twice
    starts = Counter(
        event.step_key
        for event in result.all_events
        if event.event_type_value in ("STEP_START", "STEP_RESTARTED")
    )
    batches = {key: n for key, n in starts.items() if "detected_faces_batch[" in key}
    # One step per photo; the failed one started again (BATCH_RETRY), the others once.
    assert sorted(batches) == [
        f"detected_faces.detected_faces_batch[0000{n}]" for n in (1, 2, 3, 4)
    ]
    assert batches.pop("detected_faces.detected_faces_batch[00002]") == 2
    assert set(batches.values()) == {1}
    retried = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert [e.step_key for e in retried] == ["detected_faces.detected_faces_batch[00002]"]
    (materialized,) = result.asset_materializations_for_node("detected_faces")
    figures = {key: value.value for key, value in materialized.metadata.items()}
    assert (figures["batches"], figures["judged_this_run"], figures["accepted"]) == (4, 4, 4)

    # Four batches give what one gives: the same faces and crops, embeddings to float32 rounding.
    got, expected = faces_of(settings, "batched"), faces_of(one_batch, "demo")
    assert set(got) == set(expected) and len(got) == 4
    for sha, (status, crop, vector) in expected.items():
        assert got[sha][:2] == (status, crop) == ("accepted", crop)
        np.testing.assert_allclose(got[sha][2], vector, rtol=0, atol=1e-6)

    # Again: every photo was judged, so the plan sends none and no batch step runs.
    again = build(settings, instance, "batched")
    assert again.success
    steps = {e.step_key for e in again.all_events if e.event_type_value == "STEP_START"}
    assert not [key for key in steps if "_batch[" in key]
    assert "detected_faces.detected_faces_merge" in steps
    (materialized,) = again.asset_materializations_for_node("detected_faces")
    figures = {key: value.value for key, value in materialized.metadata.items()}
    assert (figures["batches"], figures["judged_this_run"], figures["reused_from_cache"]) == (
        0,
        0,
        4,
    )
