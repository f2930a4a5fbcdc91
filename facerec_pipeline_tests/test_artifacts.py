"""Every file the pipeline writes is a row: a folder domain built twice, its artifacts listed,
verified and garbage-collected after files were deleted, altered and added by hand; previews
(thumbnails, web copies, blurhash); per-photo failures recorded, retried and listed."""

import json
import os
from pathlib import Path

import blurhash
import dagster as dg
import pytest
from PIL import Image
from sqlalchemy import delete, select

from facerec_pipeline.core.artifacts import failures as failures_module
from facerec_pipeline.core.artifacts.audit import GRACE_SECONDS
from facerec_pipeline.core.artifacts.store import THUMBNAIL, WEB
from facerec_pipeline.core.images import previews as preview_making
from facerec_pipeline.core.recognition.recognizer import Recognizer, load_prod_gallery
from facerec_pipeline.db.engine import session_scope
from facerec_pipeline.db.models import Artifact, Face, Gallery
from facerec_pipeline.db.models import Image as ImageRow
from facerec_pipeline.defs.resources import open_face_engine
from facerec_pipeline.settings import Settings
from facerec_pipeline_tests.conftest import add_folder_domain, build_folder
from facerec_pipeline_tests.test_pipeline import materialize, metadata


def rows(settings: Settings, **where) -> list[Artifact]:
    with session_scope(settings.database_url) as session:
        query = select(Artifact).order_by(Artifact.path)
        for column, value in where.items():
            query = query.where(getattr(Artifact, column) == value)
        return list(session.scalars(query))


def json_of(result) -> dict:
    return json.loads(result.output[result.output.index("{") :])


def old(path: Path) -> Path:
    """Age a file past the grace period (a write in flight is never judged)."""
    moment = path.stat().st_mtime - GRACE_SECONDS - 60
    os.utime(path, (moment, moment))
    return path


@pytest.fixture
def built(facerec, tmp_path, photos, composed):
    folder = build_folder(
        tmp_path / "photos",
        {
            "barack_obama": [photos / "obama.jpg", photos / "obama2.jpg"],
            "eileen_collins": [composed["astronaut.png"]],
        },
        mapping={"barack_obama": {"full_name": "Barack Obama", "wikidata_id": "Q76"}},
    )
    added = facerec(
        "domains", "add", "demo", "--name", "Demo", "--source", "folder", "--path", folder
    )
    assert added.exit_code == 0, added.output
    ran = facerec("run", "--domain", "demo")
    assert ran.exit_code == 0, ran.output
    settings = Settings(facerec.storage, f"sqlite:///{facerec.storage / 'facerec.db'}")
    return facerec, settings, folder


def test_rows_and_files_agree_and_a_rerun_writes_nothing(built):
    facerec, settings, _ = built
    stages = {row.stage for row in rows(settings)}
    assert {
        "original",
        "face_aligned",  # SFace's crop: the default model
        THUMBNAIL,
        WEB,
        "gallery_batch",
        "gallery_report",
        "prod_pointer",
    } <= stages
    for row in rows(settings):
        file = settings.absolute(row.path)
        assert file.stat().st_size == row.size, row.path
    verified = facerec("artifacts", "verify", "--domain", "demo")
    assert verified.exit_code == 0, verified.output
    assert "ok: every row has its file and every file its row" in verified.output
    listed = facerec("artifacts", "list", "--domain", "demo")
    assert (
        listed.exit_code == 0 and "thumbnail_400" in listed.output and "original" in listed.output
    )

    # every photo the database references, every crop and every served file has its row
    paths = {row.path for row in rows(settings)}
    with session_scope(settings.database_url) as session:
        referenced = set(session.scalars(select(ImageRow.file_path)))
        referenced |= set(
            session.scalars(select(Face.crop_path).where(Face.crop_path.is_not(None)))
        )
        served = session.scalar(select(Gallery).where(Gallery.status == "production"))
        referenced |= set(served.file_checksums)
    assert referenced <= paths

    before = {row.path: (row.id, row.sha256, row.created_at) for row in rows(settings)}
    mtimes = {path: settings.absolute(path).stat().st_mtime_ns for path in before}
    again = facerec("run", "--domain", "demo")
    assert again.exit_code == 0, again.output
    after = {row.path: (row.id, row.sha256, row.created_at) for row in rows(settings)}
    assert after == before  # no new row, none rewritten
    assert {path: settings.absolute(path).stat().st_mtime_ns for path in after} == mtimes


