"""The `facerec` command line, end to end on a real storage root and Dagster instance."""

import json
import shutil
from pathlib import Path

import dagster as dg

from facerec_pipeline_tests.conftest import build_folder


def test_domain_commands_and_clear_errors(facerec, tmp_path):
    assert facerec("domains", "list").output.startswith("no domains yet")
    bad = facerec(
        "domains",
        "add",
        "Serbia!",
        "--name",
        "Serbia",
        "--source",
        "folder",
        "--path",
        str(tmp_path),
    )
    assert bad.exit_code == 1 and "invalid domain code" in bad.output
    missing = facerec(
        "domains",
        "add",
        "serbia",
        "--name",
        "Serbia",
        "--source",
        "folder",
        "--path",
        str(tmp_path / "nope"),
    )
    assert missing.exit_code == 1 and "does not exist" in missing.output
    added = facerec(
        "domains",
        "add",
        "serbia",
        "--name",
        "Serbia",
        "--source",
        "folder",
        "--path",
        str(tmp_path),
    )
    assert added.exit_code == 0, added.output
    child = facerec(
        "domains",
        "add",
        "novi_sad",
        "--name",
        "Novi Sad",
        "--source",
        "folder",
        "--path",
        str(tmp_path),
        "--inherit",
        "serbia",
    )
    assert child.exit_code == 0, child.output
    listed = json.loads(facerec("domains", "list", "--json").stdout)
    assert [(d["code"], d["inherit_from"]) for d in listed] == [
        ("novi_sad", ["serbia"]),
        ("serbia", []),
    ]
    shown = json.loads(facerec("domains", "show", "serbia", "--json").stdout)
    assert shown["source"] == "folder" and shown["is_active"] is True
    unknown = facerec("domains", "show", "greece")
    assert unknown.exit_code == 1 and "unknown domain 'greece'" in unknown.output
    assert facerec("domains", "deactivate", "serbia").exit_code == 0
    inactive = facerec("run", "--domain", "serbia")
    assert inactive.exit_code == 1 and "inactive" in inactive.output
    assert facerec("run", "--domain", "nowhere").exit_code == 1
    with dg.DagsterInstance.from_config(facerec.env["DAGSTER_HOME"]) as instance:
        assert set(instance.get_dynamic_partitions("domain")) == {"serbia", "novi_sad"}


def test_run_then_recognize(facerec, tmp_path, photos, composed):
    folder = build_folder(
        tmp_path / "photos",
        {
            "barack_obama": [photos / "obama.jpg", photos / "obama2.jpg"],
            "eileen_collins": [composed["astronaut.png"]],
        },
        mapping={"barack_obama": {"full_name": "Barack Obama", "wikidata_id": "Q76"}},
    )
    assert (
        facerec(
            "domains", "add", "demo", "--name", "Demo", "--source", "folder", "--path", str(folder)
        ).exit_code
        == 0
    )
    no_gallery = facerec("recognize", "--domain", "demo", str(photos / "obama3.jpg"))
    assert no_gallery.exit_code == 1 and "no production gallery" in no_gallery.output
    ran = facerec("run", "--domain", "demo")
    assert ran.exit_code == 0, ran.output
    assert "materialized production_gallery" in ran.output
    assert "check distinct_identities: passed" in ran.output
    with dg.DagsterInstance.from_config(facerec.env["DAGSTER_HOME"]) as instance:
        (run,) = instance.get_runs()
        assert run.job_name == "domain_pipeline" and run.tags["dagster/partition"] == "demo"
        stats = instance.get_run_stats(run.run_id)
    (history,) = json.loads(facerec("history", "--domain", "demo", "--json").stdout)
    assert history["status"] == "succeeded"
    # The whole run's wall time, longer than its stages' own sum (set-up, checks, Dagster)
    assert history["seconds"] == round(stats.end_time - stats.start_time, 1)
    assert history["seconds"] >= sum(history["timings"].values())
    table = facerec("history", "--domain", "demo").output
    assert "raw_images 3 photos" in table and "candidates 2 people" in table

    recognized = facerec(
        "recognize",
        "--domain",
        "demo",
        "--json",
        str(photos / "obama3.jpg"),
        str(photos / "biden.jpg"),
    )
    assert recognized.exit_code == 0, recognized.output
    obama, biden = json.loads(recognized.stdout)
    assert obama["faces"][0]["identity"]["person"] == "Barack Obama"
    assert set(obama["faces"][0]["box"]) == {"x", "y", "w", "h"}
    assert biden["faces"][0]["identity"] is None

    broken = facerec(
        "recognize",
        "--domain",
        "demo",
        "--json",
        str(composed["corrupt.jpg"]),
        str(photos / "obama3.jpg"),
    )
    assert broken.exit_code == 1
    corrupt, good = json.loads(broken.stdout)
    assert corrupt["error"].startswith("unreadable_image") and good["faces"]
    table = facerec("recognize", "--domain", "demo", str(photos / "obama3.jpg"))
    assert "Barack Obama (demo)" in table.output

    stats = json.loads(facerec("stats", "--domain", "demo", "--json").stdout)
    assert stats["production_gallery"]["version"] == 1 and stats["faces_accepted"] == 3

    probes, strangers = tmp_path / "probes", tmp_path / "unknown"
    probes.mkdir(), strangers.mkdir()
    shutil.copyfile(photos / "obama3.jpg", probes / "Barack_Obama__obama3.jpg")
    shutil.copyfile(composed["biden_mirrored.jpg"], strangers / "biden_mirrored.jpg")
    scored = facerec(
        "evaluate",
        "--domain",
        "demo",
        "--probes",
        str(probes),
        "--unknown",
        str(strangers),
        "--json",
    )
    assert scored.exit_code == 0, scored.output
    figures = json.loads(scored.stdout)
    assert (figures["rank1"], figures["dir"], figures["far"]) == (1.0, 1.0, 0.0)
    assert figures["gallery_version"] == 1 and figures["seconds_per_photo_median"] > 0
    assert Path(figures["report"]).with_suffix(".png").exists()
    with dg.DagsterInstance.from_config(facerec.env["DAGSTER_HOME"]) as instance:
        observed = instance.fetch_observations(dg.AssetKey("gallery"), limit=1).records
        assert observed[0].asset_observation.partition == "demo"
    shutil.copyfile(photos / "biden.jpg", probes / "biden.jpg")  # not <Person>__<file>
    misnamed = facerec("evaluate", "--domain", "demo", "--probes", str(probes))
    assert misnamed.exit_code == 1 and "is not named <Person>__<file>" in misnamed.output


