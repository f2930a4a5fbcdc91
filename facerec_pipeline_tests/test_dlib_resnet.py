"""The Dlib network on NumPy gives DeepFace's own Dlib embeddings, on real faces."""

from dataclasses import replace

import numpy as np
import pytest

from facerec_pipeline.core.faces.dlib_detection import CHIP_PADDING, CHIP_SIZE
from facerec_pipeline.core.faces.dlib_resnet import DlibFaceResNet, WeightsFormatError
from facerec_pipeline.core.faces.engine import FaceEngine
from facerec_pipeline.core.faces.weights import DLIB_LANDMARKS, DLIB_RESNET, weights_dir
from facerec_pipeline.core.images.image_files import load_rgb


def test_embeddings_match_deepface_represent(engine, photos, composed):
    """With DeepFace's crop (dlib_chips off), the NumPy network is DeepFace.represent."""
    engine = FaceEngine(replace(engine.config, dlib_chips=False), engine.models_dir)
    paths = [*sorted(photos.glob("*.*")), composed["astronaut.png"]]
    crops = [engine.detect(load_rgb(path))[0].crop_bgr for path in paths]
    ours = engine.embed(crops)
    deepface = np.array(
        [
            engine._deepface.represent(
                img_path=crop,
                model_name="Dlib",
                detector_backend="skip",
                enforce_detection=False,
                align=False,
            )[0]["embedding"]
            for crop in crops
        ]
    )
    assert ours.shape == deepface.shape == (len(paths), 128)
    assert np.abs(ours - deepface).max() < 1e-5
    # One at a time gives what the batch gives.
    assert np.allclose(engine.embed(crops[:1])[0], ours[0], atol=1e-6)


def test_other_files_are_refused(engine, tmp_path):
    with pytest.raises(WeightsFormatError, match="not dlib's face recognition ResNet"):
        DlibFaceResNet(weights_dir(engine.models_dir) / DLIB_LANDMARKS)
    truncated = tmp_path / "truncated.dat"
    whole = weights_dir(engine.models_dir) / DLIB_RESNET
    truncated.write_bytes(whole.read_bytes()[:5_000_000])
    with pytest.raises(WeightsFormatError):
        DlibFaceResNet(truncated)


def test_chips_must_be_150_px_rgb(engine):
    network = engine._dlib_resnet
    with pytest.raises(ValueError, match="150x150 RGB"):
        network.compute_face_descriptor(np.zeros((1, 100, 100, 3), dtype=np.uint8))


def test_default_embeddings_are_dlibs_own_chip_descriptors_mirror_averaged(engine, photos):
    """The default Dlib path is dlib's documented one: 5-point landmarks, get_face_chip 150 /
    0.25, the descriptor of dlib-bin's own network (here averaged with the mirror image's)."""
    import dlib

    image = load_rgb(photos / "obama.jpg")
    face = engine.detect(image)[0]
    weights = weights_dir(engine.models_dir)
    shape = dlib.shape_predictor(str(weights / DLIB_LANDMARKS))(
        image, dlib.rectangle(face.x, face.y, face.x + face.w - 1, face.y + face.h - 1)
    )
    chip = dlib.get_face_chip(image, shape, CHIP_SIZE, CHIP_PADDING)
    assert np.array_equal(face.crop_bgr[:, :, ::-1], chip)
    model = dlib.face_recognition_model_v1(str(weights / DLIB_RESNET))
    theirs = [np.asarray(model.compute_face_descriptor(c)) for c in (chip, chip[:, ::-1].copy())]
    assert np.abs(engine.embed([face.crop_bgr])[0] - np.mean(theirs, axis=0)).max() < 1e-5
