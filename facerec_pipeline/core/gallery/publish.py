"""Gallery files: versioned batches under recognized_faces_batched/{domain}/batch_NNNN/ and the
production pointer under recognized_faces_prod/{domain}/gallery.json. No Dagster here.

A batch holds up to BATCH_MAX_PEOPLE people: `embeddings.npy` (float32, L2-normalized, one row
per face), `faces.json` (who each row is), `batch_metadata.json`, and the aligned face crops in
one folder per person. Batch numbers keep counting across versions; the galleries table and the
metadata say which batches make a version. Batch and version numbers come from the database; a
folder already at a new batch's place (left by a killed run, or by versions a restored database
does not know) is moved to `.orphaned/`, never overwritten.

Every file a version serves has its sha256 in the database (`galleries.file_checksums`) and in
the pointer; `load_batches` checks them (and the shapes) before a version serves, so a damaged or
missing file is refused with its name instead of giving wrong names.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
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
from facerec_pipeline.core.files import sha256_file
from facerec_pipeline.core.gallery.open_set import OperatingPoint, person_starts
from facerec_pipeline.core.gallery.search_index import ANN_MIN_FACES
from facerec_pipeline.db.models import PRODUCTION, Gallery

BATCH_MAX_PEOPLE = 500
POINTER_FILE = "gallery.json"
SERVED_FILES = (
    "embeddings.npy",
    "person_rows.npy",
    "people.json",
    "faces.json",
    "batch_metadata.json",
)
BATCH_NAME = re.compile(r"batch_(\d+)$")


class GalleryDamaged(LookupError):
    """A gallery version's files are missing, altered or inconsistent: it must not serve."""


@dataclass
class LoadedGallery:
    domain: str
    version: int
    model_config: str
    matrix: np.ndarray  # n x dim, L2-normalized float32
    people: list[dict[str, Any]]  # person, normalized_name, wikidata_id
    person_rows: np.ndarray  # row -> index in people
    batch_metadata: list[dict[str, Any]]
    faces: list[dict[str, Any]] = field(default_factory=list)  # per row; loaded on request
    index: Any = None  # a faiss index for large galleries
    operating_point: OperatingPoint | None = None  # from the production pointer
    # The sha256 of its files when loaded (from its row): a version rewritten in place (an
    # erasure) is told apart from the copy in memory.
    checksums: dict[str, str] | None = None

    @cached_property
    def person_starts(self) -> np.ndarray:
        """First row of each person (a person's rows are contiguous)."""
        return person_starts(self.person_rows)

    def person_at(self, row: int) -> dict[str, Any]:
        return self.people[int(self.person_rows[row])]

    @property
    def labels(self) -> list[str]:
        names = [person["normalized_name"] for person in self.people]
        return [names[i] for i in self.person_rows]


def index_path(batched_dir: Path, version: int) -> Path:
    return batched_dir / f"index_v{version:04d}.faiss"


def served_paths(batch_dirs: list[Path], index: Path | None) -> list[Path]:
    """The files a version serves: each batch's SERVED_FILES, and the faiss index if any."""
    paths = [batch / name for batch in batch_dirs for name in SERVED_FILES]
    return paths + ([index] if index is not None and index.exists() else [])


def checksum_key(storage_dir: Path, path: Path) -> str:
    """How a version's checksums name a file: its path relative to the storage root (absolute
    outside it)."""
    return (
        path.relative_to(storage_dir).as_posix() if path.is_relative_to(storage_dir) else str(path)
    )


def file_checksums(storage_dir: Path, paths: list[Path]) -> dict[str, str]:
    """sha256 per file, keyed by checksum_key."""
    return {checksum_key(storage_dir, path): sha256_file(path) for path in paths}


def damaged_files(storage_dir: Path, checksums: dict[str, str]) -> list[str]:
    """`path: missing` or `path: altered` for each file that no longer matches its checksum."""
    problems = []
    for stored, expected in sorted(checksums.items()):
        path = Path(stored) if Path(stored).is_absolute() else storage_dir / stored
        if not path.is_file():
            problems.append(f"{stored}: missing")
        elif sha256_file(path) != expected:
            problems.append(f"{stored}: altered (sha256 differs from the one recorded)")
    return problems


