"""The whole pipeline materialized with Dagster into a temporary storage: a real SQLite file,
real DeepFace inference, real files. Every rejection reason appears; a re-run is idempotent; a
changed folder is picked up."""

import json
import shutil
from types import SimpleNamespace

import dagster as dg
import pandas as pd
import pytest
from sqlalchemy import text

from facerec_pipeline.app.promotion import list_versions
from facerec_pipeline.app.stats import domain_skips
from facerec_pipeline.cli.formatting import operating_point_text
from facerec_pipeline.core.face_models import SFACE_MODEL
from facerec_pipeline.core.faces.engine import FaceEngine
from facerec_pipeline.core.recognition.recognizer import Recognizer, load_prod_gallery
from facerec_pipeline.db.engine import session_scope
from facerec_pipeline.defs.assembly import ASSET_CHECKS, ASSETS, build_resources
from facerec_pipeline.defs.partitions import domain_partitions
from facerec_pipeline.defs.resources import FaceEngineResource
from facerec_pipeline_tests.conftest import add_folder_domain, build_folder, make_settings

TABLES = ["people", "images", "faces", "face_embeddings", "galleries", "gallery_faces"]


def materialize(settings, instance, code):
    if not instance.has_dynamic_partition(domain_partitions.name, code):
        instance.add_dynamic_partitions(domain_partitions.name, [code])
    result = dg.materialize(
        [*ASSETS, *ASSET_CHECKS],
        partition_key=code,
        resources=build_resources(settings),
        instance=instance,
    )
    assert result.success
    return result


def metadata(result, asset):
    (event,) = result.asset_materializations_for_node(asset)
    return {key: value.value for key, value in event.metadata.items()}


def query(settings, sql, **params):
    with session_scope(settings.database_url) as session:
        return pd.read_sql_query(text(sql), session.connection(), params=params)


def table_counts(settings):
    return {t: int(query(settings, f"SELECT COUNT(*) AS n FROM {t}")["n"][0]) for t in TABLES}


def outcomes(settings):
    frame = query(
        settings,
        "SELECT i.source_url, f.status, f.rejection_reason, f.background_faces "
        "FROM faces f JOIN images i ON i.id = f.image_id WHERE i.removed_at IS NULL",
    )
    frame = frame.astype(object).where(frame.notna(), None)
    return {row.source_url.split("/")[-1]: row for row in frame.itertuples()}


@pytest.fixture(scope="module")
def built(tmp_path_factory, photos, composed, models_dir):
    """One folder domain built once: Obama (good photos, one photo of Biden planted, and one
    photo per rejection case), Eileen Collins, and a person without photos. Biden is never
    enrolled."""
    root = tmp_path_factory.mktemp("pipeline")
    settings = make_settings(root / "storage", models_dir)
    obama = [
        photos / n
        for n in ("obama2.jpg", "32bit.png", "obama_partial_face.jpg", "obama_partial_face2.jpg")
    ]
    cases = [
        "dominant_subject.jpg",
        "biden_mirrored.jpg",
        "two_faces.jpg",
        "blank.jpg",
        "tiny_face.jpg",
        "blurry.jpg",
        "corrupt.jpg",
    ]
    folder = build_folder(
        root / "photos",
        {
            "barack_obama": obama + [composed[n] for n in cases],
            "eileen_collins": [composed["astronaut.png"]],
            "nobody": [],
        },
        mapping={"barack_obama": {"full_name": "Barack Obama", "wikidata_id": "Q76"}},
    )
    add_folder_domain(settings, "demo", folder)
    with dg.instance_for_test() as instance:
        result = materialize(settings, instance, "demo")
        yield {"settings": settings, "instance": instance, "result": result, "folder": folder}


def test_every_photo_gets_an_outcome_with_its_reason(built):
    found = outcomes(built["settings"])
    reasons = {name: row.rejection_reason or None for name, row in found.items()}
    assert reasons["two_faces.jpg"] == "multiple_faces"
    assert reasons["blank.jpg"] == "no_face"
    assert reasons["tiny_face.jpg"] == "face_too_small"
    assert reasons["blurry.jpg"] == "blurry"
    assert reasons["corrupt.jpg"] == "unreadable_image"
    # 32bit.png is obama2.jpg saved as RGBA PNG: the later of the two is the duplicate.
    assert {reasons["32bit.png"], reasons["obama2.jpg"]} == {None, "duplicate"}
    assert reasons["dominant_subject.jpg"] is None
    assert found["dominant_subject.jpg"].background_faces == 1
    assert len(found) == 12


