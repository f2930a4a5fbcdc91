"""raw_images: every photo the source offers for the domain's people, stored content-addressed
under storage/training/{domain}/ with its provenance and licence."""

import json
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import pandas as pd
from sqlalchemy import delete, select

from facerec_pipeline.core.images.image_files import InspectionCache, store_content_addressed
from facerec_pipeline.db.models import Image, SerpCall, SourceSkip
from facerec_pipeline.domains.registry import get_domain
from facerec_pipeline.lineage.stage_tables import GENERATED_COLUMNS
from facerec_pipeline.policy import stage_asset
from facerec_pipeline.resources import FacerecStorage, WebSourcesResource
from facerec_pipeline.run_history import record_stage
from facerec_pipeline.sources.folder import (
    FolderScan,
    FolderSourceError,
    photo_source_url,
    scan_source,
)
from facerec_pipeline.sources.paid_search import Budget
from facerec_pipeline.sources.polite_http import UserAgentRefused
from facerec_pipeline.sources.wikimedia_fetch import PersonToFetch, PhotoFetcher, Skip
from facerec_pipeline.stats import serp_spent_in_month, sourcing_figures

IMAGE_COLUMNS = [c.name for c in Image.__table__.columns if c.name not in GENERATED_COLUMNS]
IMAGE_COLUMNS.remove("removed_at")
PROGRESS_EVERY = 10


def folder_image_rows(
    code: str,
    scan: FolderScan,
    people: pd.DataFrame,
    training_dir: Path,
    relative,
    inspections: InspectionCache,
) -> list[dict]:
    """Only the photos the scan kept are read and copied: a link out of the source folder
    never is."""
    photos_by_folder = {person.folder: person.photos for person in scan.people}
    rows = []
    for person in people.itertuples():
        for photo in photos_by_folder.get(str(person.source_ref), ()):
            facts = inspections.inspect(photo)
            stored = store_content_addressed(photo, training_dir / facts.sha256[:2], facts.sha256)
            rows.append(
                {
                    "domain": code,
                    "person_id": int(person.id),
                    "sha256": facts.sha256,
                    "perceptual_hash": facts.perceptual_hash,
                    "file_path": relative(stored),
                    "file_size": facts.file_size,
                    "width": facts.width,
                    "height": facts.height,
                    "mime": facts.mime,
                    "source": "folder",
                    "source_url": photo_source_url(str(person.source_ref), photo.name),
                    "status": "rejected" if facts.rejection_reason else "approved",
                    "rejection_reason": facts.rejection_reason,
                }
            )
    return rows


def wikimedia_image_rows(
    context: dg.AssetExecutionContext,
    code: str,
    domain,
    people: pd.DataFrame,
    facerec: FacerecStorage,
    web: WebSourcesResource,
) -> tuple[list[dict], dict]:
    """Photos already stored (kept as they are) plus what the sources give for people below
    their target. Skips and paid search calls are recorded for the run; paid search stops at
    the domain's budget for the calendar month, earlier runs of the month counted."""
    settings = facerec.settings
    with facerec.session() as session:
        stored = [
            {column: getattr(image, column) for column in IMAGE_COLUMNS}
            for image in session.scalars(
                select(Image).where(Image.domain == code, Image.removed_at.is_(None))
            )
        ]
        spent_before = serp_spent_in_month(session, code)
    sources = web.sources()
    try:
        http = sources.session()
    except UserAgentRefused as error:
        raise dg.Failure(str(error), allow_retries=False) from error
    budget = Budget(domain.serp_budget, already_spent=spent_before)
    fetcher = PhotoFetcher(
        http,
        sources.commons(http),
        settings.training_dir(code),
        settings.relative,
        target=domain.images_per_person,
        license_policy=sources.license_policy,
        paid_search=sources.paid_search(http),
        budget=budget,
    )
    stored_by_person: dict[int, list[dict]] = {}
    for image in stored:
        stored_by_person.setdefault(image["person_id"], []).append(image)
    rows, skips, calls = [], [], []
    ordered = people.sort_values("sitelinks", ascending=False, na_position="last")
    for position, person in enumerate(ordered.itertuples(), start=1):
        mine = stored_by_person.get(int(person.id), [])
        plan = PersonToFetch(
            person_id=int(person.id),
            full_name=person.full_name,
            p18_files=json.loads(person.source_ref) if isinstance(person.source_ref, str) else [],
            commons_category=person.commons_category
            if isinstance(person.commons_category, str)
            else None,
            have=sum(image["status"] == "approved" for image in mine),
            known_urls={image["source_url"] for image in mine},
        )
        fetched = fetcher.fetch(code, plan)
        rows += fetched.rows
        skips += [(int(person.id), skip) for skip in fetched.skips]
        calls += [{**call, "person_id": int(person.id)} for call in fetched.serp_calls]
        if position % PROGRESS_EVERY == 0 or position == len(ordered):
            context.log.info(
                f"raw_images[{code}]: {position}/{len(ordered)} people, {len(rows)} new photos, "
                f"{len(skips)} skips, {http.requests_made} requests"
            )
    record_fetch(facerec, code, context.run_id, [int(i) for i in people["id"]], skips, calls)
    figures = {
        "requests": http.requests_made,
        "waited_seconds": round(http.waited_seconds, 1),
        "serp_calls": len(calls),
        "serp_cost": round(budget.spent - spent_before, 4),
        "serp_spent_this_month": round(budget.spent, 4),
        "skips_by_reason": dict(Counter(skip.reason for _, skip in skips)),
    }
    return stored + rows, figures


