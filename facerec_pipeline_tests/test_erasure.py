"""`facerec people erase`: a real folder domain built with `facerec run`, one person erased, then
looked for everywhere."""

import json
import sqlite3
from pathlib import Path

from facerec_pipeline.app.domains import get_domain
from facerec_pipeline.app.retraining import retrain_request
from facerec_pipeline.core.face_models import SFACE_MODEL
from facerec_pipeline.core.faces.engine import FaceEngine
from facerec_pipeline.core.files import sha256_file
from facerec_pipeline.core.recognition.recognizer import Recognizer, load_prod_gallery
from facerec_pipeline.db.engine import session_scope
from facerec_pipeline.defs.assembly import build_resources
from facerec_pipeline.settings import Settings
from facerec_pipeline_tests.conftest import build_folder


def rows(db: Path, query: str, *args) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute(query, args).fetchall()


def files_mentioning(root: Path, needles: list[bytes]) -> list[str]:
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and "models" not in path.parts:
            data = path.read_bytes()
            found += [f"{path.relative_to(root)}: {n!r}" for n in needles if n in data]
    return found


def test_erase_a_person_everywhere(facerec, tmp_path, photos, composed, models_dir):
    folder = build_folder(
        tmp_path / "photos",
        {
            "barack_obama": [photos / "obama.jpg", photos / "obama2.jpg"],
            "joe_biden": [photos / "biden.jpg"],
            "eileen_collins": [composed["astronaut.png"]],
        },
    )
    added = facerec(
        "domains", "add", "demo", "--name", "Demo", "--source", "folder", "--path", str(folder)
    )
    assert added.exit_code == 0, added.output
    ran = facerec("run", "--domain", "demo")
    assert ran.exit_code == 0, ran.output
    storage = Path(facerec.env["FACEREC_STORAGE_DIR"])
    db = storage / "facerec.db"
    settings = Settings(storage_dir=storage, database_url=f"sqlite:///{db}")
    engine = FaceEngine(SFACE_MODEL.engine, models_dir)
    before = Recognizer([load_prod_gallery(settings, "demo")], engine, settings=settings)
    assert before.recognize_image(photos / "biden.jpg")["faces"][0]["identity"]["person"] == (
        "Joe Biden"
    )
    (person_id,) = rows(db, "SELECT id FROM people WHERE normalized_name = 'joe_biden'")[0]
    biden_sha = sha256_file(photos / "biden.jpg")

    unknown = facerec("people", "erase", "--domain", "demo", "nobody_here", "--yes")
    assert unknown.exit_code == 1 and "has no person 'nobody_here'" in unknown.output
    declined = facerec("people", "erase", "--domain", "demo", "joe_biden", input="n\n")
    assert declined.exit_code == 1 and "1 photos, 1 faces" in declined.output
    assert rows(db, "SELECT count(*) FROM people WHERE id = ?", person_id) == [(1,)]

    erased = facerec("people", "erase", "--domain", "demo", "joe_biden", "--yes", "--by", "dpo")
    assert erased.exit_code == 0, erased.output
    assert "check no_person_lost: passed" in erased.output

    # No rows of them anywhere.
    for table, column in [
        ("people", "id"),
        ("images", "person_id"),
        ("faces", "person_id"),
        ("gallery_faces", "person_id"),
        ("source_skips", "person_id"),
    ]:
        assert rows(db, f"SELECT count(*) FROM {table} WHERE {column} = ?", person_id) == [(0,)]
    assert rows(db, "SELECT count(*) FROM face_embeddings WHERE image_sha256 = ?", biden_sha) == [
        (0,)
    ]
    # A new production version whose checks passed, and older versions still loadable.
    versions = json.loads(facerec("gallery", "list", "--domain", "demo", "--json").stdout)
    serving = [v for v in versions if v["is_prod"]]
    assert len(versions) == 2 and serving[0]["version"] == 2 and not serving[0]["failed_checks"]
    assert versions[0]["status"] == "published" and versions[0]["people"] == 2
    # The audit: counts, the operator, the version, no name and no key.
    ((operator, counts, version, key_hash),) = rows(
        db, "SELECT operator, counts, new_gallery_version, person_key_sha256 FROM erasures"
    )
    counts = json.loads(counts)
    assert operator == "dpo" and version == 2 and counts["images"] == 1 and counts["faces"] == 1
    assert counts["gallery_batch_rows"] == 1 and counts["photo_files"] == 1
    assert rows(db, "SELECT person_key_sha256 FROM erased_people") == [(key_hash,)]
    # No file under storage/ (database and Dagster's included) names them or holds their photo.
    needles = [b"joe_biden", b"Joe Biden", biden_sha.encode(), (photos / "biden.jpg").read_bytes()]
    assert files_mentioning(storage, needles) == []
    assert files_mentioning(tmp_path / "dagster", needles[:3]) == []
    # Their previews went with their photos; every remaining file and row still agree.
    assert rows(db, "SELECT count(*) FROM artifacts WHERE image_sha256 = ?", biden_sha) == [(0,)]
    assert rows(db, "SELECT count(*) FROM artifacts WHERE stage = 'thumbnail_400'") == [(6,)]
    verified = facerec("artifacts", "verify", "--domain", "demo")
    assert verified.exit_code == 0, verified.output
    # The recognizer no longer names them; the others are still recognized.
    after = Recognizer([load_prod_gallery(settings, "demo")], engine)
    assert after.recognize_image(photos / "biden.jpg")["faces"][0]["identity"] is None
    # A recognizer loaded before the erasure (a running `facerec serve`) stops naming them too.
    assert before.recognize_image(photos / "biden.jpg")["faces"][0]["identity"] is None
    obama = after.recognize_image(photos / "obama3.jpg")["faces"][0]["identity"]
    assert obama["person"] == "Barack Obama"
    # The folder still holds their photo, which is not a change for the retraining sensor.
    with session_scope(settings.database_url) as session:
        domain = get_domain(session, "demo")
        source = build_resources(settings)["sources"].for_domain(domain, settings)
        assert retrain_request(session, domain, "2026-12-02", source) is None
    # The folder is still there: a refresh does not bring them back.
    again = facerec("run", "--domain", "demo")
    assert again.exit_code == 0, again.output
    assert rows(db, "SELECT count(*) FROM people WHERE normalized_name = 'joe_biden'") == [(0,)]
    assert sorted(load_prod_gallery(settings, "demo").labels) == [
        "barack_obama",
        "barack_obama",
        "eileen_collins",
    ]
    # A second erasure is a clear error.
    twice = facerec("people", "erase", "--domain", "demo", "folder:joe_biden", "--yes")
    assert twice.exit_code == 1 and "already erased" in twice.output