def test_planted_photo_is_quarantined_not_deleted(built):
    frame = query(
        built["settings"],
        "SELECT i.source_url, g.identity_status, g.identity_reason FROM gallery_faces g "
        "JOIN faces f ON f.id = g.face_id JOIN images i ON i.id = f.image_id",
    )
    decisions = {
        r.source_url.split("/")[-1]: (r.identity_status, r.identity_reason)
        for r in frame.itertuples()
    }
    assert decisions["biden_mirrored.jpg"] == ("quarantined", "inconsistent_identity")
    accepted = [name for name, (status, _) in decisions.items() if status == "accepted"]
    assert sorted(accepted) == sorted(
        [
            "dominant_subject.jpg",
            "obama_partial_face.jpg",
            "obama_partial_face2.jpg",
            "astronaut.png",
            next(
                n
                for n in ("32bit.png", "obama2.jpg")
                if outcomes(built["settings"])[n].rejection_reason is None
            ),
        ]
    )


def test_skips_list_every_left_out_photo_with_its_reason(built):
    with session_scope(built["settings"].database_url) as session:
        rows = domain_skips(session, "demo")
    by_item = {row["item"].split("/")[-1]: (row["stage"], row["reason"]) for row in rows}
    assert by_item["biden_mirrored.jpg"] == ("gallery", "inconsistent_identity")
    assert by_item["blurry.jpg"] == ("detected_faces", "blurry")
    assert len(rows) == 7  # six rejected photos and one quarantined face


def test_gallery_files_pointer_and_rows(built):
    settings = built["settings"]
    batch = settings.batched_dir("demo") / "batch_0001"
    meta = json.loads((batch / "batch_metadata.json").read_text())
    assert meta["gallery_version"] == 1 and meta["model_config"] == SFACE_MODEL.engine.model_key
    assert {p["normalized_name"]: p["faces"] for p in meta["people"]} == {
        "barack_obama": 4,
        "eileen_collins": 1,
    }
    assert len(list((batch / "barack_obama").iterdir())) == 4
    pointer = json.loads((settings.prod_dir("demo") / "gallery.json").read_text())
    assert pointer["version"] == 1 and pointer["batches"] == [
        "recognized_faces_batched/demo/batch_0001"
    ]
    gallery = query(settings, "SELECT * FROM galleries")
    assert gallery[
        ["version", "person_count", "face_count", "quarantined_count"]
    ].values.tolist() == [[1, 2, 5, 1]]
    assert gallery["status"][0] == "production"
    crops = list((settings.training_pass_dir("demo") / "barack_obama").glob("*.png"))
    assert len(crops) == 5  # the planted photo's crop is kept too
    # Photos rejected by a gate that still hold their subject's face keep their crop apart, in
    # the rebuildable cache, in case the person needs one of them (keep_one_face_per_person).
    faces = query(settings, "SELECT rejection_reason, crop_path FROM faces")
    soft = faces[faces["crop_path"].notna() & faces["rejection_reason"].notna()]
    assert sorted(soft["rejection_reason"]) == ["blurry", "face_too_small", "multiple_faces"]
    assert all(path.startswith("cache/soft_rejected/demo/") for path in soft["crop_path"])


def test_what_the_dagster_ui_shows_names_the_domain_and_says_too_small(built):
    """The checks of `gallery` carry their partition; versions are labels of their domain (a
    number would be plotted across domains); a gallery of two people says plainly it is not
    calibrated; `production_gallery` shows which version serves each domain and any pin."""
    result = built["result"]
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 8 and {e.partition for e in evaluations} == {"demo"}
    assert all(e.description.startswith("demo v1: ") for e in evaluations)
    assert {e.metadata["gallery_version"].value for e in evaluations} == {"demo v1"}
    gallery = metadata(result, "gallery")
    assert gallery["gallery_version"] == "demo v1"
    report = gallery["report"]
    assert "NOT CALIBRATED, the gallery is too small" in report
    assert "no false-accept rate is promised" in report
    assert "calibrated for at most" not in report
    production = metadata(result, "production_gallery")
    assert production["gallery_version"] == "demo v1"
    assert "| demo | v1 | no |" in production["serving"]
    with session_scope(built["settings"].database_url) as session:
        (listed,) = list_versions(session, "demo")
    assert "NOT calibrated (gallery too small)" in operating_point_text(listed["operating_point"])