def verify_version(
    storage_dir: Path, domain: str, version: int, checksums: dict[str, str] | None
) -> None:
    """Raise GalleryDamaged naming the damaged files; versions without checksums (built before
    they were recorded) pass here and are still checked for shape by `load_batches`."""
    problems = damaged_files(storage_dir, checksums) if checksums else []
    if problems:
        raise GalleryDamaged(
            f"gallery v{version} of {domain!r} is damaged and will not serve: "
            f"{'; '.join(problems[:5])}{' ...' if len(problems) > 5 else ''}. Serve another "
            f"version with `facerec gallery rollback --domain {domain}`, or build a new one with "
            f"`facerec run --domain {domain}`"
        )


def load_batches(
    storage_dir: Path,
    domain: str,
    version: int,
    model_config: str,
    batch_paths: list[str],
    with_faces: bool = False,
    checksums: dict[str, str] | None = None,
) -> LoadedGallery:
    """A version's matrix and who each row is (from people.json + person_rows.npy, fast);
    `with_faces` also reads faces.json (photo hashes and crops per row). With `checksums`, every
    served file is checked first. Raises GalleryDamaged for missing, altered or inconsistent
    files."""
    verify_version(storage_dir, domain, version, checksums)
    try:
        return _load_batches(
            storage_dir, domain, version, model_config, batch_paths, with_faces, checksums
        )
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as error:
        raise GalleryDamaged(
            f"gallery v{version} of {domain!r} cannot be read and will not serve: {error}. "
            f"Serve another version with `facerec gallery rollback --domain {domain}`, or build "
            f"a new one with `facerec run --domain {domain}`"
        ) from error


def _load_batches(
    storage_dir: Path,
    domain: str,
    version: int,
    model_config: str,
    batch_paths: list[str],
    with_faces: bool,
    checksums: dict[str, str] | None,
) -> LoadedGallery:
    if not batch_paths:
        raise ValueError("the version names no batch")
    matrices, people, rows, faces, metadata = [], [], [], [], []
    for batch in batch_paths:
        batch_dir = Path(batch) if Path(batch).is_absolute() else storage_dir / batch
        matrix = np.load(batch_dir / "embeddings.npy", allow_pickle=False)
        matrices.append(matrix)
        metadata.append(json.loads((batch_dir / "batch_metadata.json").read_text()))
        batch_faces = None
        if (batch_dir / "person_rows.npy").exists():
            batch_rows = np.load(batch_dir / "person_rows.npy", allow_pickle=False)
            batch_people = json.loads((batch_dir / "people.json").read_text())
            if len(batch_rows) != len(matrix) or (
                len(batch_rows)
                and not 0 <= batch_rows.min() <= batch_rows.max() < len(batch_people)
            ):
                raise ValueError(
                    f"{batch_dir}: person_rows.npy does not match embeddings.npy and people.json"
                )
            rows.append(batch_rows + len(people))
            people.extend(batch_people)
        else:  # batches written before people.json existed
            batch_faces = json.loads((batch_dir / "faces.json").read_text())
            order = list(dict.fromkeys(face["normalized_name"] for face in batch_faces))
            rows.append(
                np.asarray([order.index(f["normalized_name"]) for f in batch_faces]) + len(people)
            )
            first = {f["normalized_name"]: f for f in reversed(batch_faces)}
            people.extend(
                {key: first[name].get(key) for key in ("person", "normalized_name", "wikidata_id")}
                for name in order
            )
        if with_faces:
            faces.extend(batch_faces or json.loads((batch_dir / "faces.json").read_text()))
    matrix = np.concatenate(matrices).astype(np.float32, copy=False)
    first = Path(batch_paths[0])
    index = _served_index(
        storage_dir,
        index_path((first if first.is_absolute() else storage_dir / first).parent, version),
        checksums,
        len(matrix),
    )
    norms = np.linalg.norm(matrix, axis=1) if matrix.ndim == 2 else np.zeros(0)
    if matrix.ndim != 2 or not np.all(np.abs(norms - 1.0) < 1e-3):
        raise ValueError("embeddings.npy holds rows that are not unit vectors (damaged)")
    return LoadedGallery(
        domain=domain,
        version=version,
        model_config=model_config,
        matrix=matrix,
        people=people,
        person_rows=np.concatenate(rows).astype(np.int32),
        batch_metadata=metadata,
        faces=faces,
        index=index,
    )


