"""Fetch one person's photos: Commons P18 files, then the Commons category, then (optionally)
paid image search, up to the images-per-person target. Every file or person the sources could not
give is returned as a Skip with its reason. No Dagster here."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from facerec_pipeline.core.artifacts.store import ArtifactStore
from facerec_pipeline.core.images.image_files import INCOMING_DIR, inspect_image
from facerec_pipeline.core.images.photo_store import move_content_addressed
from facerec_pipeline.sources.commons import (
    IMAGE_MIMES,
    CommonsClient,
    CommonsFile,
    license_refusal,
)
from facerec_pipeline.sources.interfaces import Skip
from facerec_pipeline.sources.paid_search import Budget, PaidImageSearch
from facerec_pipeline.sources.polite_http import HttpProblem, PoliteSession

MAX_DOWNLOAD_BYTES = 25 * 1024 * 1024


@dataclass
class PersonToFetch:
    person_id: int
    full_name: str
    p18_files: list[str]
    commons_category: str | None
    have: int  # usable photos already stored
    known_urls: set[str]


@dataclass
class PersonFetch:
    rows: list[dict[str, Any]] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    serp_calls: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Offer:
    """One file a source offers, with what the images table keeps about it."""

    source: str
    url: str
    provenance: dict[str, Any]


def commons_provenance(file: CommonsFile) -> dict[str, Any]:
    return {
        "description_url": file.description_url,
        "page_id": file.page_id,
        "source_sha1": file.sha1,
        "license_short_name": file.license_short_name,
        "license_url": file.license_url,
        "usage_terms": file.usage_terms,
        "artist_html": file.artist_html,
        "artist": file.artist,
        "credit": file.credit,
        "attribution": file.attribution,
        "attribution_required": file.attribution_required,
        "copyrighted": file.copyrighted,
        "restrictions": file.restrictions,
    }


class PhotoFetcher:
    def __init__(
        self,
        http: PoliteSession,
        commons: CommonsClient,
        training_dir: Path,
        relative: Callable[[Path], str],
        artifacts: ArtifactStore,
        *,
        target: int,
        license_policy: str = "free",
        paid_search: PaidImageSearch | None = None,
        budget: Budget | None = None,
        max_bytes: int = MAX_DOWNLOAD_BYTES,
    ):
        self.http = http
        self.commons = commons
        self.training_dir = training_dir
        self.relative = relative
        self.artifacts = artifacts
        self.target = target
        self.license_policy = license_policy
        self.paid_search = paid_search
        self.budget = budget
        self.max_bytes = max_bytes

    def fetch(self, domain: str, person: PersonToFetch) -> PersonFetch:
        result = PersonFetch()
        if person.have >= self.target:
            return result
        offers = self._commons_offers(person, result)
        have = person.have + self._download(domain, person, offers, person.have, result)
        if have < self.target and self.paid_search is not None:
            have += self._paid_search(domain, person, have, result)
        if have == 0 and not any(skip.reason == "fetch_failed" for skip in result.skips):
            if person.p18_files or person.commons_category or result.serp_calls:
                reason, detail = "no_usable_photos", "no offered file could be used"
            else:
                reason, detail = "no_photos", "no P18 image and no Commons category"
            result.skips.append(Skip("wikimedia", reason, None, detail))
        return result

    def _commons_offers(self, person: PersonToFetch, result: PersonFetch) -> list[Offer]:
        files: list[tuple[str, CommonsFile]] = []
        try:
            if person.p18_files:
                found, missing = self.commons.files(person.p18_files)
                files += [("wikimedia_p18", f) for f in found]
                result.skips += [
                    Skip("wikimedia_p18", "missing_file", f"File:{m}", "Commons has no such file")
                    for m in missing
                ]
            if person.commons_category and person.have + len(files) < self.target:
                wanted = 3 * self.target  # categories mix in signatures, posters, groups
                category = self.commons.category_files(person.commons_category, wanted)
                seen = {f.page_id for _, f in files}
                files += [("wikimedia_category", f) for f in category if f.page_id not in seen]
        except HttpProblem as problem:
            result.skips.append(Skip("wikimedia", "fetch_failed", None, str(problem)))
        offers = []
        for source, file in files:
            if file.mime not in IMAGE_MIMES:
                result.skips.append(Skip(source, "not_an_image", file.title, f"mime {file.mime}"))
                continue
            refusal = license_refusal(file, self.license_policy)
            if refusal:
                result.skips.append(
                    Skip(source, refusal, file.title, f"licence {file.license_short_name!r}")
                )
                continue
            if file.download_url not in person.known_urls:
                offers.append(Offer(source, file.download_url, commons_provenance(file)))
        return offers

    def _download(
        self,
        domain: str,
        person: PersonToFetch,
        offers: list[Offer],
        have: int,
        result: PersonFetch,
    ) -> int:
        """Download offers (two at a time) until the target is reached; returns photos gained."""
        gained = 0
        position = 0
        with ThreadPoolExecutor(max_workers=2) as pool:
            while have + gained < self.target and position < len(offers):
                batch = offers[position : position + (self.target - have - gained)]
                position += len(batch)
                for offer, outcome in zip(
                    batch, pool.map(partial(self._download_one, domain), batch), strict=True
                ):
                    if isinstance(outcome, Skip):
                        result.skips.append(outcome)
                        continue
                    row = self._image_row(domain, person.person_id, offer, outcome)
                    result.rows.append(row)
                    gained += row["status"] == "approved"
        return gained

    def _download_one(self, domain: str, offer: Offer) -> Any:
        """The download, stored at its photo_path (the layout of every photo)."""
        try:
            downloaded = self.http.download(
                offer.url,
                self.training_dir / INCOMING_DIR,
                max_bytes=self.max_bytes,
                suffix_by_type=IMAGE_MIMES,
            )
        except HttpProblem as problem:
            return Skip(offer.source, problem.reason, offer.url, str(problem))
        stored = move_content_addressed(
            downloaded.path, self.training_dir, downloaded.sha256, self.artifacts, domain
        )
        return replace(downloaded, path=stored)

    def _image_row(self, domain: str, person_id: int, offer: Offer, downloaded) -> dict[str, Any]:
        facts = inspect_image(downloaded.path)
        return {
            "domain": domain,
            "person_id": person_id,
            "sha256": facts.sha256,
            "perceptual_hash": facts.perceptual_hash,
            "file_path": self.relative(downloaded.path),
            "file_size": facts.file_size,
            "width": facts.width,
            "height": facts.height,
            "mime": facts.mime or downloaded.content_type,
            "source": offer.source,
            "source_url": offer.url,
            "retrieved_at": datetime.now(UTC),
            "status": "rejected" if facts.rejection_reason else "approved",
            "rejection_reason": facts.rejection_reason,
            **offer.provenance,
        }

    def _paid_search(
        self, domain: str, person: PersonToFetch, have: int, result: PersonFetch
    ) -> int:
        search = self.paid_search
        assert search is not None
        if self.budget is not None and not self.budget.allows(search.cost_per_call):
            spent = f"spent {self.budget.spent:.3f} of {self.budget.limit:.3f} this month"
            result.skips.append(Skip("serp", "serp_budget_exhausted", None, spent))
            return 0
        query = f'"{person.full_name}" face portrait'
        try:
            hits = search.search(query, count=3 * (self.target - have))
        except HttpProblem as problem:
            hits = []
            result.skips.append(Skip("serp", "fetch_failed", None, str(problem)))
        if self.budget is not None:
            self.budget.charge(search.cost_per_call)
        result.serp_calls.append(
            {
                "provider": search.provider,
                "query": query,
                "result_count": len(hits),
                "estimated_cost": search.cost_per_call,
            }
        )
        offers = [
            Offer(
                "serp",
                hit.image_url,
                {
                    "description_url": hit.page_url,
                    "license_short_name": "unknown (paid image search)",
                    "credit": hit.source,
                },
            )
            for hit in hits
            if hit.image_url not in person.known_urls
        ]
        return self._download(domain, person, offers, have, result)
