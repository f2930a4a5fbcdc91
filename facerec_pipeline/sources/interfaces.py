"""What the pipeline asks of a domain's source, whatever it is: its people (`PersonSource`) and
their photos (`PhotoSource`). Implemented by `folder.FolderSource` (a local folder) and
`wikimedia.WikimediaSource` (Wikidata, Commons and the optional paid search); which one serves a
domain is decided in one place, `app/domain_sources.source_of`. An implementation is
bound to its domain when it is made. No Dagster here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from facerec_pipeline.db.source_refs import CommonsRef, FolderRef, SourceRef


class SourceError(Exception):
    """The source could not answer. `retryable`: whether trying again later may help (a
    network failure), or not (a missing folder, a refused User-Agent: a person must act)."""

    def __init__(self, message: str, *, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class Skip:
    """A person or file the source could not give, and why (`source_skips`)."""

    source: str
    reason: str
    item: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Candidate:
    """A person the domain's gallery should hold (a `people` row before its normalized name)."""

    person_key: str  # stable within the domain: "wikidata:Q42", "folder:<folder name>"
    full_name: str
    ref: SourceRef | None = None
    wikidata_id: str | None = None
    description: str | None = None
    sitelinks: int | None = None
    primary_image_url: str | None = None
    commons_category: str | None = None


@dataclass
class PeopleFound:
    people: list[Candidate]
    notes: list[str] = field(default_factory=list)  # for the run's log
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PersonPhotos:
    """A person whose photos are asked for (a present `people` row)."""

    person_id: int
    full_name: str
    ref: SourceRef | None
    commons_category: str | None = None
    sitelinks: int | None = None


def _quiet(line: str) -> None:
    pass


@dataclass
class PhotoRequest:
    domain: str
    people: list[PersonPhotos]
    # The domain's `images` rows already stored (not removed), as dicts of their columns.
    stored: list[dict[str, Any]] = field(default_factory=list)
    # What paid search already cost the domain this calendar month (UTC), every run counted.
    paid_spent: float = 0.0
    progress: Callable[[str], None] = _quiet


@dataclass
class PhotosFound:
    # Every `images` row the domain has now: a row left out is marked removed.
    rows: list[dict[str, Any]]
    # (person id, or None for an entry of no person) per thing left out.
    skips: list[tuple[int | None, Skip]] = field(default_factory=list)
    paid_calls: list[dict[str, Any]] = field(default_factory=list)  # `serp_calls` rows
    figures: dict[str, Any] = field(default_factory=dict)  # for the asset's metadata


class PersonSource(Protocol):
    name: str

    def people(self, known: Sequence[Candidate]) -> PeopleFound:
        """The people the domain's gallery should hold now. `known`: the domain's people so far
        (a source may keep people it no longer lists). SourceError when it cannot tell."""
        ...


class PhotoSource(Protocol):
    name: str
    # Whether asking again may give people below their photo target more photos (the web
    # may; a folder gives what it holds).
    refetches_below_target: bool

    def photos(self, request: PhotoRequest) -> PhotosFound:
        """Every photo of the domain's people, new ones stored at their photo_path
        (core/images/image_files.py). SourceError when the source cannot be read at all."""
        ...

    def offered_photos(self) -> dict[str, str] | None:
        """Every photo the source offers now, its `images.source_url` to its person's key, when
        that is cheap to tell (a folder scan); None when only a fetch would tell (the web) or it
        cannot be read."""
        ...


class DomainSource(PersonSource, PhotoSource, Protocol):
    """One domain's source: its people and their photos."""


RefT = TypeVar("RefT", FolderRef, CommonsRef)


def ref_of(person: PersonPhotos, kind: type[RefT]) -> RefT | None:
    """The person's reference, which must be of `kind` (None when they have none)."""
    if person.ref is None or isinstance(person.ref, kind):
        return person.ref
    raise SourceError(
        f"person {person.person_id} ({person.full_name}) has a {person.ref.kind} reference, "
        f"not a {kind.kind} one: they came from another source",
        retryable=False,
    )
