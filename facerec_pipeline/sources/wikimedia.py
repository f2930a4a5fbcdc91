"""The Wikimedia source of a domain: its people from the Wikidata Query Service, their photos
from Commons (P18 files, then the Commons category) and, below the photo target, the optional
paid image search within the domain's monthly budget. No Dagster here."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from facerec_pipeline.core.artifacts.store import ArtifactStore
from facerec_pipeline.sources.interfaces import (
    Candidate,
    CommonsRef,
    PeopleFound,
    PhotoRequest,
    PhotosFound,
    Skip,
    SourceError,
    ref_of,
)
from facerec_pipeline.sources.paid_search import Budget
from facerec_pipeline.sources.polite_http import HttpProblem, PoliteSession, UserAgentRefused
from facerec_pipeline.sources.web import WebSources
from facerec_pipeline.sources.wikidata import WikidataPerson
from facerec_pipeline.sources.wikimedia_fetch import PersonToFetch, PhotoFetcher

FILE_PATH_URL = "http://commons.wikimedia.org/wiki/Special:FilePath/"
PROGRESS_EVERY = 10


@dataclass(frozen=True)
class WikidataQuery:
    """Who a domain holds: humans of these citizenships (P27) and occupations (P106), with at
    least `min_sitelinks`, the `max_people` best known; labels also in `language`."""

    countries: tuple[str, ...]
    occupations: tuple[str, ...]
    min_sitelinks: int
    max_people: int
    language: str | None = None


def wikidata_candidate(person: WikidataPerson) -> Candidate:
    return Candidate(
        person_key=f"wikidata:{person.qid}",
        full_name=person.label,
        ref=CommonsRef(tuple(person.image_files)),
        wikidata_id=person.qid,
        description=person.description or person.local_description,
        sitelinks=person.sitelinks,
        primary_image_url=FILE_PATH_URL + quote(person.image_files[0])
        if person.image_files
        else None,
        commons_category=person.commons_category,
    )


class WikimediaSource:
    """Wikidata + Commons + the optional paid search, for one domain. People who drop out of the
    query are kept; photos already stored are kept as they are and only people below
    `images_per_person` are fetched."""

    name = "wikimedia"
    refetches_below_target = True

    def __init__(
        self,
        web: WebSources,
        query: WikidataQuery,
        photos_dir: Path,
        relative: Callable[[Path], str],
        *,
        wikidata_cache_dir: Path,
        images_per_person: int,
        paid_budget: float,
        artifacts: ArtifactStore,
    ):
        self.artifacts = artifacts
        self.web = web
        self.query = query
        self.photos_dir = photos_dir
        self.relative = relative
        self.wikidata_cache_dir = wikidata_cache_dir
        self.images_per_person = images_per_person
        self.paid_budget = paid_budget

    def _session(self) -> PoliteSession:
        try:
            return self.web.session()
        except UserAgentRefused as error:
            raise SourceError(str(error), retryable=False) from error

    def people(self, known: Sequence[Candidate]) -> PeopleFound:
        http = self._session()
        client = self.web.wikidata(http, self.wikidata_cache_dir)
        query = self.query
        try:
            found = client.candidates(
                list(query.countries),
                list(query.occupations),
                query.min_sitelinks,
                query.max_people,
                query.language,
            )
        except UserAgentRefused as error:
            raise SourceError(str(error), retryable=False) from error
        except HttpProblem as error:
            raise SourceError(f"Wikidata query failed: {error}", retryable=True) from error
        people = [wikidata_candidate(person) for person in found]
        current = {person.person_key for person in people}
        dropped = [
            person
            for person in known
            if person.person_key not in current and person.person_key.startswith("wikidata:")
        ]
        note = (
            f"Wikidata gave {len(people)} people ({http.requests_made} requests); "
            f"{len(dropped)} earlier people kept"
        )
        return PeopleFound(people + dropped, [note], list(client.warnings))

    def photos(self, request: PhotoRequest) -> PhotosFound:
        """Photos already stored (kept as they are) plus what the sources give for people below
        their target, best known first. Paid search stops at the domain's budget for the
        calendar month, earlier runs of the month counted."""
        http = self._session()
        budget = Budget(self.paid_budget, already_spent=request.paid_spent)
        fetcher = PhotoFetcher(
            http,
            self.web.commons(http),
            self.photos_dir,
            self.relative,
            self.artifacts,
            target=self.images_per_person,
            license_policy=self.web.license_policy,
            paid_search=self.web.paid_search(http),
            budget=budget,
        )
        stored_by_person: dict[int, list[dict]] = {}
        for image in request.stored:
            stored_by_person.setdefault(image["person_id"], []).append(image)
        rows: list[dict] = []
        skips: list[tuple[int | None, Skip]] = []
        calls: list[dict] = []
        ordered = sorted(request.people, key=lambda p: (p.sitelinks is None, -(p.sitelinks or 0)))
        for position, person in enumerate(ordered, start=1):
            mine = stored_by_person.get(person.person_id, [])
            ref = ref_of(person, CommonsRef)
            plan = PersonToFetch(
                person_id=person.person_id,
                full_name=person.full_name,
                p18_files=list(ref.files) if ref else [],
                commons_category=person.commons_category,
                have=sum(image["status"] == "approved" for image in mine),
                known_urls={image["source_url"] for image in mine},
            )
            fetched = fetcher.fetch(request.domain, plan)
            rows += fetched.rows
            skips += [(person.person_id, skip) for skip in fetched.skips]
            calls += [{**call, "person_id": person.person_id} for call in fetched.serp_calls]
            if position % PROGRESS_EVERY == 0 or position == len(ordered):
                request.progress(
                    f"{position}/{len(ordered)} people, {len(rows)} new photos, "
                    f"{len(skips)} skips, {http.requests_made} requests"
                )
        figures = {
            "requests": http.requests_made,
            "waited_seconds": round(http.waited_seconds, 1),
            "serp_calls": len(calls),
            "serp_cost": round(budget.spent - request.paid_spent, 4),
            "serp_spent_this_month": round(budget.spent, 4),
            "skips_by_reason": dict(Counter(skip.reason for _, skip in skips)),
        }
        return PhotosFound(list(request.stored) + rows, skips, calls, figures)

    def offered_photos(self) -> dict[str, str] | None:
        return None  # only a fetch tells what Commons offers now