def test_a_failing_run_exits_non_zero_with_the_reason(facerec, tmp_path, composed):
    folder = build_folder(tmp_path / "photos", {"nobody_useful": [composed["blank.jpg"]]})
    assert (
        facerec(
            "domains",
            "add",
            "empty",
            "--name",
            "Empty",
            "--source",
            "folder",
            "--path",
            str(folder),
        ).exit_code
        == 0
    )
    failed = facerec("run", "--domain", "empty")
    assert failed.exit_code == 1
    assert "FAILED" in failed.output and "no accepted face" in failed.output
    stats = json.loads(facerec("stats", "--domain", "empty", "--json").stdout)
    assert stats["rejections_by_reason"] == {"no_face": 1}
    assert stats["production_gallery"] is None
    (skip,) = json.loads(facerec("skips", "--domain", "empty", "--json").stdout)
    assert (skip["stage"], skip["person"], skip["reason"]) == (
        "detected_faces",
        "Nobody Useful",
        "no_face",
    )
    assert "no_face" in facerec("skips", "--domain", "empty").output


def test_settings_changed_then_recheck(facerec, tmp_path, photos):
    folder = build_folder(
        tmp_path / "photos",
        {
            "barack_obama": [photos / "obama.jpg", photos / "obama2.jpg"],
            "joe_biden": [photos / "biden.jpg"],
        },
    )
    assert (
        facerec(
            "domains", "add", "demo", "--name", "Demo", "--source", "folder", "--path", str(folder)
        ).exit_code
        == 0
    )
    assert facerec("domains", "set", "demo", "--min-faces-per-person", "2").exit_code == 0
    failed = facerec("run", "--domain", "demo")
    assert failed.exit_code == 1 and "check min_faces_per_person: FAILED" in failed.output
    assert "people_below_minimum" in failed.output  # the check's figures are shown
    still = facerec("gallery", "recheck", "--domain", "demo")
    assert still.exit_code == 1 and "min_faces_per_person: " in still.output
    assert "'joe_biden': 1" in still.output
    out_of_range = facerec("domains", "set", "demo", "--target-far", "2")
    assert out_of_range.exit_code == 1 and "target_far must lie between" in out_of_range.output
    assert facerec("domains", "set", "demo", "--min-faces-per-person", "1").exit_code == 0
    shown = json.loads(facerec("domains", "show", "demo", "--json").stdout)
    assert shown["min_faces_per_person"] == 1 and shown["target_far"] == 0.01
    passed = facerec("gallery", "recheck", "--domain", "demo")
    assert passed.exit_code == 0, passed.output
    assert "passed every check and serves" in passed.output
    versions = json.loads(facerec("gallery", "list", "--domain", "demo", "--json").stdout)
    assert [(v["version"], v["status"], v["is_prod"]) for v in versions] == [
        (1, "production", True)
    ]
    # A pointer file edited by hand is put right from the database by a recheck too, as the
    # production_gallery asset does (one publishing function for both).
    pointer = facerec.storage / "recognized_faces_prod" / "demo" / "gallery.json"
    right = json.loads(pointer.read_text())
    pointer.write_text(json.dumps({**right, "version": 7}))
    again = facerec("gallery", "recheck", "--domain", "demo")
    assert again.exit_code == 0, again.output
    assert "production pointer demo: " in again.output
    assert json.loads(pointer.read_text()) == right


def test_a_face_kept_despite_a_gate_is_listed_by_skips(facerec, tmp_path, photos):
    from PIL import Image, ImageFilter

    blurred = tmp_path / "biden_blurred.jpg"
    # Blurred enough for both models' crops (SFace's 112 px crop shrinks a blur 6 px wide).
    Image.open(photos / "biden.jpg").filter(ImageFilter.GaussianBlur(10)).save(blurred)
    folder = build_folder(
        tmp_path / "photos",
        {
            "barack_obama": [photos / "obama.jpg"],
            "joe_biden": [blurred],
        },
    )
    assert (
        facerec(
            "domains", "add", "demo", "--name", "Demo", "--source", "folder", "--path", str(folder)
        ).exit_code
        == 0
    )
    ran = facerec("run", "--domain", "demo")
    assert ran.exit_code == 0, ran.output
    skips = json.loads(facerec("skips", "--domain", "demo", "--json").stdout)
    assert [(s["person"], s["reason"]) for s in skips] == [("Joe Biden", "kept_despite_blurry")]
    stats = json.loads(facerec("stats", "--domain", "demo", "--json").stdout)
    assert stats["production_gallery"]["people"] == 2
