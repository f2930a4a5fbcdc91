"""raw_images: every photo the source offers for the domain's people, stored content-addressed
under storage/training/{domain}/ with its provenance and licence."""

import math
from collections import Counter

import pandas as pd
from sqlalchemy import delete, select

from facerec_pipeline.app.domains import get_domain
from facerec_pipeline.app.stage_tables import GENERATED_COLUMNS
from facerec_pipeline.app.stages.stage_run import (
    DomainSources,
    StageFailed,
    StageResult,
    StageRun,
)
from facerec_pipeline.app.stats import serp_spent_in_month, sourcing_figures
from facerec_pipeline.db.models import Image, SerpCall, SourceSkip
from facerec_pipeline.sources.interfaces import PersonPhotos, PhotoRequest, Skip, SourceError

IMAGE_COLUMNS = [c.name for c in Image.__table__.columns if c.name not in GENERATED_COLUMNS]
IMAGE_COLUMNS.remove("removed_at")


def present(value):
    """A DataFrame cell as a Python value: None for pandas' missing values (NaN, NaT)."""
    if value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def people_to_fetch(candidates: pd.DataFrame) -> list[PersonPhotos]:
    return [
        PersonPhotos(
            person_id=int(person.id),
            full_name=person.full_name,
            ref=present(person.source_ref),
            commons_category=present(person.commons_category),
            sitelinks=None if present(person.sitelinks) is None else int(person.sitelinks),
        )
        for person in candidates.itertuples()
    ]


def record_fetch(
    run: StageRun,
    person_ids: list[int],
    skips: list[tuple[int | None, Skip]],
    calls: list[dict],
) -> None:
    """Replace the skips of the people fetched, and those of no person (a folder source's
    stray entries); log paid search calls and their cost."""
    code, run_id = run.domain, run.run_id
    with run.session() as session:
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


def build_raw_images(
    run: StageRun, sources: DomainSources, candidates: pd.DataFrame
) -> StageResult:
    """Photos per person (table `images`) from the domain's source, stored content-addressed
    (deduplicated on disk by sha256), with source, provenance and licence. Folder photos that
    disappeared are marked removed, not deleted."""
    code = run.domain
    with run.session() as session:
        domain = get_domain(session, code)
        stored = [
            {column: getattr(image, column) for column in IMAGE_COLUMNS}
            for image in session.scalars(
                select(Image).where(Image.domain == code, Image.removed_at.is_(None))
            )
        ]
        paid_spent = serp_spent_in_month(session, code)
    request = PhotoRequest(
        code,
        people_to_fetch(candidates),
        stored,
        paid_spent,
        progress=lambda line: run.log.info(f"raw_images[{code}]: {line}"),
    )
    try:
        found = sources.for_domain(domain, run.settings).photos(request)
    except SourceError as error:
        raise StageFailed(str(error), retryable=error.retryable) from error
    person_ids = [int(i) for i in candidates["id"]]
    record_fetch(run, person_ids, found.skips, found.paid_calls)
    rows, figures = found.rows, found.figures
    frame = pd.DataFrame(rows, columns=IMAGE_COLUMNS)
    rejected = Counter(row["rejection_reason"] for row in rows if row["rejection_reason"])
    with_photos = {row["person_id"] for row in rows if row["status"] == "approved"}
    people_without_photos = len(set(candidates["id"]) - with_photos)
    sourcing = sourcing_figures(
        [(row["person_id"], row["source"]) for row in rows if row["status"] == "approved"],
        [int(person_id) for person_id in candidates["id"]],
        [qid if isinstance(qid, str) else None for qid in candidates["wikidata_id"]],
        domain.images_per_person,
        sources.serp_cost_per_call,
    )
    run.log.info(
        f"raw_images[{code}]: {len(frame)} photos of {len(candidates)} people, "
        f"{sum(rejected.values())} unreadable, {people_without_photos} people without photos"
    )
    shown = {
        "photos": len(frame),
        "photos_by_source": dict(Counter(frame["source"])) if len(frame) else {},
        "unique_files": int(frame["sha256"].nunique()) if len(frame) else 0,
        "rejected_at_ingest": dict(rejected),
        "people_without_photos": people_without_photos,
        **sourcing,
        **figures,
    }
    return StageResult(frame, shown)