def test_files_written_before_they_were_tracked_get_their_rows_on_the_next_run(built):
    """As after migration 0011 on a storage root an older version filled: no row at all."""
    facerec, settings, _ = built
    before = {row.path: row.sha256 for row in rows(settings)}
    with session_scope(settings.database_url) as session:
        session.execute(delete(Artifact))
    lost = json_of(facerec("artifacts", "verify", "--domain", "demo", "--json"))
    assert {f["path"] for f in lost["orphaned"] + lost["recent"]} == set(before)  # all rowless
    ran = facerec("run", "--domain", "demo")
    assert ran.exit_code == 0, ran.output
    assert {row.path: row.sha256 for row in rows(settings)} == before  # same files, same content
    verified = facerec("artifacts", "verify", "--domain", "demo")
    assert verified.exit_code == 0, verified.output


def test_previews_thumbnail_web_copy_and_blurhash(built, composed):
    _, settings, _ = built
    thumbnails, webs = rows(settings, stage=THUMBNAIL), rows(settings, stage=WEB)
    # 3 accepted photos (obama, obama2, astronaut): a preview of each photo and of its face
    assert len(thumbnails) == len(webs) == 6
    for row in thumbnails + webs:
        made = json.loads(row.parameters)
        with Image.open(settings.absolute(row.path)) as image:
            assert image.format == "JPEG" and image.info.get("progressive") == 1
            assert max(image.size) <= made["max_side"] and image.size == (row.width, row.height)
        assert row.blurhash and len(blurhash.decode(row.blurhash, 8, 8)) == 8
    astronaut = _sha_of(composed["astronaut.png"])
    photo = {
        row.stage: (row.width, row.height)
        for row in thumbnails + webs
        if row.image_sha256 == astronaut and "subject" not in json.loads(row.parameters)
    }
    assert photo == {THUMBNAIL: (400, 400), WEB: (512, 512)}  # 512 px: never enlarged
    faces = [r for r in thumbnails if json.loads(r.parameters).get("subject") == "face"]
    assert len(faces) == 3 and all(json.loads(r.parameters)["box"] for r in faces)


def test_the_gallery_metadata_shows_thumbnails_and_blurhash(tmp_path, photos, settings):
    obama_domain(settings, tmp_path, photos)
    with dg.instance_for_test() as instance:
        result = materialize(settings, instance, "demo")
    shown = metadata(result, "gallery")
    assert shown["people_with_thumbnail"] == 1 and shown["people_without_thumbnail"] == 0
    assert "data:image/jpeg;base64," in shown["thumbnails"]
    assert "Barack Obama" in shown["thumbnails"]
    assert any(r.blurhash in shown["thumbnails"] for r in rows(settings, stage=THUMBNAIL))
    assert metadata(result, "previews")["made_this_run"] == 4