def folder_skips(scan: FolderScan, people: pd.DataFrame) -> list[tuple[int | None, Skip]]:
    """The scan's left-out entries, each with its person (None at the root of the folder)."""
    person_ids = {str(person.source_ref): int(person.id) for person in people.itertuples()}
    return [
        (
            person_ids.get(skip.folder) if skip.folder else None,
            Skip("folder", skip.reason, skip.item, skip.detail),
        )
        for skip in scan.skips
    ]


def record_fetch(
    facerec: FacerecStorage,
    code: str,
    run_id: str,
    person_ids: list[int],
    skips: list[tuple[int | None, Skip]],
    calls: list[dict],
) -> None:
    """Replace the skips of the people fetched, and those of no person (a folder source's
    stray entries); log paid search calls and their cost."""
    with facerec.session() as session:
        session.execute(
            delete(SourceSkip).where(SourceSkip.domain == code, SourceSkip.person_id.is_(None))
        )
        for start in range(0, len(person_ids), 400):
            session.execute(
                delete(SourceSkip).where(
                    SourceSkip.domain == code,
                    SourceSkip.person_id.in_(person_ids[start : start + 400]),
                )
            )
        session.add_all(
            SourceSkip(
                domain=code,
                person_id=person_id,
                source=skip.source,
                item=skip.item,
                reason=skip.reason,
                detail=skip.detail,
                run_id=run_id,
            )
            for person_id, skip in skips
        )
        session.add_all(SerpCall(domain=code, run_id=run_id, **call) for call in calls)


@stage_asset(
    code_version="2",
    group_name="ingestion",
    reaches_network=True,
)
def raw_images(
    context: dg.AssetExecutionContext,
    facerec: FacerecStorage,
    web_sources: WebSourcesResource,
    candidates: pd.DataFrame,
) -> pd.DataFrame:
    """Photos per person (table `images`), deduplicated on disk by sha256, with source,
    provenance and licence. Folder photos that disappeared are marked removed, not deleted."""
    started = time.monotonic()
    code = context.partition_key
    settings = facerec.settings
    with facerec.session() as session:
        domain = get_domain(session, code)
    figures: dict = {}
    if domain.source == "folder":
        try:
            scan = scan_source(Path(domain.source_path or ""))
        except FolderSourceError as error:
            raise dg.Failure(str(error), allow_retries=False) from error
        inspections = InspectionCache(settings.cache_dir / "folder_scan" / f"{code}.json")
        rows = folder_image_rows(
            code, scan, candidates, settings.training_dir(code), settings.relative, inspections
        )
        inspections.save()
        skips = folder_skips(scan, candidates)
        record_fetch(facerec, code, context.run_id, [int(i) for i in candidates["id"]], skips, [])
        figures = {
            "files_read": len(rows) - inspections.hits,
            "files_unchanged": inspections.hits,
            "skips_by_reason": dict(Counter(skip.reason for _, skip in skips)),
        }
    else:
        rows, figures = wikimedia_image_rows(
            context, code, domain, candidates, facerec, web_sources
        )
    frame = pd.DataFrame(rows, columns=IMAGE_COLUMNS)
    rejected = Counter(row["rejection_reason"] for row in rows if row["rejection_reason"])
    with_photos = {row["person_id"] for row in rows if row["status"] == "approved"}
    people_without_photos = len(set(candidates["id"]) - with_photos)
    sourcing = sourcing_figures(
        [(row["person_id"], row["source"]) for row in rows if row["status"] == "approved"],
        [int(person_id) for person_id in candidates["id"]],
        [qid if isinstance(qid, str) else None for qid in candidates["wikidata_id"]],
        domain.images_per_person,
        web_sources.serp_cost_per_call,
    )
    context.log.info(
        f"raw_images[{code}]: {len(frame)} photos of {len(candidates)} people, "
        f"{sum(rejected.values())} unreadable, {people_without_photos} people without photos"
    )
    context.add_output_metadata(
        {
            "photos": len(frame),
            "photos_by_source": dict(Counter(frame["source"])) if len(frame) else {},
            "unique_files": int(frame["sha256"].nunique()) if len(frame) else 0,
            "rejected_at_ingest": dict(rejected),
            "people_without_photos": people_without_photos,
            **sourcing,
            **figures,
        }
    )
    with facerec.session() as session:
        record_stage(
            session,
            code,
            context.run_id,
            "raw_images",
            {
                "photos": len(frame),
                "people_without_photos": people_without_photos,
                "people_below_target": sourcing["people_below_target"],
            },
            time.monotonic() - started,
            {f"ingest:{k}": v for k, v in rejected.items()}
            | {f"source:{k}": v for k, v in figures.get("skips_by_reason", {}).items()},
            serp_cost=figures.get("serp_cost", 0.0),
        )
    return frame
