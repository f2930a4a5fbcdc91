"""The face engine: DeepFace detection, alignment and embedding.

Detection runs DeepFace's detector on a copy downscaled to `detect_max_side` pixels; boxes and eye
points are mapped back to the full-resolution image, where the face is cut out in the way its
model expects:

- the `Dlib` model gets the chip dlib's ResNet was trained on: dlib's 5-point landmarks and
  `dlib.get_face_chip(image, shape, 150, 0.25)` (`dlib_chips`), embedded by dlib_resnet.py
  (NumPy), with the descriptor of the chip and of its mirror image averaged (`mirror_average`).
  On the LFW development set this took closed-set rank-1 from 0.763 (DeepFace's crop) to 0.933
  and DIR at 1% FAR from 0.38 to 0.63 (BENCHMARKS.md);
- every other model gets DeepFace's own alignment and `DeepFace.represent(...,
  detector_backend="skip")`; `dlib_chips: false` gives `Dlib` that path too (DeepFace's crop,
  resized and normalized as DeepFace does, on the same NumPy network).

With the `dlib` detector, detection is coarse first: dlib's HOG detector without upsampling (a
quarter of the pixels DeepFace's upsampled pass scans). When it finds a confident face large
enough that any face it could miss is too small to challenge it under the dominance rule of the
quality gates, that is the answer; otherwise the upsampled pass runs, as in DeepFace. Portraits,
the common case, take the cheap path.

The `SFace` model with the `yunet` detector (OpenCV Zoo's, run by OpenCV: sface.py) detects,
aligns and embeds on its own; DeepFace is not involved.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from facerec_pipeline.core.faces.detected import DetectedFace
from facerec_pipeline.core.faces.dlib_detection import (
    CHIP_PADDING,
    CHIP_SIZE,
    COARSE_TRUSTED_FACE,
    chip_faces,
    coarse_first_regions,
    load_dlib_models,
)
from facerec_pipeline.core.faces.dlib_resnet import DlibFaceResNet
from facerec_pipeline.core.faces.sface import ALIGNED_SIZE, YuNetSFace
from facerec_pipeline.core.faces.weights import (
    DLIB_RESNET,
    check_weights,
    use_models_dir,
    weights_dir,
)

# DeepFace's verification thresholds for cosine distance, by model (deepface/config/threshold.py).
COSINE_THRESHOLDS = {
    "Dlib": 0.07,
    "Facenet512": 0.30,
    "Facenet": 0.40,
    "ArcFace": 0.68,
    "SFace": 0.593,
    "VGG-Face": 0.68,
    "GhostFaceNet": 0.65,
}
SFACE, YUNET = "SFace", "yunet"  # OpenCV Zoo's, through OpenCV (sface.py), never DeepFace's


@dataclass(frozen=True)
class EngineConfig:
    """How faces are detected, cut and embedded. The field defaults are the `Dlib` engine as
    versions before the model became a domain setting recorded it (their batches store these
    fields; a field added since takes its default when such a record is read), so a default
    never changes; each model's own configuration is in core/face_models.py."""

    model_name: str = "Dlib"
    detector_backend: str = "dlib"
    normalization: str = "base"
    detect_max_side: int = 800
    coarse_first: bool = True  # dlib only: try the pass without upsampling first (see above)
    # The coarse pass is trusted from this detection score; the face engine resource sets it to
    # the quality gates' min_confidence, so a trusted face is confident there too.
    coarse_min_score: float = 0.5
    dlib_chips: bool = True  # Dlib model: dlib's own face chips instead of DeepFace's crop
    # Dlib chips and SFace: average the descriptors of the crop and of its mirror image.
    mirror_average: bool = True
    min_detection_score: float = 0.5  # yunet: faces scored under this are not reported

    @property
    def uses_dlib_chips(self) -> bool:
        return self.dlib_chips and self.model_name == "Dlib"

    @property
    def uses_sface(self) -> bool:
        return self.model_name == SFACE

    @property
    def uses_coarse_pass(self) -> bool:
        return self.coarse_first and self.detector_backend == "dlib"

    @property
    def detector_key(self) -> str:
        if self.uses_sface:
            return (
                f"{self.detector_backend}-2023mar-int8bq@{self.detect_max_side}px"
                f"|score{self.min_detection_score}|align{ALIGNED_SIZE}"
            )
        coarse = (
            f"|coarse{COARSE_TRUSTED_FACE}@{self.coarse_min_score}" if self.uses_coarse_pass else ""
        )
        crop = f"|chip{CHIP_SIZE}@{CHIP_PADDING}" if self.uses_dlib_chips else "|align"
        return f"{self.detector_backend}@{self.detect_max_side}px{coarse}{crop}"

    @property
    def model_key(self) -> str:
        """Identifies embeddings that may be compared; embeddings of two keys never mix. The
        crop (DeepFace's alignment, dlib's chip, SFace's 5-point alignment) is part of the
        detector key. SFace's does not name DeepFace's version: DeepFace does not touch it."""
        mirrored = self.mirror_average and (self.uses_dlib_chips or self.uses_sface)
        mirror = "|mirror" if mirrored else ""
        if self.uses_sface:
            return f"{self.model_name}-2021dec-int8bq|{self.detector_key}{mirror}"
        version = deepface_version()
        return (
            f"{self.model_name}|{self.normalization}|{self.detector_key}{mirror}|deepface-{version}"
        )


