"""The face model is a domain setting: a new model re-embeds the domain's photos once and
publishes a version calibrated for it through the checks; a rollback serves an older version
with its own model; inherited domains of other models are searched with theirs; a running
recognizer (what `facerec serve` holds) takes the new model without a restart. Driven through
the `facerec` CLI on real photos, with both offline models."""

import json

from facerec_pipeline.core.face_models import DLIB, SFACE_MODEL
from facerec_pipeline.core.recognition.recognizer import Recognizer
from facerec_pipeline.settings import Settings
from facerec_pipeline_tests.conftest import build_folder


def recognized(facerec, domain: str, photo) -> dict:
    answer = facerec("recognize", "--domain", domain, str(photo), "--json")
    assert answer.exit_code == 0, answer.output
    (face, *_) = json.loads(answer.stdout)[0]["faces"]
    return face


def counts(facerec, domain: str) -> list[dict]:
    history = json.loads(facerec("history", "--domain", domain, "--json").stdout)
    return history[0]["counts"]


def test_a_new_model_rebuilds_once_and_a_rollback_searches_with_the_old_one(
    facerec, tmp_path, photos, composed
):
    folder = build_folder(
        tmp_path / "photos",
        {
            "barack_obama": [photos / "obama.jpg", photos / "obama2.jpg", photos / "32bit.png"],
            "joe_biden": [photos / "biden.jpg"],
            "eileen_collins": [composed["astronaut.png"]],
        },
    )
    added = facerec(
        "domains", "add", "demo", "--name", "Demo", "--source", "folder", "--path", str(folder)
    )
    assert added.exit_code == 0, added.output
    assert json.loads(facerec("domains", "show", "demo", "--json").stdout)["face_model"] == "sface"
    assert facerec("run", "--domain", "demo").exit_code == 0
    face = recognized(facerec, "demo", photos / "obama3.jpg")
    assert face["identity"]["person"] == "Barack Obama"
    assert (face["decision"]["gallery_version"], face["decision"]["face_model"]) == (1, "sface")

    unknown = facerec("domains", "set", "demo", "--model", "resnet50")
    assert unknown.exit_code == 1 and "choose one of sface, dlib" in unknown.output
    switched = facerec("domains", "set", "demo", "--model", "DLIB")
    assert switched.exit_code == 0, switched.output
    assert "face_model=dlib" in switched.output and "detects and embeds" in switched.output
    ran = facerec("run", "--domain", "demo")
    assert ran.exit_code == 0, ran.output
    versions = json.loads(facerec("gallery", "list", "--domain", "demo", "--json").stdout)
    assert [(v["version"], v["face_model"], v["status"]) for v in versions] == [
        (1, "sface", "published"),
        (2, "dlib", "production"),
    ]
    assert versions[1]["model_config"] == DLIB.engine.model_key
    assert not versions[1]["failed_checks"]
    face = recognized(facerec, "demo", photos / "obama3.jpg")
    assert face["identity"]["person"] == "Barack Obama"
    assert (face["decision"]["gallery_version"], face["decision"]["face_model"]) == (2, "dlib")
    # A distance of dlib's scale (its 1:1 threshold 0.07), not SFace's (0.593).
    assert face["decision"]["threshold"] < 0.1 < versions[0]["operating_point"]["threshold"]

    # Back to SFace: its faces and embeddings are still in the database, nothing is redone.
    assert facerec("domains", "set", "demo", "--model", "sface").exit_code == 0
    assert facerec("run", "--domain", "demo").exit_code == 0
    stages = counts(facerec, "demo")
    assert stages["detected_faces"]["judged_this_run"] == 0
    assert stages["face_embeddings"]["embedded_this_run"] == 0

    rolled = facerec("gallery", "rollback", "--domain", "demo", "--to", "2")
    assert rolled.exit_code == 0, rolled.output
    face = recognized(facerec, "demo", photos / "obama3.jpg")
    assert (face["decision"]["gallery_version"], face["decision"]["face_model"]) == (2, "dlib")
    assert face["identity"]["person"] == "Barack Obama"


