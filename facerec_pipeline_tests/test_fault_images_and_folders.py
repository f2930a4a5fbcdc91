"""Faults in photos and in a folder source: a decompression bomb, a corrupt file, links leading
out of the source folder, entries the folder source does not use. Each is refused with a reason
that `facerec skips` lists, and one bad file never stops a stage."""

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner
from PIL import Image

from facerec_pipeline.cli.main import cli
from facerec_pipeline.core.faces.validation import read_crop
from facerec_pipeline.core.gallery.report import THUMB, SheetItem, contact_sheet_png, write_report
from facerec_pipeline.core.images.image_files import (
    ImageRejected,
    inspect_image,
    load_bgr,
    load_rgb,
    open_image,
    thumbnail,
)
from facerec_pipeline.sources.folder import scan_folder, scan_source
from facerec_pipeline_tests.conftest import cli_env

# Never a photo's content: found anywhere under storage/, a link out of the folder was read.
SECRET = b"root:x:0:0:fault-test-secret-4b1d9e:/root:/bin/bash\n"
PLACEHOLDER = (200, 200, 200)

# The source skips of the folder `source` lays out: item -> (reason, person folder).
EXPECTED_SOURCE_SKIPS = {
    "folder:.originals": ("hidden_entry", None),
    "folder:intruder": ("outside_source_folder", None),
    "folder:stray.jpg": ("not_in_a_person_folder", None),
    "folder:barack_obama/.thumb.jpg": ("hidden_entry", "barack_obama"),
    "folder:barack_obama/escape.jpg": ("outside_source_folder", "barack_obama"),
    "folder:barack_obama/gone.jpg": ("missing_file", "barack_obama"),
    "folder:barack_obama/notes.txt": ("not_an_image", "barack_obama"),
    "folder:barack_obama/old": ("nested_folder", "barack_obama"),
    "folder:barack_obama/passwd.jpg": ("outside_source_folder", "barack_obama"),
}
OBAMA_PHOTOS = [
    "bomb.png",
    "obama2.jpg",
    "obama3.jpg",
    "obama_partial_face.jpg",
    "obama_partial_face2.jpg",
]


def make_bomb(target: Path, side: int = 20_000) -> Path:
    """A real decompression bomb: 20000 x 20000 pixels (400 MP) in about 50 KB of PNG."""
    Image.new("1", (side, side)).save(target)
    return target


@pytest.fixture(scope="module")
def source(tmp_path_factory, photos, composed) -> dict[str, Path]:
    """A folder source with every fault beside usable photos. Outside it: a secret file and a
    folder of Biden's photo, both reachable only through links."""
    base = tmp_path_factory.mktemp("fault_source")
    root, outside = base / "photos", base / "outside"
    (outside / "intruder").mkdir(parents=True)
    (outside / "passwd").write_bytes(SECRET)
    shutil.copyfile(photos / "biden.jpg", outside / "intruder" / "biden.jpg")
    obama = root / "barack_obama"
    (obama / "old").mkdir(parents=True)
    for name in ("obama2.jpg", "obama_partial_face.jpg", "obama_partial_face2.jpg"):
        shutil.copyfile(photos / name, obama / name)
    make_bomb(obama / "bomb.png")
    (root / ".originals").mkdir()
    shutil.copyfile(photos / "obama3.jpg", root / ".originals" / "obama3.jpg")
    (obama / "obama3.jpg").symlink_to(Path("..") / ".originals" / "obama3.jpg")  # stays inside
    (obama / "passwd.jpg").symlink_to(outside / "passwd")
    (obama / "escape.jpg").symlink_to(Path("..") / ".." / "outside" / "passwd")
    (obama / "gone.jpg").symlink_to(obama / "deleted.jpg")
    shutil.copyfile(photos / "obama.jpg", obama / "old" / "obama.jpg")
    shutil.copyfile(photos / "obama.jpg", obama / ".thumb.jpg")
    (obama / "notes.txt").write_text("not a photo")
    (root / "eileen_collins").mkdir()
    shutil.copyfile(composed["astronaut.png"], root / "eileen_collins" / "astronaut.png")
    (root / "intruder").symlink_to(outside / "intruder", target_is_directory=True)
    shutil.copyfile(photos / "obama.jpg", root / "stray.jpg")
    (root / "name_mapping.json").write_text(
        json.dumps({"barack_obama": {"full_name": "Barack Obama", "wikidata_id": "Q76"}})
    )
    return {"root": root, "outside": outside, "bomb": obama / "bomb.png"}