def test_verify_finds_deleted_modified_and_orphaned_files_and_gc_keeps_production(
    built, photos, models_dir
):
    facerec, settings, _ = built
    thumbnail = settings.absolute(rows(settings, stage=THUMBNAIL)[0].path)
    web = settings.absolute(rows(settings, stage=WEB)[0].path)
    thumbnail.unlink()  # deleted
    web.write_bytes(web.read_bytes()[:-10] + b"0123456789")  # modified, same size
    orphan = settings.storage_dir / "previews" / "demo" / "stray.jpg"
    orphan.write_bytes(b"not ours")
    old(orphan)
    with session_scope(settings.database_url) as session:
        served = session.scalar(select(Gallery).where(Gallery.status == "production"))
        batch = settings.absolute(served.batch_paths[0])
    in_production = batch / "notes.txt"  # a rowless file inside a served version
    in_production.write_text("left by hand")
    old(in_production)
    fresh = settings.storage_dir / "reports" / "demo" / "in_flight.partial"
    fresh.write_bytes(b"being written")  # young: a write in flight, never judged

    verified = facerec("artifacts", "verify", "--domain", "demo", "--json")
    assert verified.exit_code == 1
    found = json_of(verified)
    assert [f["path"] for f in found["missing"]] == [settings.relative(thumbnail)]
    assert [f["path"] for f in found["damaged"]] == [settings.relative(web)]
    assert sorted(f["path"] for f in found["orphaned"]) == sorted(
        [settings.relative(orphan), settings.relative(in_production)]
    )
    assert [f["path"] for f in found["recent"]] == [settings.relative(fresh)]
    plain = facerec("artifacts", "verify")
    assert plain.exit_code == 1 and "missing (a row, no file): 1" in plain.output

    dry = facerec("artifacts", "gc", "--domain", "demo")
    assert dry.exit_code == 0 and "would remove 1 orphaned files" in dry.output
    assert orphan.exists()
    collected = facerec("artifacts", "gc", "--domain", "demo", "--yes", "--json")
    assert collected.exit_code == 0
    gone = json_of(collected)
    assert gone["removed"] == [settings.relative(orphan)] and not orphan.exists()
    assert [k["path"] for k in gone["kept"]] == [settings.relative(in_production)]
    assert "used by demo v1 (production)" in gone["kept"][0]["detail"]
    assert in_production.exists() and fresh.exists()

    # production still answers after gc
    with open_face_engine(settings) as face_engine:
        model = face_engine.model()
        recognizer = Recognizer([load_prod_gallery(settings, "demo")], face_engine.engine(model))
        (face,) = recognizer.recognize_image(photos / "obama3.jpg")["faces"]
    assert face["identity"]["person"] == "Barack Obama"

    # a re-run makes the deleted preview again
    assert facerec("run", "--domain", "demo").exit_code == 0
    assert thumbnail.exists()


def test_a_photo_whose_previews_fail_is_recorded_retried_and_listed(
    settings, tmp_path, photos, monkeypatch
):
    from facerec_pipeline.app.stats import domain_skips
    from facerec_pipeline.cli.formatting import skips_table

    obama_domain(settings, tmp_path, photos)
    real = preview_making.make_previews
    broken = {"on": True}

    def failing(path, box=None):
        if broken["on"] and path.name.startswith(_sha_of(photos / "obama2.jpg")):
            raise OSError("disk full (injected)")
        return real(path, box)

    monkeypatch.setattr(preview_making, "make_previews", failing)
    monkeypatch.setattr(failures_module, "MAX_ATTEMPTS", 3)
    with dg.instance_for_test() as instance:
        first = materialize(settings, instance, "demo")  # the run succeeds
        assert metadata(first, "previews")["failed_this_run"] == 2  # the photo and its face
        with session_scope(settings.database_url) as session:
            listed = domain_skips(session, "demo")
        (failure,) = [row for row in listed if row["stage"] == "previews"]
        assert failure["reason"] == "processing_failed" and failure["attempts"] == 1
        assert "disk full (injected)" in failure["detail"] and "tried 1 of 3" in failure["detail"]
        assert "previews" in skips_table(listed)
        second = materialize(settings, instance, "demo")
        assert metadata(second, "previews")["failed_this_run"] == 2
        third = materialize(settings, instance, "demo")
        assert metadata(third, "previews")["failed_this_run"] == 2
        with session_scope(settings.database_url) as session:
            (failure,) = [r for r in domain_skips(session, "demo") if r["stage"] == "previews"]
        assert failure["reason"] == "processing_given_up" and failure["attempts"] == 3
        broken["on"] = False
        fourth = materialize(settings, instance, "demo")  # given up: not tried again
        assert metadata(fourth, "previews")["given_up"] == 2
        assert metadata(fourth, "previews")["made_this_run"] == 0