def test_inherited_domains_of_another_model_are_searched_with_theirs(
    facerec, tmp_path, photos, composed
):
    parent = build_folder(
        tmp_path / "parent",
        {"barack_obama": [photos / "obama.jpg", photos / "obama2.jpg"]},
    )
    child = build_folder(
        tmp_path / "child",
        {"joe_biden": [photos / "biden.jpg"], "eileen_collins": [composed["astronaut.png"]]},
    )
    for code, folder, extra in (
        ("usa", parent, ["--model", "dlib"]),
        ("nasa", child, ["--inherit", "usa"]),
    ):
        added = facerec(
            "domains", "add", code, "--name", code, "--source", "folder", "--path", folder, *extra
        )
        assert added.exit_code == 0, added.output
        assert facerec("run", "--domain", code).exit_code == 0
    obama = recognized(facerec, "nasa", photos / "obama3.jpg")
    assert (obama["identity"]["person"], obama["identity"]["domain"]) == ("Barack Obama", "usa")
    assert obama["decision"]["face_model"] == "dlib"
    collins = recognized(facerec, "nasa", composed["astronaut.png"])
    assert (collins["identity"]["person"], collins["decision"]["face_model"]) == (
        "Eileen Collins",
        "sface",
    )
    # One answer per face, though two detectors looked at the photo.
    answer = facerec("recognize", "--domain", "nasa", str(composed["two_faces.jpg"]), "--json")
    assert len(json.loads(answer.stdout)[0]["faces"]) == 2

    # A recognizer already running (as `facerec serve` keeps one) takes a new model's version
    # at its next photo, with an engine of that model.
    settings = Settings(facerec.storage, f"sqlite:///{facerec.storage / 'facerec.db'}")
    running = Recognizer.for_domains(settings, ["nasa", "usa"])
    assert set(running.engines) == {SFACE_MODEL.engine.model_key, DLIB.engine.model_key}
    assert facerec("domains", "set", "usa", "--model", "sface").exit_code == 0
    assert facerec("run", "--domain", "usa").exit_code == 0
    obama = running.recognize_image(photos / "obama3.jpg")["faces"][0]
    assert obama["decision"]["face_model"] == "sface" and obama["identity"]["domain"] == "usa"
    assert set(running.engines) == {SFACE_MODEL.engine.model_key}  # dlib's engine let go


def test_a_deepface_model_without_its_weights_fails_the_run_with_what_is_missing(
    facerec, tmp_path, photos
):
    folder = build_folder(tmp_path / "photos", {"barack_obama": [photos / "obama.jpg"]})
    added = facerec(
        "domains", "add", "demo", "--name", "Demo", "--source", "folder", "--path", str(folder)
    )
    assert added.exit_code == 0
    assert facerec("run", "--domain", "demo").exit_code == 0
    chosen = facerec("domains", "set", "demo", "--model", "Facenet512")
    assert chosen.exit_code == 0  # allowed: the weights may be placed before the next run
    assert "warning: runs of 'demo' will fail" in chosen.output
    assert "facenet512_weights.onnx" in chosen.output
    ran = facerec("run", "--domain", "demo")
    assert ran.exit_code == 1
    assert "facenet512_weights.onnx" in ran.output and "--model sface" in ran.output
    assert "Traceback" not in ran.output
    listed = json.loads(facerec("models", "list", "--json").stdout)
    by_name = {row["model"]: row for row in listed}
    assert by_name["sface"]["weights"] == "installed" and by_name["sface"]["default"]
    assert by_name["Facenet512"]["weights"].startswith("missing")
    assert by_name["Facenet512"]["domains"] == ["demo"]
    assert by_name["sface"]["licences"] == SFACE_MODEL.licences
    # The version built with SFace still answers.
    face = recognized(facerec, "demo", photos / "obama3.jpg")
    assert face["identity"]["person"] == "Barack Obama"