# --- one safe reader ----------------------------------------------------------------------------
READERS = {
    "load_rgb": load_rgb,
    "load_bgr": load_bgr,
    "open_image": open_image,
    "read_crop": read_crop,
    "thumbnail": lambda path: thumbnail(path, THUMB),
}


@pytest.mark.parametrize("reader", READERS)
def test_every_reader_turns_a_bomb_or_a_corrupt_file_into_a_rejection(
    reader, source, composed, tmp_path
):
    warned_range = make_bomb(tmp_path / "100mp.png", 10_000)  # PIL only warns at 100 MP
    cases = {
        source["bomb"]: "image_too_large",
        warned_range: "image_too_large",
        composed["corrupt.jpg"]: "unreadable_image",
        composed["truncated.jpg"]: "unreadable_image",
    }
    for path, reason in cases.items():
        with pytest.raises(ImageRejected) as rejected:
            READERS[reader](path)
        assert rejected.value.reason == reason, path.name
        assert str(rejected.value) == f"{reason}: {rejected.value.detail}"
        assert reason not in rejected.value.detail  # the reason is said once
    assert inspect_image(source["bomb"]).rejection_reason == "image_too_large"
    assert "decompression bomb" in inspect_image(source["bomb"]).rejection_detail
    with pytest.raises(FileNotFoundError):
        READERS[reader](tmp_path / "missing.png")


def test_the_contact_sheet_draws_a_placeholder_for_a_photo_it_cannot_read(
    source, composed, photos, tmp_path, artifacts
):
    rejected = [
        SheetItem(source["bomb"], "image_too_large"),
        SheetItem(composed["corrupt.jpg"], "unreadable_image"),
        SheetItem(tmp_path / "missing.jpg", "unreadable_image"),
    ]
    sheet_png = contact_sheet_png([SheetItem(photos / "obama.jpg", "barack_obama")], rejected)
    target = artifacts.settings.reports_dir("demo") / "gallery_v0001"
    files = write_report(target, "# summary", sheet_png, sheet_png, artifacts, "demo", 1)
    assert files["report"].exists()
    with Image.open(files["contact_sheet"]) as sheet:
        sheet = sheet.convert("RGB")
    photo_tile = sheet.crop((0, 18, THUMB, 18 + THUMB))
    assert len(photo_tile.getcolors(THUMB * THUMB)) > 100  # the photo itself
    rejected_top = 18 + THUMB + 14 + 18
    for index in range(len(rejected)):
        left = index * (THUMB + 4)
        assert sheet.getpixel((left + 10, rejected_top + 3)) == PLACEHOLDER, index


# --- the folder source --------------------------------------------------------------------------
def test_the_folder_scan_refuses_links_out_and_lists_everything_it_ignores(source):
    scan = scan_source(source["root"])
    assert [p.folder for p in scan.people] == ["barack_obama", "eileen_collins"]
    assert [p.name for p in scan.people[0].photos] == OBAMA_PHOTOS
    assert scan.people[0].full_name == "Barack Obama"
    assert {s.item: (s.reason, s.folder) for s in scan.skips} == EXPECTED_SOURCE_SKIPS
    passwd = next(s for s in scan.skips if s.item.endswith("passwd.jpg"))
    assert passwd.detail == f"a link to {(source['outside'] / 'passwd').resolve()}"
    assert scan_folder(source["root"]) == scan.people


