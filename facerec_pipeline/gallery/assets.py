"""gallery: the identity-consistency filter, versioned batches and publication to production."""

import json
from collections import Counter
from datetime import UTC, datetime

import dagster as dg
import numpy as np
import pandas as pd
from sqlalchemy import func, select, update

from facerec_pipeline.db.models import Gallery, Person
from facerec_pipeline.domains.partitions import DATABASE_POOL, domain_partitions
from facerec_pipeline.face_engine.engine import l2_normalize
from facerec_pipeline.gallery.evaluation import evaluate
from facerec_pipeline.gallery.identity import consistency_decisions
from facerec_pipeline.gallery.publish import (
    GalleryEntry,
    content_hash,
    read_prod_pointer,
    write_batches,
    write_prod_pointer,
)
from facerec_pipeline.resources import FaceEngineResource, FacerecStorage

GALLERY_FACE_COLUMNS = [
    "gallery_id", "domain", "face_id", "person_id", "identity_status", "identity_reason",
    "centroid_distance",
]  # fmt: skip


def gallery_candidates(
    candidates: pd.DataFrame, faces: pd.DataFrame, embeddings: pd.DataFrame, model_config: str
) -> pd.DataFrame:
    """Accepted faces with their embedding under `model_config` and their person's names."""
    current = embeddings[embeddings["model_config"] == model_config]
    accepted = faces[faces["status"] == "accepted"][["id", "crop_path"]].rename(
        columns={"id": "face_id"}
    )
    people = candidates[["id", "full_name", "normalized_name", "wikidata_id"]].rename(
        columns={"id": "person_id"}
    )
    return (
        current.merge(accepted, on="face_id")
        .merge(people, on="person_id")
        .sort_values("face_id")
        .reset_index(drop=True)
    )


def identity_filter(frame: pd.DataFrame, vectors: np.ndarray, threshold: float) -> pd.DataFrame:
    """Adds identity_status, identity_reason and centroid_distance per face."""
    status = np.empty(len(frame), dtype=object)
    reason = np.empty(len(frame), dtype=object)
    distance = np.full(len(frame), np.nan)
    for _, index in frame.groupby("person_id").groups.items():
        rows = np.asarray(list(index))
        for row, decision in zip(
            rows, consistency_decisions(vectors[rows], threshold), strict=True
        ):
            status[row] = "accepted" if decision.accepted else "quarantined"
            reason[row] = decision.reason
            distance[row] = (
                np.nan if decision.centroid_distance is None else decision.centroid_distance
            )
    return frame.assign(identity_status=status, identity_reason=reason, centroid_distance=distance)