def _served_index(storage_dir: Path, path: Path, checksums: dict | None, rows: int):
    """The version's faiss index: the one its checksums name (already verified), or for a
    version built before checksums, the file at its place. A file the checksums do not name is
    not the version's (left there by hand or by another run) and is never read; ValueError for
    one faiss cannot read or that indexes another number of rows."""
    if not path.exists() or (checksums and checksum_key(storage_dir, path) not in checksums):
        return None
    from facerec_pipeline.core.gallery.search_index import read_index

    try:
        index = read_index(path)
    except (RuntimeError, AttributeError) as error:  # unreadable; not the IVF index we write
        raise ValueError(f"{path} is not a readable faiss IVF index ({error})") from error
    if index.ntotal != rows:
        raise ValueError(f"{path} indexes {index.ntotal} rows, the batches hold {rows}")
    return index


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
    by_person: dict[str, list[GalleryEntry]] = {}
    for entry in ordered_entries(entries):
        by_person.setdefault(entry.normalized_name, []).append(entry)
    people = list(by_person)
    first = first_batch
    written = []
    for offset, start in enumerate(range(0, len(people), BATCH_MAX_PEOPLE)):
        batch_people = people[start : start + BATCH_MAX_PEOPLE]
        batch_entries = [entry for name in batch_people for entry in by_person[name]]
        name = f"batch_{first + offset:04d}"
        partial = batched_dir / f".{name}.partial"
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
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
        matrix = np.stack([entry.vector for entry in batch_entries]).astype(np.float32)
        np.save(partial / "embeddings.npy", matrix)
        batch_people_json = [
            {
                "person": by_person[n][0].person,
                "normalized_name": n,
                "wikidata_id": by_person[n][0].wikidata_id,
            }
            for n in batch_people
        ]
        position = {name: i for i, name in enumerate(batch_people)}
        rows = np.asarray([position[e.normalized_name] for e in batch_entries], dtype=np.int32)
        np.save(partial / "person_rows.npy", rows)
        (partial / "people.json").write_text(json.dumps(batch_people_json, ensure_ascii=False))
        (partial / "faces.json").write_text(json.dumps(faces, ensure_ascii=False, indent=1))
        metadata = {
            "domain": domain,
            "gallery_version": version,
            "batch": name,
            "model_config": model_config,
            "engine_config": engine_config,
            "dim": int(matrix.shape[1]),
            "created_at": created_at.isoformat(),
            "run_id": run_id,  # lets the recovery of a killed run find what it left
            "person_count": len(batch_people),
            "face_count": len(batch_entries),
            "people": [
                {
                    "name": by_person[person][0].person,
                    "normalized_name": person,
                    "wikidata_id": by_person[person][0].wikidata_id,
                    "faces": len(by_person[person]),
                }
                for person in batch_people
            ],
        }
        (partial / "batch_metadata.json").write_text(
            json.dumps(metadata, ensure_ascii=False, indent=1)
        )
        move_aside(batched_dir / name)
        if artifacts is None:
            partial.rename(batched_dir / name)
        else:
            shas = {face["crop"]: face["image_sha256"] for face in faces}
            artifacts.put_tree(
                partial,
                batched_dir / name,
                lambda file, batch=name, shas=shas: ArtifactKey(
                    domain,
                    GALLERY_BATCH,
                    shas.get(file),
                    {"batch": batch, "file": file},
                    version,
                ),
            )
        written.append(batched_dir / name)
    if len(entries) >= ANN_MIN_FACES:
        from facerec_pipeline.core.gallery.search_index import build_ivf, save_index, write_index

        everything = np.stack([e.vector for name in people for e in by_person[name]])
        index = build_ivf(everything.astype(np.float32))
        target = index_path(batched_dir, version)
        move_aside(target)
        if artifacts is None:
            write_index(index, target)
        else:
            key = ArtifactKey(domain, GALLERY_INDEX, None, {"version": version}, version)
            artifacts.put(target, key, lambda partial: save_index(index, partial))
    return written


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
