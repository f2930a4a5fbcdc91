"""YuNet + SFace (OpenCV Zoo), run by OpenCV's DNN module: the `SFace` model with the `yunet`
detector.

- Detection: YuNet (`cv2.FaceDetectorYN`) on a copy downscaled by an integer factor to at most
  `detect_max_side` pixels; each face's box and its 5 landmarks (eyes, nose tip, mouth corners)
  are mapped back to the full-resolution photo.
- Crop: `cv2.FaceRecognizerSF.alignCrop`, the 112x112 crop SFace was trained on (a similarity
  transform of the 5 landmarks onto SFace's template), cut from the full-resolution photo.
- Embedding: SFace's 128 features (`FaceRecognizerSF.feature`, the float32 copy of the int8 file
  that `facerec models install` makes: weights.py), L2-normalized; with `mirror_average`, the
  mean of those of the crop and of its mirror image.

This is not DeepFace's `SFace` path, which downloads its weights at run time and feeds the model
a crop without the 5-point alignment."""

from __future__ import annotations

import math
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from facerec_pipeline.core.faces.detected import DetectedFace
from facerec_pipeline.core.faces.weights import SFACE, YUNET, weight_path

ALIGNED_SIZE = 112  # SFace's input: the aligned crop, 112x112
YUNET_NMS = 0.3  # OpenCV Zoo's defaults for YuNet
YUNET_TOP_K = 5000


@contextmanager
def _quiet_opencv():
    """OpenCV 5 warns on stderr at every FaceDetectorYN/FaceRecognizerSF creation that its new
    DNN engine ignores a target setting the classes make (they run on the CPU either way)."""
    logging = cv2.utils.logging
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        logging.setLogLevel(level)


class YuNetSFace:
    """Detects, aligns and embeds faces with the YuNet and SFace files under `models_dir`."""

    def __init__(
        self, models_dir: Path, detect_max_side: int, min_score: float, mirror_average: bool
    ):
        self.models_dir = models_dir
        self.detect_max_side = detect_max_side
        self.min_score = min_score
        self.mirror_average = mirror_average

    @cached_property
    def _detector(self):
        with _quiet_opencv():
            return cv2.FaceDetectorYN.create(
                str(weight_path(self.models_dir, YUNET)),
                "",
                (320, 320),
                self.min_score,
                YUNET_NMS,
                YUNET_TOP_K,
            )

    @cached_property
    def _recognizer(self):
        with _quiet_opencv():
            return cv2.FaceRecognizerSF.create(str(weight_path(self.models_dir, SFACE)), "")

    def detect(self, image_rgb: np.ndarray) -> list[DetectedFace]:
        """Every face YuNet finds at or above `min_score`, largest first, with its aligned crop
        (BGR, 112x112) cut from the full-resolution photo."""
        height, width = image_rgb.shape[:2]
        # An integer factor: OpenCV's area resampling takes its fast path (5 ms instead of 9 on
        # a 3 MP photo), and the copy's long side lies between half and all of detect_max_side.
        factor = max(1, math.ceil(max(height, width) / self.detect_max_side))
        small = (
            cv2.resize(image_rgb, None, fx=1 / factor, fy=1 / factor, interpolation=cv2.INTER_AREA)
            if factor > 1
            else image_rgb
        )
        scale_x, scale_y = small.shape[1] / width, small.shape[0] / height
        self._detector.setInputSize((small.shape[1], small.shape[0]))
        _, rows = self._detector.detect(np.ascontiguousarray(small[:, :, ::-1]))
        faces = []
        for row in rows if rows is not None else []:
            full = row.astype(np.float32).copy()
            full[0:14:2] /= scale_x  # box and landmarks in the full photo's pixels
            full[1:14:2] /= scale_y
            x, y = max(0, round(float(full[0]))), max(0, round(float(full[1])))
            w = min(round(float(full[0] + full[2])), width) - x
            h = min(round(float(full[1] + full[3])), height) - y
            if w <= 0 or h <= 0:
                continue
            # The alignment only moves pixels: cut from the RGB photo, then turn the crop BGR.
            crop = self._recognizer.alignCrop(image_rgb, full[None, :])[:, :, ::-1]
            faces.append(
                DetectedFace(
                    x=x,
                    y=y,
                    w=w,
                    h=h,
                    confidence=float(min(max(full[14], 0.0), 1.0)),
                    crop_bgr=np.ascontiguousarray(crop),
                )
            )
        faces.sort(key=lambda face: face.area, reverse=True)
        return faces

    def embed(self, crops_bgr: list[np.ndarray]) -> np.ndarray:
        """SFace features (n x 128, float32) of aligned crops; mirror-averaged when set."""
        vectors = []
        for crop in crops_bgr:
            if crop.shape[:2] != (ALIGNED_SIZE, ALIGNED_SIZE):
                raise ValueError(
                    f"SFace crops must be {ALIGNED_SIZE}x{ALIGNED_SIZE}, got {crop.shape[:2]}"
                )
            vector = _unit(self._recognizer.feature(crop))
            if self.mirror_average:
                mirrored = np.ascontiguousarray(crop[:, ::-1])
                vector = (vector + _unit(self._recognizer.feature(mirrored))) / 2
            vectors.append(vector)
        return np.asarray(vectors, dtype=np.float32).reshape(len(vectors), -1)


def _unit(feature: np.ndarray) -> np.ndarray:
    vector = feature.ravel().astype(np.float32)
    return vector / max(float(np.linalg.norm(vector)), 1e-12)