def test_a_name_mapping_linked_from_outside_is_not_read(tmp_path):
    root, outside = tmp_path / "photos", tmp_path / "outside"
    (root / "novak_djokovic").mkdir(parents=True)
    outside.mkdir()
    (outside / "mapping.json").write_text(json.dumps({"novak_djokovic": "Secret Name"}))
    (root / "name_mapping.json").symlink_to(outside / "mapping.json")
    scan = scan_source(root)
    assert scan.people[0].full_name == "Novak Djokovic"
    assert [(s.item, s.reason) for s in scan.skips] == [
        ("folder:name_mapping.json", "outside_source_folder")
    ]


# --- end to end: `facerec run`, `facerec skips`, `facerec recognize` ----------------------------
@pytest.fixture(scope="module")
def ran(tmp_path_factory, models_dir, source):
    """The fault folder added as domain `demo` and built once with `facerec run`."""
    base = tmp_path_factory.mktemp("fault_run")
    env = cli_env(base, models_dir)
    storage = Path(env["FACEREC_STORAGE_DIR"])
    runner = CliRunner()

    def facerec(*args):
        return runner.invoke(cli, list(args), env=env, catch_exceptions=False)

    assert (
        facerec(
            "domains",
            "add",
            "demo",
            "--name",
            "Demo",
            "--source",
            "folder",
            "--path",
            str(source["root"]),
        ).exit_code
        == 0
    )
    result = facerec("run", "--domain", "demo")
    return {"facerec": facerec, "storage": storage, "result": result}


def source_skip_rows(storage: Path) -> list[tuple]:
    with sqlite3.connect(storage / "facerec.db") as db:
        return db.execute(
            "SELECT person_id, source, item, reason FROM source_skips ORDER BY item"
        ).fetchall()


def test_a_bomb_in_the_folder_still_publishes_a_gallery_with_its_report(ran):
    assert ran["result"].exit_code == 0, ran["result"].output
    versions = json.loads(ran["facerec"]("gallery", "list", "--domain", "demo", "--json").stdout)
    assert [(v["version"], v["is_prod"]) for v in versions] == [(1, True)]
    report = ran["storage"] / "reports" / "demo" / "gallery_v0001"
    assert (report / "report.md").exists() and (report / "contact_sheet.png").exists()
    skips = json.loads(ran["facerec"]("skips", "--domain", "demo", "--json").stdout)
    (bomb,) = [s for s in skips if s["item"] == "folder:barack_obama/bomb.png"]
    assert (bomb["stage"], bomb["person"], bomb["reason"]) == (
        "detected_faces",
        "Barack Obama",
        "image_too_large",
    )


def test_links_out_of_the_folder_are_never_read_or_copied(ran, photos):
    storage = ran["storage"]
    biden = hashlib.sha256((photos / "biden.jpg").read_bytes()).hexdigest()
    stored = [Path(folder, name) for folder, _, names in os.walk(storage) for name in names]
    assert stored and not [path for path in stored if SECRET in path.read_bytes()]
    assert not list((storage / "training").rglob(f"{biden}*"))
    with sqlite3.connect(storage / "facerec.db") as db:
        urls = {url for (url,) in db.execute("SELECT source_url FROM images")}
    assert urls == {f"folder:barack_obama/{name}" for name in OBAMA_PHOTOS} | {
        "folder:eileen_collins/astronaut.png"
    }


def test_skips_lists_every_ignored_entry_with_its_reason(ran):
    skips = json.loads(ran["facerec"]("skips", "--domain", "demo", "--json").stdout)
    names = {None: None, "barack_obama": "Barack Obama"}
    assert {s["item"]: (s["reason"], s["person"]) for s in skips if s["stage"] == "source"} == {
        item: (reason, names[folder]) for item, (reason, folder) in EXPECTED_SOURCE_SKIPS.items()
    }
    table = ran["facerec"]("skips", "--domain", "demo").output
    for item, (reason, _) in EXPECTED_SOURCE_SKIPS.items():
        assert any(item in line and reason in line for line in table.splitlines()), item