def test_lineage_names_run_code_version_and_inputs(built):
    lineage = query(built["settings"], "SELECT * FROM asset_lineage ORDER BY id")
    assert list(lineage["asset_key"]) == [
        "candidates",
        "raw_images",
        "detected_faces",
        "face_embeddings",
        "gallery",
    ]
    assert set(lineage["run_id"]) == {built["result"].run_id}
    declared = {
        a.key.to_user_string(): a.code_versions_by_key[a.key]
        for a in ASSETS
        if a.key.to_user_string() not in ("previews", "production_gallery")
    }  # no table output: no IO manager
    assert dict(zip(lineage["asset_key"], lineage["code_version"], strict=True)) == declared
    gallery_inputs = json.loads(lineage["inputs"].iloc[-1])
    assert {i["asset_key"] for i in gallery_inputs} == {
        "candidates",
        "raw_images",
        "detected_faces",
        "face_embeddings",
    }
    by_key = dict(zip(lineage["asset_key"], lineage["id"], strict=True))
    assert all(i["lineage_id"] == by_key[i["asset_key"]] for i in gallery_inputs)
    assert metadata(built["result"], "detected_faces")["rejections_by_reason"]["duplicate"] == 1
    assert metadata(built["result"], "raw_images")["people_without_photos"] == 1


def test_recognizes_enrolled_people_and_not_others(built, photos, models_dir):
    settings = built["settings"]
    recognizer = Recognizer(
        [load_prod_gallery(settings, "demo")], FaceEngine(SFACE_MODEL.engine, models_dir)
    )
    (obama,) = recognizer.recognize_image(photos / "obama3.jpg")["faces"]
    assert obama["identity"]["person"] == "Barack Obama"
    assert obama["identity"]["wikidata_id"] == "Q76"
    (biden,) = recognizer.recognize_image(photos / "biden.jpg")["faces"]
    assert biden["identity"] is None
    assert biden["matches"][0]["distance"] > SFACE_MODEL.verification_threshold


