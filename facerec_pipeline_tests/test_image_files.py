import json
import shutil

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from facerec_pipeline.core.images import image_files
from facerec_pipeline.core.images.image_files import (
    INCOMING_DIR,
    ImageRejected,
    InspectionCache,
    difference_hash,
    hamming_distance,
    inspect_image,
    load_rgb,
)
from facerec_pipeline.core.images.photo_store import (
    move_content_addressed,
    photo_path,
    store_content_addressed,
)
from facerec_pipeline.db.engine import session_scope
from facerec_pipeline.db.models import Artifact


def test_good_photo_facts(photos):
    facts = inspect_image(photos / "obama.jpg")
    assert facts.rejection_reason is None
    assert facts.mime == "image/jpeg" and facts.width and facts.height
    assert len(facts.sha256) == 64 and len(facts.perceptual_hash) == 16


def test_corrupt_and_truncated_files_are_unreadable(composed):
    for name in ("corrupt.jpg", "truncated.jpg"):
        facts = inspect_image(composed[name])
        assert facts.rejection_reason == "unreadable_image", name
        with pytest.raises(ImageRejected):
            load_rgb(composed[name])


def test_huge_images_are_refused_before_decoding(tmp_path, monkeypatch):
    huge = tmp_path / "huge.png"
    Image.new("1", (9000, 8000)).save(huge)  # 72 MP in a few kilobytes
    assert inspect_image(huge).rejection_reason == "image_too_large"
    monkeypatch.setattr(image_files, "MAX_FILE_BYTES", 10)
    assert inspect_image(huge).rejection_reason == "image_too_large"


def test_rgba_and_exif_rotation_become_upright_rgb(photos, tmp_path):
    assert load_rgb(photos / "32bit.png").shape[2] == 3
    image = Image.open(photos / "obama.jpg")
    exif = image.getexif()
    exif[0x0112] = 6  # rotated 90 degrees
    rotated = tmp_path / "rotated.jpg"
    image.save(rotated, exif=exif)
    assert load_rgb(rotated).shape[:2] == (image.width, image.height)


@pytest.mark.parametrize("depth", ["I;16", "I", "F"])
def test_grey_photos_of_more_than_8_bits_read_as_they_look(photos, tmp_path, depth):
    """16-bit PNG and TIFF, 32-bit integer and float TIFF grey photos keep their tones (Pillow's
    own conversion turns every value above 255 white)."""
    grey = np.asarray(Image.open(photos / "obama.jpg").convert("L"))
    if depth == "I;16":
        wide, suffix = Image.fromarray(grey.astype(np.uint16) * 257), ".png"
    elif depth == "I":
        wide, suffix = Image.fromarray(grey.astype(np.int32) * 257, "I"), ".tif"
    else:
        wide, suffix = Image.fromarray(grey.astype(np.float32) / 255, "F"), ".tif"
    wide.save(tmp_path / f"wide{suffix}")
    with Image.open(tmp_path / f"wide{suffix}") as reopened:
        assert reopened.mode == depth
    read = load_rgb(tmp_path / f"wide{suffix}")
    assert read.dtype == np.uint8 and read.shape == (*grey.shape, 3)
    assert np.abs(read[:, :, 0].astype(int) - grey).max() <= 1


def test_perceptual_hash_matches_a_resized_copy_not_another_photo(photos):
    obama = Image.open(photos / "obama.jpg")
    resized = obama.resize((obama.width // 3, obama.height // 3))
    assert hamming_distance(difference_hash(obama), difference_hash(resized)) <= 4
    biden = Image.open(photos / "biden.jpg")
    assert hamming_distance(difference_hash(obama), difference_hash(biden)) > 10


def test_perceptual_hash_is_the_one_already_stored_in_databases(photos):
    """imagehash's dhash gives, bit for bit, the hex the hand-written dHash wrote into
    images.perceptual_hash before it: old and new hashes compare without a recompute."""

    def hand_written(image):  # the former implementation, kept here as the reference
        small = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.LANCZOS), np.int16)
        bits = (small[:, 1:] > small[:, :-1]).flatten()
        return f"{int(''.join('1' if bit else '0' for bit in bits), 2):016x}"

    assert inspect_image(photos / "obama.jpg").perceptual_hash == "6971703333254d03"
    assert inspect_image(photos / "biden.jpg").perceptual_hash == "2c151b733b5b552b"
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "32bit.png"):
        image = image_files.open_image(photos / name)
        assert difference_hash(image) == hand_written(image), name


