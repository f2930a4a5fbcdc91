"""Quality gates: decide, from the faces found in one photo, whether it gives the gallery one
usable face of its subject, or why not. Pure functions, no Dagster, no DeepFace."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np


@dataclass(frozen=True)
class GateConfig:
    # Chosen on the LFW development set by DIR/FAR with and without each gate (BENCHMARKS.md):
    # a 60 px size floor cost 9 points of rank-1 (LFW faces are 52-62 px in dlib's box) and a
    # blur floor of 40 cost 5; below these values the gates changed nothing there.
    min_confidence: float = 0.5
    min_face_size: int = 40  # pixels, shorter side of the box in the original photo
    min_blur_score: float = 15.0  # variance of the Laplacian on the crop at 112 px
    # The largest face wins over the others when its area is at least this many times the next
    # one (a subject with people in the background); otherwise the photo has multiple_faces.
    dominance_ratio: float = 2.5
    duplicate_hash_distance: int = 4  # dHash bits; at or under this two photos are the same

    @property
    def key(self) -> str:
        return (
            f"conf{self.min_confidence}|size{self.min_face_size}|blur{self.min_blur_score}"
            f"|dom{self.dominance_ratio}|keep-one-face"
        )


class FaceLike(Protocol):
    confidence: float
    crop_bgr: np.ndarray

    @property
    def area(self) -> int: ...

    @property
    def size(self) -> int: ...


@dataclass(frozen=True)
class GateDecision:
    accepted: bool
    reason: str | None = None
    detail: str | None = None
    face_index: int | None = None  # index of the accepted (or judged) face in the input list
    faces_found: int = 0
    background_faces: int = 0
    blur_score: float | None = None


def blur_score(crop_bgr: np.ndarray) -> float:
    """Sharpness of a face crop: variance of the Laplacian at a fixed 112 px, so the score does
    not depend on the face's size in the photo."""
    gray = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY) if crop_bgr.ndim == 3 else crop_bgr
    resized = cv2.resize(gray, (112, 112), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(resized, cv2.CV_64F).var())


def judge_faces(faces: list[FaceLike], config: GateConfig) -> GateDecision:
    """Faces must be sorted largest first."""
    found = len(faces)
    confident = [i for i, face in enumerate(faces) if face.confidence >= config.min_confidence]
    if found == 0:
        return GateDecision(False, "no_face", "the detector found no face", faces_found=0)
    if not confident:
        best = max(face.confidence for face in faces)
        return GateDecision(
            False,
            "low_confidence",
            f"best detection confidence {best:.2f} < {config.min_confidence}",
            0,  # the largest face: kept if it is its person's only one (keep_one_face_per_person)
            faces_found=found,
        )
    main = confident[0]
    others = [i for i in confident if i != main]
    if others:
        ratio = faces[main].area / max(faces[others[0]].area, 1)
        if ratio < config.dominance_ratio:
            return GateDecision(
                False,
                "multiple_faces",
                f"{len(confident)} faces of comparable size (largest/second area {ratio:.1f} "
                f"< {config.dominance_ratio})",
                main,
                found,
                found - 1,
            )
    face = faces[main]
    background = found - 1
    if face.size < config.min_face_size:
        return GateDecision(
            False,
            "face_too_small",
            f"face {face.size}px < {config.min_face_size}px",
            main,
            found,
            background,
        )
    score = blur_score(face.crop_bgr)
    if score < config.min_blur_score:
        return GateDecision(
            False,
            "blurry",
            f"blur score {score:.1f} < {config.min_blur_score}",
            main,
            found,
            background,
            score,
        )
    return GateDecision(True, None, None, main, found, background, score)