@dg.asset(
    partitions_def=domain_partitions,
    io_manager_key="stage_tables",
    code_version="1",
    pool=DATABASE_POOL,
    group_name="gallery",
    kinds={"python", "sqlite"},
)
def gallery(
    context: dg.AssetExecutionContext,
    facerec: FacerecStorage,
    face_engine: FaceEngineResource,
    candidates: pd.DataFrame,
    detected_faces: pd.DataFrame,
    face_embeddings: pd.DataFrame,
) -> pd.DataFrame:
    """Identity decisions per face (table `gallery_faces`); the accepted faces are packed into
    batches and published as the domain's production gallery when they changed."""
    code = context.partition_key
    settings = facerec.settings
    config = face_engine.engine_config
    frame = gallery_candidates(candidates, detected_faces, face_embeddings, config.model_key)
    if frame.empty:
        raise dg.Failure(
            f"domain {code!r} has no accepted face to build a gallery from; see the rejection "
            "reasons in detected_faces (`facerec stats --domain {code}`)"
        )
    vectors = l2_normalize(
        np.stack([np.frombuffer(blob, dtype="<f4") for blob in frame["embedding"]])
    )
    frame = identity_filter(frame, vectors, config.threshold)
    keep = (frame["identity_status"] == "accepted").to_numpy()
    entries = [
        GalleryEntry(
            face_id=int(row.face_id),
            person_id=int(row.person_id),
            person=row.full_name,
            normalized_name=row.normalized_name,
            wikidata_id=row.wikidata_id if isinstance(row.wikidata_id, str) else None,
            image_sha256=row.image_sha256,
            crop_path=settings.absolute(row.crop_path),
            vector=vectors[position],
        )
        for position, row in enumerate(frame.itertuples())
        if keep[position]
    ]
    if not entries:
        raise dg.Failure(f"every face of domain {code!r} was quarantined by the identity filter")
    figures = evaluate(
        vectors[keep], [entry.normalized_name for entry in entries], config.threshold
    )
    digest = content_hash(entries, config.model_key)
    now = datetime.now(UTC)
    with facerec.session() as session:
        prod = session.scalar(select(Gallery).where(Gallery.domain == code, Gallery.is_prod))
        pointer = read_prod_pointer(settings.prod_dir(code))
        if prod is not None and prod.content_sha256 == digest and pointer is not None:
            published, target = False, prod
        else:
            version = (
                session.scalar(select(func.max(Gallery.version)).where(Gallery.domain == code)) or 0
            ) + 1
            batches = write_batches(
                settings.batched_dir(code),
                entries,
                domain=code,
                version=version,
                model_config=config.model_key,
                created_at=now,
            )
            target = Gallery(
                domain=code,
                version=version,
                content_sha256=digest,
                model_config=config.model_key,
                dim=int(vectors.shape[1]),
                batch_paths=[settings.relative(path) for path in batches],
                person_count=len({entry.person_id for entry in entries}),
                face_count=len(entries),
                quarantined_count=int((~keep).sum()),
                evaluation=figures,
                run_id=context.run_id,
                created_at=now,
                published_at=now,
                is_prod=False,
            )
            session.add(target)
            session.flush()
            session.execute(update(Gallery).where(Gallery.domain == code).values(is_prod=False))
            target.is_prod = True
            session.execute(
                update(Person)
                .where(Person.id.in_({entry.person_id for entry in entries}))
                .values(status="deployed")
            )
            write_prod_pointer(
                settings.prod_dir(code),
                {
                    "domain": code,
                    "version": version,
                    "model_config": config.model_key,
                    "dim": int(vectors.shape[1]),
                    "batches": target.batch_paths,
                    "published_at": now.isoformat(),
                },
            )
            published = True
    quarantined = frame[~keep]
    context.log.info(
        f"gallery[{code}]: version {target.version} "
        f"({'published' if published else 'unchanged, still serving'}): "
        f"{target.person_count} people, {target.face_count} faces, {len(quarantined)} quarantined"
    )
    per_person = frame.groupby("full_name")["identity_status"].value_counts().unstack(fill_value=0)
    context.add_output_metadata(
        {
            "gallery_version": target.version,
            "published_this_run": published,
            "people": target.person_count,
            "faces": target.face_count,
            "quarantined": len(quarantined),
            "quarantined_by_reason": dict(Counter(quarantined["identity_reason"])),
            "batches": dg.MetadataValue.json(list(target.batch_paths)),
            "evaluation": dg.MetadataValue.json(figures),
            "faces_per_person": dg.MetadataValue.md(per_person.to_markdown()),
        }
    )
    return frame.assign(gallery_id=target.id, domain=code)[GALLERY_FACE_COLUMNS]


@dg.asset_check(asset=gallery, blocking=True, description="The production gallery is coherent")
def gallery_is_coherent(
    context: dg.AssetCheckExecutionContext, facerec: FacerecStorage
) -> dg.AssetCheckResult:
    """One model configuration and dimension across batches, rows match their labels, and no
    photo serves two people."""
    settings = facerec.settings
    code = context.op_execution_context.partition_key
    pointer = read_prod_pointer(settings.prod_dir(code))
    if pointer is None:
        return dg.AssetCheckResult(passed=False, metadata={"problem": "no production pointer"})
    problems, owners = [], {}
    faces_total = 0
    for batch in pointer["batches"]:
        batch_dir = settings.absolute(batch)
        metadata = json.loads((batch_dir / "batch_metadata.json").read_text())
        matrix = np.load(batch_dir / "embeddings.npy")
        faces = json.loads((batch_dir / "faces.json").read_text())
        faces_total += len(faces)
        if metadata["model_config"] != pointer["model_config"]:
            problems.append(f"{batch}: model {metadata['model_config']}")
        if matrix.shape != (len(faces), pointer["dim"]):
            problems.append(f"{batch}: embeddings {matrix.shape} for {len(faces)} faces")
        for face in faces:
            owner = owners.setdefault(face["image_sha256"], face["normalized_name"])
            if owner != face["normalized_name"]:
                problems.append(
                    f"photo {face['image_sha256'][:12]} in {owner} and {face['normalized_name']}"
                )
    return dg.AssetCheckResult(
        passed=not problems and faces_total > 0,
        metadata={"faces": faces_total, "problems": dg.MetadataValue.json(problems)},
    )
