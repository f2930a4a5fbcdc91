"""Gallery files: versioned batches under recognized_faces_batched/{domain}/batch_NNNN/ and the
production pointer under recognized_faces_prod/{domain}/gallery.json. No Dagster here.

A batch holds up to BATCH_MAX_PEOPLE people: `embeddings.npy` (float32, L2-normalized, one row
per face), `faces.json` (who each row is), `batch_metadata.json`, and the aligned face crops in
one folder per person. Batch numbers keep counting across versions; the galleries table and the
metadata say which batches make a version. Batch and version numbers come from the database; a
folder already at a new batch's place (left by a killed run, or by versions a restored database
does not know) is moved to `.orphaned/`, never overwritten.

Every file a version serves has its sha256 in the database and in the pointer; loading.py checks
them before a version serves.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from facerec_pipeline.core.artifacts.store import (
    GALLERY_BATCH,
    GALLERY_INDEX,
    PROD_POINTER,
    ArtifactKey,
    ArtifactStore,
    fill_bytes,
)
from facerec_pipeline.core.gallery.loading import GalleryDamaged, index_path
from facerec_pipeline.core.gallery.search_index import ANN_MIN_FACES
from facerec_pipeline.db.models import PRODUCTION, Gallery

BATCH_MAX_PEOPLE = 500
POINTER_FILE = "gallery.json"
BATCH_NAME = re.compile(r"batch_(\d+)$")


@dataclass(frozen=True)
class GalleryEntry:
    face_id: int
    person_id: int
    person: str
    normalized_name: str
    wikidata_id: str | None
    image_sha256: str
    crop_path: Path
    vector: np.ndarray  # L2-normalized


def content_hash(entries: list[GalleryEntry], model_config: str) -> str:
    """Identifies what a gallery serves: same faces, people and model -> same hash."""
    digest = hashlib.sha256(model_config.encode())
    for entry in sorted(entries, key=lambda e: e.face_id):
        digest.update(f"|{entry.face_id}:{entry.person_id}:{entry.image_sha256}".encode())
        digest.update(f":{entry.person}:{entry.wikidata_id}".encode())
    return digest.hexdigest()


def next_batch_number(batch_paths: list[list[str]]) -> int:
    """The number after every batch the database knows (`batch_paths` of each version)."""
    numbers = [
        int(match.group(1))
        for paths in batch_paths
        for path in paths
        if (match := BATCH_NAME.search(Path(path).name))
    ]
    return max(numbers, default=0) + 1


def move_aside(path: Path) -> Path | None:
    """Move a file or folder the database does not know out of a new version's way, into
    `.orphaned/` beside it; returns where it went."""
    if not path.exists():
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    target = path.parent / ".orphaned" / f"{path.name}.{stamp}"
    target.parent.mkdir(parents=True, exist_ok=True)
    path.rename(target)
    return target


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def ordered_entries(entries: list[GalleryEntry]) -> list[GalleryEntry]:
    """The order rows are written in: by person, each person's faces together."""
    return sorted(entries, key=lambda e: (e.normalized_name, e.face_id))


@dataclass(frozen=True)
class VersionStamp:
    """What every batch of a version records of the version (in its batch_metadata.json)."""

    domain: str
    version: int
    model_config: str
    created_at: datetime
    run_id: str | None
    engine_config: dict[str, Any] | None


def write_batches(
    batched_dir: Path,
    entries: list[GalleryEntry],
    *,
    domain: str,
    version: int,
    model_config: str,
    created_at: datetime,
    first_batch: int,
    run_id: str | None = None,
    engine_config: dict[str, Any] | None = None,
    artifacts: ArtifactStore | None = None,
) -> list[Path]:
    """Write a version's batches, numbered from `first_batch` (`next_batch_number`), and its
    faiss index when it is large; returns the batch folders. `engine_config` (the fields of the
    EngineConfig that made the embeddings) lets a recognizer embed its queries the same way.
    The pipeline passes `artifacts`: every file is then placed with its artifact row (a batch
    written for a benchmark or a test needs no database)."""
    stamp = VersionStamp(domain, version, model_config, created_at, run_id, engine_config)
    by_person = _entries_by_person(entries)
    people = list(by_person)
    written = []
    for offset, start in enumerate(range(0, len(people), BATCH_MAX_PEOPLE)):
        name = f"batch_{first_batch + offset:04d}"
        partial = _empty_partial(batched_dir, name)
        batch_people = {
            person: by_person[person] for person in people[start : start + BATCH_MAX_PEOPLE]
        }
        faces = _write_batch_files(partial, name, batch_people, stamp)
        written.append(_place_batch(partial, batched_dir / name, faces, stamp, artifacts))
    if len(entries) >= ANN_MIN_FACES:
        everything = [entry for person in people for entry in by_person[person]]
        _write_index(batched_dir, everything, stamp, artifacts)
    return written


