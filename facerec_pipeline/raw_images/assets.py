"""raw_images: every photo the source offers for the domain's people, stored content-addressed
under storage/training/{domain}/ with its provenance."""

from collections import Counter
from pathlib import Path

import dagster as dg
import pandas as pd

from facerec_pipeline.candidates.folder_source import list_photos
from facerec_pipeline.domains.partitions import DATABASE_POOL, domain_partitions
from facerec_pipeline.domains.registry import get_domain
from facerec_pipeline.raw_images.image_files import inspect_image, store_content_addressed
from facerec_pipeline.resources import FacerecStorage

IMAGE_COLUMNS = [
    "domain", "person_id", "sha256", "perceptual_hash", "file_path", "file_size", "width",
    "height", "mime", "source", "source_url", "status", "rejection_reason",
]  # fmt: skip


def folder_image_rows(
    code: str, source_root: Path, people: pd.DataFrame, training_dir: Path, relative
) -> list[dict]:
    rows = []
    for person in people.itertuples():
        person_dir = source_root / str(person.source_ref)
        photos = list_photos(person_dir) if person_dir.is_dir() else ()
        for photo in photos:
            facts = inspect_image(photo)
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
                    "source_url": f"folder:{person.source_ref}/{photo.name}",
                    "status": "rejected" if facts.rejection_reason else "approved",
                    "rejection_reason": facts.rejection_reason,
                }
            )
    return rows


@dg.asset(
    partitions_def=domain_partitions,
    io_manager_key="stage_tables",
    code_version="1",
    pool=DATABASE_POOL,
    group_name="ingestion",
    kinds={"python", "sqlite"},
)
def raw_images(
    context: dg.AssetExecutionContext, facerec: FacerecStorage, candidates: pd.DataFrame
) -> pd.DataFrame:
    """Photos per person (table `images`), deduplicated on disk by sha256. Files the source no
    longer has are marked removed, not deleted."""
    code = context.partition_key
    settings = facerec.settings
    with facerec.session() as session:
        domain = get_domain(session, code)
    if domain.source != "folder":
        raise dg.Failure(f"the {domain.source!r} source cannot be read by this version")
    rows = folder_image_rows(
        code,
        Path(domain.source_path or ""),
        candidates,
        settings.training_dir(code),
        settings.relative,
    )
    frame = pd.DataFrame(rows, columns=IMAGE_COLUMNS)
    rejected = Counter(row["rejection_reason"] for row in rows if row["rejection_reason"])
    people_without_photos = len(set(candidates["id"]) - {row["person_id"] for row in rows})
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
        }
    )
    return frame