def test_erase_while_a_rollback_pin_holds(facerec, tmp_path, photos, composed):
    """The rebuilt version stays a candidate behind the pin; the output says so and which version
    serves, instead of claiming a publication that did not happen."""
    folder = build_folder(
        tmp_path / "photos",
        {
            "barack_obama": [photos / "obama.jpg"],
            "joe_biden": [photos / "biden.jpg"],
            "eileen_collins": [composed["astronaut.png"]],
        },
    )
    facerec("domains", "add", "demo", "--name", "Demo", "--source", "folder", "--path", str(folder))
    assert facerec("run", "--domain", "demo").exit_code == 0
    (folder / "barack_obama" / "obama2.jpg").write_bytes((photos / "obama2.jpg").read_bytes())
    assert facerec("run", "--domain", "demo").exit_code == 0
    rolled = facerec("gallery", "rollback", "--domain", "demo", "--to", "1")
    assert rolled.exit_code == 0, rolled.output

    erased = facerec("people", "erase", "--domain", "demo", "joe_biden", "--yes")
    assert erased.exit_code == 0, erased.output
    last = erased.output.strip().splitlines()[-1]
    assert "published" not in last, last
    assert "built v3, which stays candidate; v1, scrubbed of them, keeps serving" in last, last
    assert "pinned to v1 by a rollback" in last and "facerec gallery unpin --domain demo" in last
    versions = json.loads(facerec("gallery", "list", "--domain", "demo", "--json").stdout)
    assert sorted((v["version"], v["is_prod"], v["people"]) for v in versions) == [
        (1, True, 2),
        (2, False, 2),
        (3, False, 2),
    ]
    storage = Path(facerec.env["FACEREC_STORAGE_DIR"])
    assert rows(storage / "facerec.db", "SELECT new_gallery_version FROM erasures") == [(1,)]