def test_content_addressed_store_is_idempotent(photos, settings, artifacts):
    facts = inspect_image(photos / "obama.jpg")
    photos_dir = settings.training_dir("demo")
    first = store_content_addressed(
        photos / "obama.jpg", photos_dir, facts.sha256, artifacts, "demo"
    )
    second = store_content_addressed(
        photos / "obama.jpg", photos_dir, facts.sha256, artifacts, "demo"
    )
    assert first == second == photo_path(photos_dir, facts.sha256, ".jpg")
    assert first.relative_to(photos_dir).as_posix() == f"{facts.sha256[:2]}/{facts.sha256}.jpg"
    assert [p for p in photos_dir.rglob("*") if p.is_file()] == [first]
    with session_scope(settings.database_url) as session:
        (row,) = session.scalars(select(Artifact))
    assert (row.path, row.stage, row.sha256) == (settings.relative(first), "original", facts.sha256)
    assert (row.width, row.height, row.size) == (facts.width, facts.height, facts.file_size)


def test_every_photo_has_one_place_whatever_its_source(photos, settings, artifacts):
    """A copied folder photo and a finished download of the same content land on the same
    photo_path; a path that is not a sha256 is refused."""
    facts = inspect_image(photos / "obama.jpg")
    photos_dir = settings.training_dir("demo")
    copied = store_content_addressed(
        photos / "obama.jpg", photos_dir, facts.sha256, artifacts, "demo"
    )
    incoming = photos_dir / INCOMING_DIR / f"{facts.sha256}.jpg"
    incoming.parent.mkdir()
    shutil.copyfile(photos / "obama.jpg", incoming)
    moved = move_content_addressed(incoming, photos_dir, facts.sha256, artifacts, "demo")
    assert moved == copied and not incoming.exists()
    shutil.copyfile(photos / "obama.jpg", incoming)  # a second download of the same content
    assert move_content_addressed(incoming, photos_dir, facts.sha256, artifacts, "demo") == copied
    assert not incoming.exists()
    with pytest.raises(ValueError, match="sha256"):
        photo_path(photos_dir, "../../etc/passwd", ".jpg")


def test_inspection_cache_reads_only_new_or_changed_files(photos, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("obama.jpg", "biden.jpg"):
        shutil.copy(photos / name, folder / name)
    cache_file = tmp_path / "cache" / "scan.json"
    first = InspectionCache(cache_file)
    facts = {p.name: first.inspect(p) for p in sorted(folder.iterdir())}
    first.save()
    assert first.hits == 0

    shutil.copy(photos / "obama3.jpg", folder / "obama.jpg")  # replaced: new content and mtime
    (folder / "biden.jpg").rename(folder / "biden_renamed.jpg")
    shutil.copy(photos / "obama2.jpg", folder / "new.jpg")
    second = InspectionCache(cache_file)
    again = {p.name: second.inspect(p) for p in sorted(folder.iterdir())}
    second.save()
    assert second.hits == 0  # a rename is a new path; nothing else is unchanged
    assert again["obama.jpg"] == inspect_image(photos / "obama3.jpg") != facts["obama.jpg"]
    assert again["biden_renamed.jpg"] == facts["biden.jpg"]

    third = InspectionCache(cache_file)
    assert {p.name: third.inspect(p) for p in sorted(folder.iterdir())} == again
    assert third.hits == 3
    third.save()
    assert len(json.loads(cache_file.read_text())) == 3  # the vanished biden.jpg dropped out

    cache_file.write_text("{ not json")
    damaged = InspectionCache(cache_file)
    assert damaged.inspect(folder / "new.jpg") == again["new.jpg"] and damaged.hits == 0
