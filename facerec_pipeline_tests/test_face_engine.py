"""Real inference on the packaged photos: both offline models (`sface`: YuNet + SFace through
OpenCV; `dlib`: dlib's detector, chips and ResNet), and what holds for each."""

import shutil
import subprocess
import sys
from dataclasses import replace

import cv2
import numpy as np
import pytest
from PIL import Image

from facerec_pipeline.core.faces.engine import FaceEngine, l2_normalize
from facerec_pipeline.core.faces.quality_gates import GateConfig
from facerec_pipeline.core.faces.validation import validate_photo
from facerec_pipeline.core.faces.weights import ModelWeightsMissing
from facerec_pipeline.core.images.image_files import load_rgb


def embed(engine, path):
    faces = engine.detect(load_rgb(path))  # largest first
    assert faces, path
    return l2_normalize(engine.embed([faces[0].crop_bgr]))[0]


def test_same_person_is_within_the_threshold_and_others_are_not(model_engine, photos, composed):
    model, engine = model_engine
    obama, obama3 = embed(engine, photos / "obama.jpg"), embed(engine, photos / "obama3.jpg")
    biden = embed(engine, photos / "biden.jpg")
    astronaut = embed(engine, composed["astronaut.png"])
    threshold = model.verification_threshold
    assert obama.shape == (128,)
    assert 1 - obama @ obama3 < threshold
    assert 1 - obama @ biden > threshold
    assert 1 - obama @ astronaut > threshold


def test_boxes_are_in_full_resolution_coordinates(model_engine, photos):
    _, engine = model_engine
    image = load_rgb(photos / "obama3.jpg")  # 2333 px on its long side, detected at 640 or 800
    (face,) = engine.detect(image)
    assert max(image.shape[:2]) > 2 * engine.config.detect_max_side
    assert face.w > 200 and face.x + face.w <= image.shape[1]
    # The same face as the other model finds (dlib's box is tighter than YuNet's).
    assert 600 < face.x < 720 and 250 < face.y < 420, (face.x, face.y)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("two_faces.jpg", "multiple_faces"),
        ("blank.jpg", "no_face"),
        ("tiny_face.jpg", "face_too_small"),
        ("blurry.jpg", "blurry"),
        ("corrupt.jpg", "unreadable_image"),
        ("dominant_subject.jpg", None),
    ],
)
def test_composed_photos_get_their_outcome(model_engine, composed, name, reason):
    model, engine = model_engine
    outcome = validate_photo(engine, model.gates, composed[name])
    assert outcome.rejection_reason == reason
    if reason is None:
        assert outcome.status == "accepted" and outcome.background_faces == 1


