"""The sample domain, made from photos that packages ship: the face_recognition 1.3.0 source
distribution's tests/test_images (US government photos of Barack Obama and Joe Biden) and
scikit-image's `astronaut` (Eileen Collins, NASA). Fetched from PyPI by set-up, never committed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

FACE_RECOGNITION_SDIST = "face-recognition==1.3.0"
TEST_IMAGES = (
    "32bit.png",
    "biden.jpg",
    "obama.jpg",
    "obama2.jpg",
    "obama3.jpg",
    "obama_partial_face.jpg",
    "obama_partial_face2.jpg",
)
SAMPLE_PEOPLE = {
    "barack_obama": (
        {"full_name": "Barack Obama", "wikidata_id": "Q76"},
        [
            "obama.jpg",
            "obama2.jpg",
            "32bit.png",
            "obama_partial_face.jpg",
            "obama_partial_face2.jpg",
        ],
    ),
    "joe_biden": ({"full_name": "Joe Biden", "wikidata_id": "Q6279"}, ["biden.jpg"]),
}
HOLDOUT = ["obama3.jpg"]


def fetch_test_images(target: Path) -> Path:
    """face_recognition's test photos in `target` (downloaded from PyPI once, then reused)."""
    if all((target / name).is_file() for name in TEST_IMAGES):
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                FACE_RECOGNITION_SDIST,
                "-d",
                scratch,
            ],
            check=True,
        )
        archive = next(Path(scratch).glob("face_recognition-1.3.0.tar.gz"))
        with tarfile.open(archive) as tar:
            for name in TEST_IMAGES:
                member = tar.getmember(f"face_recognition-1.3.0/tests/test_images/{name}")
                source = tar.extractfile(member)
                assert source is not None
                (target / name).write_bytes(source.read())
    return target


def astronaut_png(target: Path) -> Path:
    from PIL import Image
    from skimage import data

    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(data.astronaut()).save(target)
    return target


def build_sample_folder(images: Path, root: Path) -> tuple[Path, Path]:
    """Lay out `root/people/<person>/...` with name_mapping.json, and `root/holdout/`."""
    people = root / "people"
    holdout = root / "holdout"
    mapping = {}
    for folder, (entry, files) in SAMPLE_PEOPLE.items():
        (people / folder).mkdir(parents=True, exist_ok=True)
        for name in files:
            shutil.copyfile(images / name, people / folder / name)
        mapping[folder] = entry
    astronaut_png(people / "eileen_collins" / "astronaut.png")
    mapping["eileen_collins"] = {"full_name": "Eileen Collins", "wikidata_id": None}
    (people / "name_mapping.json").write_text(json.dumps(mapping, indent=1))
    holdout.mkdir(parents=True, exist_ok=True)
    for name in HOLDOUT:
        shutil.copyfile(images / name, holdout / name)
    return people, holdout


if __name__ == "__main__":  # python -m facerec_pipeline.app.sample DIR: fetch the test photos
    print(fetch_test_images(Path(sys.argv[1] if len(sys.argv) > 1 else ".cache/test_images")))