def test_recognize_says_why_a_photo_cannot_be_read_once(ran, source, composed):
    broken = ran["facerec"](
        "recognize", "--domain", "demo", "--json", str(source["bomb"]), str(composed["corrupt.jpg"])
    )
    assert broken.exit_code == 1
    bomb, corrupt = json.loads(broken.stdout)
    assert bomb["error"].startswith("image_too_large: Image size (400000000 pixels)")
    assert corrupt["error"].startswith("unreadable_image: ")
    for error in (bomb["error"], corrupt["error"]):
        assert error.count("image_too_large") + error.count("unreadable_image") == 1


def test_a_rerun_adds_no_duplicate_skip_rows(ran):
    before = source_skip_rows(ran["storage"])
    assert len(before) == len(EXPECTED_SOURCE_SKIPS)
    assert sum(person_id is None for person_id, *_ in before) == 3
    again = ran["facerec"]("run", "--domain", "demo")
    assert again.exit_code == 0, again.output
    assert source_skip_rows(ran["storage"]) == before


def test_odd_folder_names_never_stop_a_domain(facerec, tmp_path, photos, composed):
    """A person folder whose name cannot be a person's reference (a backslash) is skipped with
    its reason; a folder named only with spaces is a person with a name still; hyphens and
    apostrophes stay in names made from folder names."""
    root = tmp_path / "photos"
    for folder, photo in (
        ("jean-claude_juncker", photos / "obama.jpg"),
        ("back\\slash", photos / "biden.jpg"),
        ("   ", composed["astronaut.png"]),
    ):
        (root / folder).mkdir(parents=True)
        shutil.copyfile(photo, root / folder / photo.name)
    scan = scan_source(root)
    assert [(p.folder, p.full_name) for p in scan.people] == [
        ("   ", "(unnamed folder '   ')"),
        ("jean-claude_juncker", "Jean-Claude Juncker"),
    ]
    assert [(s.item, s.reason) for s in scan.skips] == [
        ("folder:back\\slash", "unusable_folder_name")
    ]
    added = facerec(
        "domains", "add", "demo", "--name", "Demo", "--source", "folder", "--path", root
    )
    assert added.exit_code == 0
    ran = facerec("run", "--domain", "demo")
    assert ran.exit_code == 0, ran.output
    skips = json.loads(facerec("skips", "--domain", "demo", "--json").stdout)
    (odd,) = [s for s in skips if s["item"] == "folder:back\\slash"]
    assert odd["reason"] == "unusable_folder_name" and "rename the folder" in odd["detail"]
    answer = facerec("recognize", "--domain", "demo", "--json", composed["astronaut.png"])
    named = json.loads(answer.stdout)[0]["faces"][0]["identity"]
    assert named["person"] == "(unnamed folder '   ')"


def test_one_wikidata_id_on_two_people_is_said_in_the_run(facerec, tmp_path, photos, composed):
    root = tmp_path / "photos"
    for folder, photo in (("obama", photos / "obama.jpg"), ("collins", composed["astronaut.png"])):
        (root / folder).mkdir(parents=True)
        shutil.copyfile(photo, root / folder / photo.name)
    (root / "name_mapping.json").write_text(
        json.dumps(
            {
                "obama": {"full_name": "Barack Obama", "wikidata_id": "Q76"},
                "collins": {"full_name": "Eileen Collins", "wikidata_id": "Q76"},
            }
        )
    )
    added = facerec(
        "domains", "add", "demo", "--name", "Demo", "--source", "folder", "--path", root
    )
    assert added.exit_code == 0
    ran = facerec("run", "--domain", "demo")
    assert ran.exit_code == 0, ran.output
    assert "Q76 is given to 2 people (Eileen Collins, Barack Obama)" in ran.output
    history = json.loads(facerec("history", "--domain", "demo", "--json").stdout)
    assert history[0]["counts"]["candidates"]["people_sharing_a_wikidata_id"] == 2
    with dg.DagsterInstance.from_config(facerec.env["DAGSTER_HOME"]) as instance:
        (event,) = instance.fetch_materializations(dg.AssetKey("candidates"), limit=1).records
        shown = event.asset_materialization.metadata["wikidata_ids_on_two_people"].value
    assert shown == {"Q76": ["Eileen Collins", "Barack Obama"]}
