"""The Dlib network on NumPy gives DeepFace's own Dlib embeddings, on real faces."""

import numpy as np
import pytest

from facerec_pipeline.face_engine.dlib_resnet import DlibFaceResNet, WeightsFormatError
from facerec_pipeline.face_engine.weights import DLIB_LANDMARKS, DLIB_RESNET, weights_dir
from facerec_pipeline.raw_images.image_files import load_rgb


def test_embeddings_match_deepface_represent(engine, photos, composed):
    paths = [*sorted(photos.glob("*.*")), composed["astronaut.png"]]
    crops = [engine.detect(load_rgb(path))[0].crop_bgr for path in paths]
    ours = engine.embed(crops)
    deepface = np.array(
        [
            engine._deepface.represent(
                img_path=crop, model_name="Dlib", detector_backend="skip",
                enforce_detection=False, align=False,
            )[0]["embedding"]
            for crop in crops
        ]
    )  # fmt: skip
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
