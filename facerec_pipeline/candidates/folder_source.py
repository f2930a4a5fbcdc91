"""The folder source: a tree `DIR/<person>/<photos>` (the layout of the trainingPass folders),
with an optional `DIR/name_mapping.json` that maps a folder name to a full name and Wikidata id:

    {"novak_djokovic": {"full_name": "Novak Đoković", "wikidata_id": "Q5812"},
     "ana_ivanovic": "Ana Ivanović"}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from facerec_pipeline.candidates.names import display_name_from_folder
from facerec_pipeline.raw_images.image_files import IMAGE_SUFFIXES

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


def read_name_mapping(root: Path) -> dict[str, dict[str, str | None]]:
    path = root / MAPPING_FILE
    if not path.exists():
        return {}
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


def list_photos(person_dir: Path) -> tuple[Path, ...]:
    """Photo files of one person folder (by suffix, sorted; hidden files skipped)."""
    return tuple(
        sorted(
            path
            for path in person_dir.iterdir()
            if path.is_file()
            and not path.name.startswith(".")
            and path.suffix.lower() in IMAGE_SUFFIXES
        )
    )


def scan_folder(root: Path) -> list[FolderPerson]:
    if not root.is_dir():
        raise FolderSourceError(f"source folder {root} does not exist")
    mapping = read_name_mapping(root)
    people = []
    for person_dir in sorted(
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
    ):
        entry = mapping.get(person_dir.name, {})
        people.append(
            FolderPerson(
                folder=person_dir.name,
                full_name=entry.get("full_name") or display_name_from_folder(person_dir.name),
                wikidata_id=entry.get("wikidata_id"),
                description=entry.get("description"),
                photos=list_photos(person_dir),
            )
        )
    return people
