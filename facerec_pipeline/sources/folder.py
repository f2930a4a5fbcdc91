"""The folder source: a tree `DIR/<person>/<photos>` (the layout of the trainingPass folders),
with an optional `DIR/name_mapping.json` that maps a folder name to a full name and Wikidata id:

    {"novak_djokovic": {"full_name": "Novak Đoković", "wikidata_id": "Q5812"},
     "ana_ivanovic": "Ana Ivanović"}
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from facerec_pipeline.core.artifacts.store import ArtifactStore
from facerec_pipeline.core.images.image_files import IMAGE_SUFFIXES, InspectionCache
from facerec_pipeline.core.images.photo_store import store_content_addressed
from facerec_pipeline.core.names import display_name_from_folder
from facerec_pipeline.db.source_refs import SourceRefError
from facerec_pipeline.sources.interfaces import (
    Candidate,
    FolderRef,
    PeopleFound,
    PhotoRequest,
    PhotosFound,
    Skip,
    SourceError,
    ref_of,
)

MAPPING_FILE = "name_mapping.json"


class FolderSourceError(ValueError):
    pass


def photo_source_url(folder: str, file_name: str) -> str:
    """How a folder photo is identified in `images.source_url`."""
    return f"folder:{folder}/{file_name}"


@dataclass(frozen=True)
class FolderPerson:
    folder: str
    full_name: str
    wikidata_id: str | None = None
    description: str | None = None
    photos: tuple[Path, ...] = field(default_factory=tuple)

    @property
    def person_key(self) -> str:
        return f"folder:{self.folder}"


@dataclass(frozen=True)
class FolderSkip:
    """An entry of the source folder that is not used, and why: `outside_source_folder` (a
    link leading out of the folder: never read), `hidden_entry`, `nested_folder`,
    `not_in_a_person_folder` (a file beside the person folders), `not_an_image` (by suffix),
    `missing_file` (a broken link), `not_a_regular_file`, `unreadable_folder`. `folder` is the
    person folder it was found in, None at the root."""

    folder: str | None
    item: str  # "folder:<path under the source folder>", like a photo's source_url
    reason: str
    detail: str


@dataclass(frozen=True)
class FolderScan:
    people: list[FolderPerson]
    skips: list[FolderSkip]


def read_name_mapping(root: Path) -> dict[str, dict[str, str | None]]:
    path = root / MAPPING_FILE
    if not path.exists() or _leaves(path, root.resolve()):
        return {}  # a mapping linked from outside is not read (listed by scan_source)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise FolderSourceError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(raw, dict):
        raise FolderSourceError(f"{path} must hold an object mapping folder names to names")
    mapping: dict[str, dict[str, str | None]] = {}
    for folder, value in raw.items():
        if isinstance(value, str):
            mapping[folder] = {"full_name": value, "wikidata_id": None, "description": None}
        elif isinstance(value, dict) and isinstance(value.get("full_name"), str):
            mapping[folder] = {
                "full_name": value["full_name"],
                "wikidata_id": value.get("wikidata_id"),
                "description": value.get("description"),
            }
        else:
            raise FolderSourceError(
                f"{path}: entry {folder!r} must be a name or "
                "{'full_name': ..., 'wikidata_id': ...}"
            )
    return mapping


def _resolved(path: Path) -> Path | None:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a link loop
        return None


def _leaves(path: Path, real_root: Path) -> bool:
    """Whether `path`, links resolved, lies outside the (resolved) source folder."""
    target = _resolved(path)
    return target is None or not target.is_relative_to(real_root)


def _refusal(path: Path, real_root: Path) -> tuple[str, str] | None:
    """Why an entry (of the root or of a person folder) is not followed, if it is not; decided
    on the name and the resolved path alone, before a byte of it is read."""
    if path.name.startswith("."):
        return "hidden_entry", "hidden files and folders are not read"
    if _leaves(path, real_root):
        return "outside_source_folder", f"a link to {_resolved(path) or 'itself (a loop)'}"
    if not path.exists():
        return "missing_file", "a broken link"
    if not (path.is_file() or path.is_dir()):
        return "not_a_regular_file", "neither a file nor a folder"
    return None


def _unusable_folder_name(name: str) -> tuple[str, str] | None:
    """A person folder whose name cannot be a person's reference (a backslash in it)."""
    try:
        FolderRef(name)
    except SourceRefError as error:
        return "unusable_folder_name", f"{error}; rename the folder to be read"
    return None


def _item(path: Path, root: Path) -> str:
    """How an entry is named in the skips: like a photo's `images.source_url`."""
    return f"folder:{path.relative_to(root).as_posix()}"


def _person_photos(
    root: Path, real_root: Path, person_dir: Path
) -> tuple[tuple[Path, ...], list[FolderSkip]]:
    """Photo files of one person folder (by suffix, sorted), and every entry left out."""
    photos, skips = [], []
    folder = person_dir.name
    try:
        entries = sorted(person_dir.iterdir())
    except OSError as error:
        return (), [FolderSkip(folder, _item(person_dir, root), "unreadable_folder", str(error))]
    for path in entries:
        item = _item(path, root)
        refusal = _refusal(path, real_root)
        if refusal is None and path.is_dir():
            refusal = "nested_folder", "photos must lie directly in the person folder"
        if refusal is None and path.suffix.lower() not in IMAGE_SUFFIXES:
            refusal = "not_an_image", f"suffix {path.suffix or '(none)'!r} is not a photo's"
        if refusal is None:
            photos.append(path)
        else:
            skips.append(FolderSkip(folder, item, *refusal))
    return tuple(photos), skips


