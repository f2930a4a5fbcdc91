"""dlib's detector as the face engine runs it (engine.py, whose docstring says why): its two
models loaded fast, the pass without upsampling tried first, and faces cut as the chips dlib's
ResNet was trained on. dlib and DeepFace are imported at first use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from facerec_pipeline.core.faces.detected import DetectedFace
from facerec_pipeline.core.faces.weights import DLIB_LANDMARKS, weights_dir
from facerec_pipeline.core.files import save_atomically

FRONTAL_DETECTOR_COPY = "dlib_frontal_face_detector.svm"  # made from dlib itself, never fetched

# Without upsampling, dlib's HOG detector finds faces whose box would measure 64 px and more
# (measured on the packaged test faces, scaled down: all found from 55 px, none under 49 px). A
# face of this many px in the detection copy has (110/64)^2 = 2.95 times the area of any face
# the coarse pass can miss, so a missed face cannot make it lose the dominance rule
# (GateConfig.dominance_ratio 2.5).
COARSE_TRUSTED_FACE = 110
# dlib's face recognition ResNet was trained on these chips (dlib/examples/dnn_face_recognition_ex).
CHIP_SIZE, CHIP_PADDING = 150, 0.25


def load_dlib_models(models_dir: Path) -> tuple[Any, Any]:
    """The two dlib models DeepFace's dlib detector builds: dlib's frontal face detector and
    the 5-point shape predictor. dlib takes 0.6 s to decode its built-in detector, so a copy
    saved with dlib's own `save` is kept beside the weights (1 ms to load; same detector)."""
    import dlib

    weights = weights_dir(models_dir)
    saved = weights / FRONTAL_DETECTOR_COPY
    detector = None
    if saved.is_file():
        try:
            detector = dlib.fhog_object_detector(str(saved))
        except RuntimeError:  # damaged: made again below
            detector = None
    if detector is None:
        detector = dlib.get_frontal_face_detector()
        try:
            save_atomically(saved, lambda partial: detector.save(str(partial)))
        except OSError:  # a read-only models folder: decode it each time
            pass
    return detector, dlib.shape_predictor(str(weights / DLIB_LANDMARKS))


def coarse_first_regions(
    models: tuple[Any, Any], image_bgr: np.ndarray, min_score: float
) -> list[Any]:
    """DeepFace's dlib detect_faces, trying dlib without upsampling first (engine.py's
    docstring): the coarse pass is the answer when it finds a face of COARSE_TRUSTED_FACE px
    scored `min_score` or more. `models`: load_dlib_models'."""
    from deepface.models.Detector import FacialAreaRegion

    detector, landmarks = models
    rects, scores, _ = detector.run(image_bgr, 0)
    trusted = any(
        min(rect.width(), rect.height()) >= COARSE_TRUSTED_FACE and score >= min_score
        for rect, score in zip(rects, scores, strict=True)
    )
    if not trusted:
        rects, scores, _ = detector.run(image_bgr, 1)  # DeepFace's own pass
    height, width = image_bgr.shape[:2]
    regions = []
    for rect, score in zip(rects, scores, strict=True):
        # As deepface/models/face_detection/Dlib.py builds its regions.
        shape = landmarks(image_bgr, rect)
        y, x = int(max(0, rect.top())), int(max(0, rect.left()))
        points = [(shape.part(i).x, shape.part(i).y) for i in range(4)]
        regions.append(
            FacialAreaRegion(
                x=x,
                y=y,
                w=int(min(rect.right(), width) - x),
                h=int(min(rect.bottom(), height) - y),
                left_eye=_midpoint(points[0], points[1]),
                right_eye=_midpoint(points[2], points[3]),
                confidence=min(max(0, score), 1.0),
            )
        )
    return regions


def chip_faces(
    landmarks: Any, image_rgb: np.ndarray, areas: list[Any], scale: float
) -> list[DetectedFace]:
    """Faces cut as dlib's ResNet expects: 5-point landmarks (`landmarks`, dlib's shape
    predictor) on the full-resolution photo, then dlib.get_face_chip (rotated upright, 150 px,
    25% padding). `areas` were found on a copy scaled by `scale`. crop_bgr is the chip."""
    import dlib

    height, width = image_rgb.shape[:2]
    faces = []
    for area in areas:
        x, y = round(area.x / scale), round(area.y / scale)
        w = min(round(area.w / scale), width - x)
        h = min(round(area.h / scale), height - y)
        if w <= 0 or h <= 0:
            continue
        shape = landmarks(image_rgb, dlib.rectangle(x, y, x + w - 1, y + h - 1))
        chip = dlib.get_face_chip(image_rgb, shape, CHIP_SIZE, CHIP_PADDING)
        faces.append(
            DetectedFace(
                x=x,
                y=y,
                w=w,
                h=h,
                confidence=float(area.confidence or 0.0),
                crop_bgr=np.ascontiguousarray(chip[:, :, ::-1]),
            )
        )
    faces.sort(key=lambda face: face.area, reverse=True)
    return faces


def _midpoint(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return int((a[0] + b[0]) // 2), int((a[1] + b[1]) // 2)
