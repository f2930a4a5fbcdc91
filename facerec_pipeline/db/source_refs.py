"""Where a person's photos are in their source: one typed reference per kind of source, stored in
`people.source_ref` as JSON with an explicit kind tag and read back by `parse_source_ref`, the
one place that reads it:

    {"kind": "folder", "folder": "ana_ivanovic"}          a folder source's person folder
    {"kind": "commons", "files": ["A.jpg", "B.jpg"]}      a Wikidata person's P18 files on Commons

Migration 0007 turned the older untyped values (a bare folder name, a JSON list of file names)
into this form. Plain Python and SQLAlchemy, no Dagster here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from sqlalchemy import Text
from sqlalchemy.types import TypeDecorator

EXPECTED = '{"kind": "folder", "folder": NAME} or {"kind": "commons", "files": [FILE, ...]}'


class SourceRefError(ValueError):
    """A stored source reference that is not one of the known forms."""


@dataclass(frozen=True)
class FolderRef:
    """A person of a folder source: the name of their folder in the domain's source folder."""

    folder: str
    kind: ClassVar[str] = "folder"

    def __post_init__(self) -> None:
        if (
            not isinstance(self.folder, str)
            or self.folder in ("", ".", "..")
            or any(c in self.folder for c in "/\\\0")
        ):
            raise SourceRefError(f"folder reference {self.folder!r}: not a folder name")


@dataclass(frozen=True)
class CommonsRef:
    """A person of the Wikimedia source: their Wikidata image (P18) files on Commons, in
    Wikidata's order (none for a person without a P18 image)."""

    files: tuple[str, ...] = ()
    kind: ClassVar[str] = "commons"

    def __post_init__(self) -> None:
        if not isinstance(self.files, tuple) or not all(
            isinstance(name, str) and name for name in self.files
        ):
            raise SourceRefError(f"commons reference {self.files!r}: not a tuple of file names")


SourceRef = FolderRef | CommonsRef


def dump_source_ref(ref: SourceRef) -> str:
    """The stored form of `ref`."""
    if isinstance(ref, FolderRef):
        fields: dict[str, Any] = {"folder": ref.folder}
    elif isinstance(ref, CommonsRef):
        fields = {"files": list(ref.files)}
    else:
        raise TypeError(f"not a source reference: {ref!r} (expected FolderRef or CommonsRef)")
    return json.dumps({"kind": ref.kind, **fields}, ensure_ascii=False)


def parse_source_ref(stored: str) -> SourceRef:
    """The reference a stored value holds; SourceRefError naming the value otherwise."""

    def refuse(why: str) -> SourceRefError:
        return SourceRefError(f"invalid source reference {stored!r}: {why}; expected {EXPECTED}")

    if not isinstance(stored, str):
        raise refuse(f"a {type(stored).__name__}, not a string")
    try:
        value = json.loads(stored)
    except ValueError as error:
        raise refuse(f"not JSON ({error})") from error
    if not isinstance(value, dict):
        raise refuse("not a JSON object")
    kind = value.get("kind")
    shapes = {"folder": {"kind", "folder"}, "commons": {"kind", "files"}}
    if kind not in shapes:
        raise refuse(f"unknown kind {kind!r}")
    if set(value) != shapes[kind]:
        raise refuse(f"a {kind} reference holds exactly the keys {sorted(shapes[kind])}")
    if kind == "commons" and not isinstance(value["files"], list):
        raise refuse("`files` is not a list")
    try:
        if kind == "folder":
            return FolderRef(value["folder"])
        return CommonsRef(tuple(value["files"]))
    except SourceRefError as error:
        raise refuse(str(error)) from error


class SourceRefType(TypeDecorator):
    """A column of SourceRef values, stored as their JSON text."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: SourceRef | None, dialect) -> str | None:
        return None if value is None else dump_source_ref(value)

    def process_result_value(self, value: str | None, dialect) -> SourceRef | None:
        return None if value is None else parse_source_ref(value)