def test_a_large_photo_is_searched_at_bounded_size_with_boxes_in_its_own_pixels(
    built, photos, models_dir, tmp_path
):
    """A 3.3x enlarged obama3.jpg (7,700 px, 37 MP), as a JPEG and as a JPEG stored turned with
    an EXIF orientation: named as the original is, decoded at most 4096 px on its longer side
    (the engine never sees the full size), the box in the photo's own pixels."""
    from PIL import Image

    from facerec_pipeline.core.recognition.recognizer import RECOGNITION_MAX_SIDE, same_face

    settings = built["settings"]
    engine = FaceEngine(SFACE_MODEL.engine, models_dir)
    recognizer = Recognizer([load_prod_gallery(settings, "demo")], engine)
    ((original,),) = [recognizer.recognize_image(photos / "obama3.jpg")["faces"]]
    with Image.open(photos / "obama3.jpg") as image:
        large = image.convert("RGB").resize((4732, 7699), Image.Resampling.BICUBIC)
    plain, turned = tmp_path / "large.jpg", tmp_path / "large_turned.jpg"
    large.save(plain, quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: stored turned the other way
    large.transpose(Image.Transpose.ROTATE_90).save(turned, quality=90, exif=exif)
    seen = []
    detect = engine.detect

    def spy(image_rgb):
        seen.append(image_rgb.shape)
        return detect(image_rgb)

    engine.detect = spy
    factor = 4732 / 1434
    expected = SimpleNamespace(**{k: v * factor for k, v in original["box"].items()})
    for path in (plain, turned):
        (face,) = recognizer.recognize_image(path)["faces"]
        assert face["identity"]["person"] == "Barack Obama", path.name
        # YuNet's box varies by a few % with the scale it sees (full-size decoding too: IoU 0.95)
        assert same_face(SimpleNamespace(**face["box"]), expected) >= 0.85, (face["box"], expected)
    assert len(seen) == 2
    assert all(RECOGNITION_MAX_SIDE / 2 <= max(shape[:2]) <= RECOGNITION_MAX_SIDE for shape in seen)


def test_rerun_is_idempotent_then_picks_up_folder_changes(built, photos):
    settings, instance, folder = built["settings"], built["instance"], built["folder"]
    before = table_counts(settings)
    again = materialize(settings, instance, "demo")
    assert table_counts(settings) == before
    listed = metadata(again, "raw_images")["photos"]
    assert metadata(again, "raw_images")["files_unchanged"] == listed  # none read again
    assert metadata(again, "raw_images")["files_read"] == 0
    assert metadata(again, "detected_faces")["judged_this_run"] == 0
    assert metadata(again, "face_embeddings")["embedded_this_run"] == 0
    assert metadata(again, "gallery")["built_this_run"] is False
    assert metadata(again, "production_gallery")["published_this_run"] is False
    assert metadata(again, "previews")["made_this_run"] == 0
    for asset in ("candidates", "raw_images", "detected_faces", "face_embeddings", "gallery"):
        meta = metadata(again, asset)  # the stage tables: nothing inserted or updated
        assert (meta["rows_inserted"], meta["rows_updated"]) == (0, 0), asset

    (folder / "barack_obama" / "obama_partial_face.jpg").unlink()
    (folder / "joe_biden").mkdir()
    shutil.copyfile(photos / "biden.jpg", folder / "joe_biden" / "biden.jpg")
    changed = materialize(settings, instance, "demo")
    assert metadata(changed, "detected_faces")["judged_this_run"] == 1
    assert metadata(changed, "raw_images")["files_read"] == 1
    assert metadata(changed, "raw_images")["rows_marked_removed"] == 1
    assert metadata(changed, "gallery")["gallery_version"] == "demo v2"
    removed = query(
        settings, "SELECT removed_at FROM images WHERE source_url LIKE '%obama_partial_face.jpg'"
    )
    assert len(removed) == 1 and removed["removed_at"].notna().all()
    served = sorted(load_prod_gallery(settings, "demo").labels)
    assert served == ["barack_obama"] * 3 + ["eileen_collins", "joe_biden"]
    versions = query(settings, "SELECT version, status FROM galleries ORDER BY version")
    assert versions.values.tolist() == [[1, "published"], [2, "production"]]
    assert (settings.batched_dir("demo") / "batch_0002" / "batch_metadata.json").exists()


def test_a_new_face_configuration_rebuilds_the_domain_in_one_run_without_mixing(
    settings, tmp_path, photos, composed
):
    """A `dlib` domain built with DeepFace's crop, then re-run with dlib's chips (the model's
    own): one run re-judges and re-embeds every photo, and the new version holds only the new
    faces. (A new model does the same: test_model_switch.py.)"""
    folder = build_folder(
        tmp_path / "photos",
        {
            "barack_obama": [photos / "obama.jpg", photos / "obama2.jpg"],
            "eileen_collins": [composed["astronaut.png"]],
            "joe_biden": [photos / "biden.jpg"],
        },
    )
    add_folder_domain(settings, "switch", folder, model="dlib")
    old = {
        **build_resources(settings),
        "face_engine": FaceEngineResource(models_dir=str(settings.models_dir), dlib_chips=False),
    }
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(domain_partitions.name, ["switch"])
        for resources in (old, build_resources(settings)):
            result = dg.materialize(
                [*ASSETS, *ASSET_CHECKS],
                partition_key="switch",
                resources=resources,
                instance=instance,
            )
            assert result.success
    galleries = query(settings, "SELECT version, model_config, face_count FROM galleries")
    assert galleries["face_count"].tolist() == [4, 4]
    assert "align" in galleries["model_config"][0] and "chip150" in galleries["model_config"][1]
    faces = query(settings, "SELECT detector_config, COUNT(*) AS n FROM faces GROUP BY 1")
    assert sorted(faces["n"]) == [4, 4]  # the first configuration's rows are kept, not mixed
    served = load_prod_gallery(settings, "switch")
    assert served.version == 2 and served.matrix.shape == (4, 128)
    stats_faces = query(settings, "SELECT COUNT(DISTINCT image_sha256) AS n FROM face_embeddings")
    assert int(stats_faces["n"][0]) == 4  # one embedding per photo and configuration key...
    embeddings = query(settings, "SELECT COUNT(*) AS n FROM face_embeddings")
    assert int(embeddings["n"][0]) == 8  # ...under each of the two keys