def _entries_by_person(entries: list[GalleryEntry]) -> dict[str, list[GalleryEntry]]:
    """Each person's entries by normalized name, people and faces in the order rows are written
    (`ordered_entries`)."""
    by_person: dict[str, list[GalleryEntry]] = {}
    for entry in ordered_entries(entries):
        by_person.setdefault(entry.normalized_name, []).append(entry)
    return by_person


def _empty_partial(batched_dir: Path, name: str) -> Path:
    """The folder batch `name` is written in before it is moved to its place, emptied of what a
    killed run left there."""
    partial = batched_dir / f".{name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    return partial


def _write_batch_files(
    partial: Path, name: str, by_person: dict[str, list[GalleryEntry]], stamp: VersionStamp
) -> list[dict[str, Any]]:
    """Write batch `name` of the people in `by_person` into the folder `partial`: their crops,
    embeddings.npy, person_rows.npy, people.json, faces.json and batch_metadata.json. Returns
    the rows of faces.json."""
    batch_entries = [entry for entries in by_person.values() for entry in entries]
    faces = _link_crops(partial, batch_entries)
    matrix = np.stack([entry.vector for entry in batch_entries]).astype(np.float32)
    np.save(partial / "embeddings.npy", matrix)
    batch_people_json = [
        {
            "person": entries[0].person,
            "normalized_name": person,
            "wikidata_id": entries[0].wikidata_id,
        }
        for person, entries in by_person.items()
    ]
    position = {person: i for i, person in enumerate(by_person)}
    rows = np.asarray([position[e.normalized_name] for e in batch_entries], dtype=np.int32)
    np.save(partial / "person_rows.npy", rows)
    (partial / "people.json").write_text(json.dumps(batch_people_json, ensure_ascii=False))
    (partial / "faces.json").write_text(json.dumps(faces, ensure_ascii=False, indent=1))
    metadata = _batch_metadata(name, int(matrix.shape[1]), by_person, stamp)
    (partial / "batch_metadata.json").write_text(json.dumps(metadata, ensure_ascii=False, indent=1))
    return faces


def _link_crops(partial: Path, batch_entries: list[GalleryEntry]) -> list[dict[str, Any]]:
    """Each face's crop, linked (or copied) into its person's folder; returns who each row is,
    as faces.json holds it."""
    faces = []
    for row, entry in enumerate(batch_entries):
        person_dir = partial / entry.normalized_name
        person_dir.mkdir(exist_ok=True)
        crop_name = f"{entry.face_id}_{entry.crop_path.name}"
        _link_or_copy(entry.crop_path, person_dir / crop_name)
        faces.append(
            {
                "row": row,
                "face_id": entry.face_id,
                "person_id": entry.person_id,
                "person": entry.person,
                "normalized_name": entry.normalized_name,
                "wikidata_id": entry.wikidata_id,
                "image_sha256": entry.image_sha256,
                "crop": f"{entry.normalized_name}/{crop_name}",
            }
        )
    return faces