def test_coarse_first_detection_decides_as_the_upsampled_pass(engine, photos, composed, tmp_path):
    upsampled_only = FaceEngine(replace(engine.config, coarse_first=False), engine.models_dir)
    assert engine.config.detector_key != upsampled_only.config.detector_key  # caches apart
    # A subject with a background face too small for the coarse pass to see: still accepted.
    obama, biden = (Image.open(photos / name).convert("RGB") for name in ("obama.jpg", "biden.jpg"))
    obama.paste(biden.resize((biden.width // 6, biden.height // 6)), (600, 800))
    obama.save(tmp_path / "small_background_face.jpg")
    paths = [
        *sorted(photos.glob("*.*")),
        *composed.values(),
        tmp_path / "small_background_face.jpg",
    ]
    for path in paths:
        coarse = validate_photo(engine, GateConfig(), path)
        fine = validate_photo(upsampled_only, GateConfig(), path)
        assert (coarse.status, coarse.rejection_reason) == (fine.status, fine.rejection_reason)
        if coarse.face is not None:  # the same face, though pyramid levels size boxes apart
            assert overlap(coarse.face, fine.face) >= 0.5, path.name


def overlap(a, b) -> float:
    """Intersection over union of two face boxes."""
    width = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    height = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    return width * height / (a.area + b.area - width * height)


def test_missing_weights_name_the_command(model_engine, tmp_path):
    model, _ = model_engine
    with pytest.raises(ModelWeightsMissing, match="facerec models install"):
        FaceEngine(model.engine, tmp_path)


def test_embeddings_are_deterministic(model_engine, photos):
    _, engine = model_engine
    assert np.array_equal(embed(engine, photos / "biden.jpg"), embed(engine, photos / "biden.jpg"))


def test_parallel_validation_and_embedding_match_the_serial_results(
    model_engine, photos, composed, tmp_path
):
    model, engine = model_engine
    from facerec_pipeline.core.faces.validation import (
        MIN_PHOTOS_PER_WORKER,
        WorkerPool,
        embed_crops,
        validate_photos,
    )

    paths = (sorted(photos.glob("*.*")) + [composed["two_faces.jpg"], composed["corrupt.jpg"]]) * 4
    assert len(paths) >= 2 * MIN_PHOTOS_PER_WORKER  # large enough to use the worker processes
    serial = list(validate_photos(engine, model.gates, paths))
    with WorkerPool(engine, workers=2, min_per_worker=MIN_PHOTOS_PER_WORKER) as pool:
        assert pool.serves(engine, paths)
        parallel = list(validate_photos(engine, model.gates, paths, pool))
        assert len(pool.pids) == 2
        assert [(o.status, o.rejection_reason) for o in parallel] == [
            (o.status, o.rejection_reason) for o in serial
        ]
        crops = []
        for index, outcome in enumerate(serial):
            if outcome.status == "accepted":
                crops.append(tmp_path / f"{index}.png")
                cv2.imwrite(str(crops[-1]), outcome.face.crop_bgr)
        crops *= 2
        assert len(crops) >= 2 * MIN_PHOTOS_PER_WORKER
        assert np.allclose(  # to float32 rounding: one thread in a worker, more here
            np.stack(list(embed_crops(engine, crops, pool))),  # the same workers, still up
            np.stack(list(embed_crops(engine, crops))),
            atol=1e-6,
        )
    assert pool.closed and pool.pids == []


def test_saved_copy_of_dlibs_detector_finds_what_dlib_finds(engine, photos, tmp_path, models_dir):
    import dlib

    from facerec_pipeline.core.faces.dlib_detection import FRONTAL_DETECTOR_COPY
    from facerec_pipeline.core.faces.weights import weights_dir

    models = tmp_path / "models"
    shutil.copytree(models_dir / ".deepface", models / ".deepface")  # dlib's files only
    (models / FRONTAL_DETECTOR_COPY).unlink(missing_ok=True)
    (weights_dir(models) / FRONTAL_DETECTOR_COPY).unlink(missing_ok=True)
    fresh = FaceEngine(engine.config, models)
    detector, _ = fresh._dlib_models  # decodes dlib's own, saves the copy
    saved = weights_dir(models) / FRONTAL_DETECTOR_COPY
    assert saved.is_file()
    image = load_rgb(photos / "obama.jpg")
    builtin = dlib.get_frontal_face_detector().run(image, 1)
    copied, _ = FaceEngine(engine.config, models)._dlib_models  # loads the copy
    for found in (detector.run(image, 1), copied.run(image, 1)):
        assert [r.left() for r in found[0]] == [r.left() for r in builtin[0]]
        assert list(found[1]) == list(builtin[1])
    saved.write_bytes(b"damaged")
    repaired, _ = FaceEngine(engine.config, models)._dlib_models
    assert repaired.run(image, 1)[1] == builtin[1] and saved.stat().st_size > 1000


# What a spawned worker of the face engine's pool imports before it works: the program's main
# module (the `facerec` script's: facerec_pipeline.cli.main) and the face code.
WORKER_IMPORTS = "import facerec_pipeline.cli.main, facerec_pipeline.core.faces.validation"
NOT_IN_A_WORKER = {"sqlalchemy", "dagster", "deepface", "pandas", "scipy", "fastapi"}


def test_a_face_worker_loads_only_the_face_code():
    """Every worker re-imports the program's main module before it works: `facerec` names its
    commands without importing them, and the face code loads no database layer, Dagster,
    DeepFace or pandas, so a fresh pool answers in a fraction of a second rather than after
    a second of imports per worker (BENCHMARKS.md, `make bench-scaling`)."""
    loaded = subprocess.run(
        [sys.executable, "-c", f"import sys; {WORKER_IMPORTS}; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert {name.split(".")[0] for name in loaded} & NOT_IN_A_WORKER == set()