def scan_source(root: Path) -> FolderScan:
    """The people of the folder, each with their photos, and everything left out with the
    reason. Links are followed only while they stay inside the folder."""
    if not root.is_dir():
        raise FolderSourceError(f"source folder {root} does not exist")
    real_root = root.resolve()
    mapping = read_name_mapping(root)
    people, skips = [], []
    for entry in sorted(root.iterdir()):
        refusal = _refusal(entry, real_root)
        if refusal is None and entry.is_file():
            if entry.name == MAPPING_FILE:
                continue
            refusal = "not_in_a_person_folder", "files belong in a folder named after the person"
        if refusal is None:
            refusal = _unusable_folder_name(entry.name)
        if refusal is not None:
            skips.append(FolderSkip(None, _item(entry, root), *refusal))
            continue
        photos, left_out = _person_photos(root, real_root, entry)
        skips += left_out
        names = mapping.get(entry.name, {})
        people.append(
            FolderPerson(
                folder=entry.name,
                full_name=names.get("full_name") or display_name_from_folder(entry.name),
                wikidata_id=names.get("wikidata_id"),
                description=names.get("description"),
                photos=photos,
            )
        )
    return FolderScan(people, skips)


def scan_folder(root: Path) -> list[FolderPerson]:
    return scan_source(root).people


class FolderSource:
    """A domain's folder source: one person per sub-folder, their photos copied into the
    domain's photo folder (`photos_dir`) at their photo_path. What was learnt of each file is
    kept in `inspection_cache` by path, size and modification time, so a re-run reads only new
    or changed files. People whose folder is gone are not kept."""

    name = "folder"
    refetches_below_target = False

    def __init__(
        self,
        root: Path,
        photos_dir: Path,
        relative: Callable[[Path], str],
        inspection_cache: Path,
        artifacts: ArtifactStore,
    ):
        self.artifacts = artifacts
        self.root = root
        self.photos_dir = photos_dir
        self.relative = relative
        self.inspection_cache = inspection_cache

    def _scan(self) -> FolderScan:
        try:
            return scan_source(self.root)
        except FolderSourceError as error:
            raise SourceError(str(error), retryable=False) from error

    def people(self, known: Sequence[Candidate]) -> PeopleFound:
        return PeopleFound(
            [
                Candidate(
                    person_key=person.person_key,
                    full_name=person.full_name,
                    ref=FolderRef(person.folder),
                    wikidata_id=person.wikidata_id,
                    description=person.description,
                )
                for person in self._scan().people
            ]
        )

    def photos(self, request: PhotoRequest) -> PhotosFound:
        """Only the photos the scan kept are read and copied: a link out of the source folder
        never is. Every photo the folder holds is a row; the rows stored before are not needed."""
        scan = self._scan()
        inspections = InspectionCache(self.inspection_cache)
        photos_by_folder = {person.folder: person.photos for person in scan.people}
        person_ids: dict[str, int] = {}
        rows = []
        with self.artifacts.batch():
            for person in request.people:
                ref = ref_of(person, FolderRef)
                if ref is None:
                    continue
                person_ids[ref.folder] = person.person_id
                for photo in photos_by_folder.get(ref.folder, ()):
                    facts = inspections.inspect(photo)
                    stored = store_content_addressed(
                        photo, self.photos_dir, facts.sha256, self.artifacts, request.domain
                    )
                    rows.append(
                        {
                            "domain": request.domain,
                            "person_id": person.person_id,
                            "sha256": facts.sha256,
                            "perceptual_hash": facts.perceptual_hash,
                            "file_path": self.relative(stored),
                            "file_size": facts.file_size,
                            "width": facts.width,
                            "height": facts.height,
                            "mime": facts.mime,
                            "source": "folder",
                            "source_url": photo_source_url(ref.folder, photo.name),
                            "status": "rejected" if facts.rejection_reason else "approved",
                            "rejection_reason": facts.rejection_reason,
                        }
                    )
        inspections.save()
        skips: list[tuple[int | None, Skip]] = [
            (
                person_ids.get(skip.folder) if skip.folder else None,
                Skip("folder", skip.reason, skip.item, skip.detail),
            )
            for skip in scan.skips
            # the folder of a person not asked for (erased from the domain) is not reported
            if skip.folder is None or skip.folder in person_ids
        ]
        figures = {
            "files_read": len(rows) - inspections.hits,
            "files_unchanged": inspections.hits,
            "skips_by_reason": dict(Counter(skip.reason for _, skip in skips)),
        }
        return PhotosFound(rows, skips, [], figures)

    def offered_photos(self) -> dict[str, str] | None:
        try:
            people = scan_folder(self.root)
        except FolderSourceError:
            return None
        return {
            photo_source_url(p.folder, photo.name): p.person_key
            for p in people
            for photo in p.photos
        }