def _batch_metadata(
    name: str, dim: int, by_person: dict[str, list[GalleryEntry]], stamp: VersionStamp
) -> dict[str, Any]:
    """What batch_metadata.json says of batch `name`, of the version and of its people."""
    return {
        "domain": stamp.domain,
        "gallery_version": stamp.version,
        "batch": name,
        "model_config": stamp.model_config,
        "engine_config": stamp.engine_config,
        "dim": dim,
        "created_at": stamp.created_at.isoformat(),
        "run_id": stamp.run_id,  # lets the recovery of a killed run find what it left
        "person_count": len(by_person),
        "face_count": sum(len(entries) for entries in by_person.values()),
        "people": [
            {
                "name": entries[0].person,
                "normalized_name": person,
                "wikidata_id": entries[0].wikidata_id,
                "faces": len(entries),
            }
            for person, entries in by_person.items()
        ],
    }


def _place_batch(
    partial: Path,
    target: Path,
    faces: list[dict[str, Any]],
    stamp: VersionStamp,
    artifacts: ArtifactStore | None,
) -> Path:
    """Move the written batch to its place `target`, after whatever the database does not know
    there is moved aside; with `artifacts`, each file is placed with its artifact row."""
    move_aside(target)
    if artifacts is None:
        partial.rename(target)
        return target
    shas = {face["crop"]: face["image_sha256"] for face in faces}
    artifacts.put_tree(
        partial,
        target,
        lambda file: ArtifactKey(
            stamp.domain,
            GALLERY_BATCH,
            shas.get(file),
            {"batch": target.name, "file": file},
            stamp.version,
        ),
    )
    return target


def _write_index(
    batched_dir: Path,
    entries: list[GalleryEntry],
    stamp: VersionStamp,
    artifacts: ArtifactStore | None,
) -> None:
    """The faiss index of a large version, over its entries in row order."""
    from facerec_pipeline.core.gallery.search_index import build_ivf, save_index, write_index

    everything = np.stack([entry.vector for entry in entries])
    index = build_ivf(everything.astype(np.float32))
    target = index_path(batched_dir, stamp.version)
    move_aside(target)
    if artifacts is None:
        write_index(index, target)
    else:
        key = ArtifactKey(
            stamp.domain, GALLERY_INDEX, None, {"version": stamp.version}, stamp.version
        )
        artifacts.put(target, key, lambda partial: save_index(index, partial))


PUBLISHED = "published"  # served before: a rollback target
SERVED = (PRODUCTION, PUBLISHED)


def serving_row(session: Session, domain: str) -> Gallery | None:
    """The version that serves the domain: its `production` row, the one truth of it."""
    return session.scalar(
        select(Gallery).where(Gallery.domain == domain, Gallery.status == PRODUCTION)
    )


def pointer_of(gallery: Gallery) -> dict[str, Any]:
    """What a serving version's row says, as the production pointer file holds it and as the
    recognizer loads it: the one function that derives one from the other."""
    published = gallery.published_at
    if published is not None and published.tzinfo is None:
        published = published.replace(tzinfo=UTC)
    return {
        "domain": gallery.domain,
        "version": gallery.version,
        "model_config": gallery.model_config,
        "dim": gallery.dim,
        "batches": gallery.batch_paths,
        "operating_point": gallery.operating_point,
        "file_checksums": gallery.file_checksums,
        "published_at": published.isoformat() if published else None,
    }


def write_prod_pointer(
    session: Session, artifacts: ArtifactStore, prod_dir: Path, pointer: dict[str, Any]
) -> Path:
    """Atomically point production at a published batch set (the file and its artifact row in
    `session`'s transaction)."""
    text = json.dumps(pointer, ensure_ascii=False, indent=1)
    key = ArtifactKey(pointer["domain"], PROD_POINTER, None, {})
    data = fill_bytes(text.encode())  # written even when "current": it may be damaged in place
    return artifacts.put(prod_dir / POINTER_FILE, key, data, session=session, always=True).path


def read_prod_pointer(prod_dir: Path) -> dict[str, Any] | None:
    path = prod_dir / POINTER_FILE
    if not path.exists():
        return None
    try:
        pointer = json.loads(path.read_text())
        int(pointer["version"]), pointer["batches"], pointer["model_config"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise GalleryDamaged(
            f"the production pointer {path} is damaged ({error}); `facerec gallery rollback "
            f"--domain {prod_dir.name} --to N` rewrites it from the database"
        ) from error
    return pointer