def test_a_failure_that_clears_is_retried_and_forgotten(settings, tmp_path, photos, monkeypatch):
    from facerec_pipeline.app.stages import detected_faces as detected_assets
    from facerec_pipeline.app.stats import domain_skips

    obama_domain(settings, tmp_path, photos)
    real = detected_assets.save_crop
    target_sha = _sha_of(photos / "obama2.jpg")
    broken = {"on": True}

    def failing(crop_bgr, target, artifacts, key):
        if broken["on"] and key.image_sha256 == target_sha:
            raise PermissionError("read-only folder (injected)")
        return real(crop_bgr, target, artifacts, key)

    monkeypatch.setattr(detected_assets, "save_crop", failing)
    with dg.instance_for_test() as instance:
        first = materialize(settings, instance, "demo")
        assert metadata(first, "detected_faces")["crops_not_written"] == 1
        assert metadata(first, "detected_faces")["accepted"] == 1  # obama.jpg serves alone
        with session_scope(settings.database_url) as session:
            (failure,) = [
                r for r in domain_skips(session, "demo") if r["reason"] == "processing_failed"
            ]
        assert "read-only folder" in failure["detail"]
        broken["on"] = False
        second = materialize(settings, instance, "demo")
        assert metadata(second, "detected_faces")["judged_this_run"] == 1  # retried
        assert metadata(second, "detected_faces")["accepted"] == 2
        with session_scope(settings.database_url) as session:
            assert not [
                r for r in domain_skips(session, "demo") if r["reason"] == "processing_failed"
            ]


def obama_domain(settings: Settings, tmp_path: Path, photos: Path) -> None:
    """A folder domain `demo` of one person with two photos."""
    folder = build_folder(
        tmp_path / "photos",
        {"barack_obama": [photos / "obama.jpg", photos / "obama2.jpg"]},
        mapping={"barack_obama": {"full_name": "Barack Obama", "wikidata_id": "Q76"}},
    )
    add_folder_domain(settings, "demo", folder)


def _sha_of(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_weekly_verify_job_passes_then_fails_with_what_is_wrong(built):
    from facerec_pipeline.defs.resources import FacerecStorage
    from facerec_pipeline.defs.storage_audit.jobs import (
        artifacts_verify_job,
        artifacts_verify_schedule,
    )

    _, settings, _ = built
    assert artifacts_verify_schedule.cron_schedule == "0 4 * * 0"  # weekly
    resources = {
        "facerec": FacerecStorage(
            storage_dir=str(settings.storage_dir), database_url=settings.database_url
        )
    }
    with dg.instance_for_test() as instance:
        good = artifacts_verify_job.execute_in_process(resources=resources, instance=instance)
        assert good.success and good.output_for_node("verify_artifacts_op")["ok"] is True
        stray = settings.storage_dir / "training" / "demo" / "stray.jpg"
        stray.write_bytes(b"added by hand")
        old(stray)
        bad = artifacts_verify_job.execute_in_process(
            resources=resources, instance=instance, raise_on_error=False
        )
    assert not bad.success
    (failure,) = [e for e in bad.all_events if e.event_type_value == "STEP_FAILURE"]
    data = failure.step_failure_data
    assert "0 missing, 0 damaged and 1 orphaned files" in data.error.message
    assert data.user_failure_data.metadata["orphaned"].value == 1
    assert "training/demo/stray.jpg" in data.user_failure_data.metadata["problems"].value
