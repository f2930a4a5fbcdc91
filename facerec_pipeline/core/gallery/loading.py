"""Loading a gallery version to serve, after checking its files. No Dagster here.

Every file a version serves has its sha256 in the database (`galleries.file_checksums`) and in
the pointer; `load_batches` checks them (and the shapes) before a version serves, so a damaged or
missing file is refused with its name instead of giving wrong names. The files are written by
publish.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from facerec_pipeline.core.files import sha256_file
from facerec_pipeline.core.gallery.open_set import OperatingPoint, person_starts

SERVED_FILES = (
    "embeddings.npy",
    "person_rows.npy",
    "people.json",
    "faces.json",
    "batch_metadata.json",
)


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
        batch_rows, batch_people, batch_faces = _batch_people(batch_dir, len(matrix))
        rows.append(batch_rows + len(people))
        people.extend(batch_people)
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


def _batch_people(
    batch_dir: Path, row_count: int
) -> tuple[np.ndarray, list[dict[str, Any]], list[dict[str, Any]] | None]:
    """Who each of a batch's `row_count` rows is: its person_rows.npy (index in the batch's
    people) and people.json; for batches written before people.json existed, both rebuilt from
    faces.json, which is returned too (None otherwise) so that it is read once."""
    if (batch_dir / "person_rows.npy").exists():
        batch_rows = np.load(batch_dir / "person_rows.npy", allow_pickle=False)
        batch_people = json.loads((batch_dir / "people.json").read_text())
        if len(batch_rows) != row_count or (
            len(batch_rows) and not 0 <= batch_rows.min() <= batch_rows.max() < len(batch_people)
        ):
            raise ValueError(
                f"{batch_dir}: person_rows.npy does not match embeddings.npy and people.json"
            )
        return batch_rows, batch_people, None
    # batches written before people.json existed
    batch_faces = json.loads((batch_dir / "faces.json").read_text())
    order = list(dict.fromkeys(face["normalized_name"] for face in batch_faces))
    batch_rows = np.asarray([order.index(f["normalized_name"]) for f in batch_faces])
    first = {f["normalized_name"]: f for f in reversed(batch_faces)}
    batch_people = [
        {key: first[name].get(key) for key in ("person", "normalized_name", "wikidata_id")}
        for name in order
    ]
    return batch_rows, batch_people, batch_faces


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