def deepface_version() -> str:
    from importlib.metadata import version

    return version("deepface")


def library_version(config: EngineConfig) -> str:
    """The library that runs `config`'s model: OpenCV for SFace, DeepFace's version otherwise."""
    if config.uses_sface:
        import cv2

        return f"opencv-{cv2.__version__}"
    return f"deepface-{deepface_version()}"


class FaceEngine:
    """Detects, cuts and embeds faces with the weights in `models_dir`. Making one checks the
    weights and changes nothing else; DeepFace itself is loaded at its first use (the default
    `Dlib` configuration never needs it: dlib's detector and the NumPy network read the weights
    from `models_dir` directly)."""

    def __init__(self, config: EngineConfig, models_dir: Path):
        if config.uses_sface != (config.detector_backend == YUNET):
            raise ValueError(
                f"the {SFACE} model runs with the {YUNET} detector only (it is aligned with "
                f"YuNet's 5 landmarks), not {config.model_name} with {config.detector_backend}"
            )
        self.config = config
        self.models_dir = models_dir
        check_weights(models_dir, config.model_name, config.detector_backend)

    @cached_property
    def _sface(self) -> YuNetSFace:
        return YuNetSFace(
            self.models_dir,
            self.config.detect_max_side,
            self.config.min_detection_score,
            self.config.mirror_average,
        )

    @cached_property
    def _deepface(self) -> Any:
        # DeepFace reads DEEPFACE_HOME when imported and when it builds a model: point it here
        # first (weights.use_models_dir refuses a process already serving another folder).
        use_models_dir(self.models_dir)
        from deepface import DeepFace

        return DeepFace

    @cached_property
    def _detector(self) -> Any:
        return self._deepface.build_model(
            task="face_detector", model_name=self.config.detector_backend
        )

    def detect(self, image_rgb: np.ndarray) -> list[DetectedFace]:
        """All faces in an RGB image, boxes in the image's own pixel coordinates."""
        if self.config.uses_sface:
            return self._sface.detect(image_rgb)
        import cv2
        from deepface.models.Detector import FacialAreaRegion
        from deepface.modules.detection import extract_face

        full_bgr = np.ascontiguousarray(image_rgb[:, :, ::-1])
        height, width = full_bgr.shape[:2]
        scale = min(1.0, self.config.detect_max_side / max(height, width))
        small = (
            cv2.resize(
                full_bgr,
                (max(1, round(width * scale)), max(1, round(height * scale))),
                interpolation=cv2.INTER_AREA,
            )
            if scale < 1.0
            else full_bgr
        )

        def up(point: tuple[int, int] | None) -> tuple[int, int] | None:
            return None if point is None else (round(point[0] / scale), round(point[1] / scale))

        areas = (
            coarse_first_regions(self._dlib_models, small, self.config.coarse_min_score)
            if self.config.uses_coarse_pass
            else self._detector.detect_faces(small)
        )
        if self.config.uses_dlib_chips:
            _, landmarks = self._dlib_models
            return chip_faces(landmarks, np.ascontiguousarray(image_rgb), areas, scale)
        faces = []
        for area in areas:
            full_area = FacialAreaRegion(
                x=round(area.x / scale),
                y=round(area.y / scale),
                w=round(area.w / scale),
                h=round(area.h / scale),
                left_eye=up(area.left_eye),
                right_eye=up(area.right_eye),
                confidence=area.confidence,
            )
            extracted = extract_face(
                facial_area=full_area,
                img=full_bgr,
                align=True,
                expand_percentage=0,
                width_border=0,
                height_border=0,
                detector_backend=self.config.detector_backend,
            )
            region = extracted.facial_area
            if extracted.img.size == 0:
                continue
            faces.append(
                DetectedFace(
                    x=int(region.x),
                    y=int(region.y),
                    w=int(region.w),
                    h=int(region.h),
                    confidence=float(region.confidence or 0.0),
                    crop_bgr=np.ascontiguousarray(extracted.img),
                )
            )
        faces.sort(key=lambda face: face.area, reverse=True)
        return faces

    @cached_property
    def _dlib_models(self) -> tuple[Any, Any]:
        """dlib's frontal face detector and 5-point shape predictor (load_dlib_models)."""
        return load_dlib_models(self.models_dir)

    @cached_property
    def _dlib_resnet(self) -> DlibFaceResNet:
        return DlibFaceResNet(weights_dir(self.models_dir) / DLIB_RESNET)

    def _embed_dlib(self, crops_bgr: list[np.ndarray]) -> np.ndarray:
        """DeepFace.represent(model_name="Dlib", detector_backend="skip") with the network on
        NumPy: DeepFace's resize_image and normalize_input, then what DlibClient.forward does."""
        from deepface.modules import preprocessing

        batch = np.concatenate(
            [preprocessing.resize_image(img=crop, target_size=(150, 150)) for crop in crops_bgr]
        )
        batch = preprocessing.normalize_input(img=batch, normalization=self.config.normalization)
        rgb = batch[:, :, :, ::-1]
        if rgb.max() <= 1:
            rgb = rgb * 255
        descriptors = self._dlib_resnet.compute_face_descriptor(rgb.astype(np.uint8))
        return np.asarray(descriptors, dtype=np.float32)

    def _embed_dlib_chips(self, chips_bgr: list[np.ndarray]) -> np.ndarray:
        """dlib's descriptors of its own face chips; with mirror_average, the mean of the chip's
        and its mirror image's descriptors."""
        rgb = np.stack([chip[:, :, ::-1] for chip in chips_bgr])
        if rgb.shape[1:3] != (CHIP_SIZE, CHIP_SIZE):
            raise ValueError(f"dlib chips must be {CHIP_SIZE}x{CHIP_SIZE}, got {rgb.shape[1:3]}")
        if not self.config.mirror_average:
            return np.asarray(self._dlib_resnet.compute_face_descriptor(rgb), dtype=np.float32)
        both = self._dlib_resnet.compute_face_descriptor(np.concatenate([rgb, rgb[:, :, ::-1]]))
        both = np.asarray(both, dtype=np.float32)
        return (both[: len(rgb)] + both[len(rgb) :]) / 2

    def warm(self) -> None:
        """Load every model this engine runs (each loads at its first use otherwise)."""
        self.detect(np.zeros((64, 64, 3), dtype=np.uint8))
        if self.config.uses_sface:
            side = ALIGNED_SIZE
        elif self.config.uses_dlib_chips:
            side = CHIP_SIZE
        else:
            side = 152
        self.embed([np.zeros((side, side, 3), dtype=np.uint8)])

    def embed(self, crops_bgr: list[np.ndarray]) -> np.ndarray:
        """Embeddings (n x dim, float32) of the crops detect() cut: SFace's aligned crops for
        `SFace`, dlib chips for `Dlib`, DeepFace's aligned crops (embedded as
        DeepFace.represent does) otherwise."""
        if not crops_bgr:
            return np.zeros((0, 0), dtype=np.float32)
        if self.config.uses_sface:
            return self._sface.embed(crops_bgr)
        if self.config.uses_dlib_chips:
            return self._embed_dlib_chips(crops_bgr)
        if self.config.model_name == "Dlib":
            return self._embed_dlib(crops_bgr)
        vectors = []
        for crop in crops_bgr:
            result = self._deepface.represent(
                img_path=crop,
                model_name=self.config.model_name,
                detector_backend="skip",
                enforce_detection=False,
                align=False,
                normalization=self.config.normalization,
            )
            vectors.append(result[0]["embedding"])
        return np.asarray(vectors, dtype=np.float32)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
