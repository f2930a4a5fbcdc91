"""gallery: the identity-consistency filter and a new candidate version in batches, with a
report; blocking checks on it; production_gallery: promotion of a version that passed them."""

import warnings
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime

import dagster as dg
import numpy as np
import pandas as pd
from sqlalchemy import func, select

from facerec_pipeline.app.domains import get_domain, list_domains
from facerec_pipeline.app.promotion import (
    CHECK_DESCRIPTIONS,
    CHECK_NAMES,
    failed_checks_message,
    figures_text,
    latest_version,
    publish_passed,
    run_checks,
)
from facerec_pipeline.core.artifacts.store import (
    EVALUATION_REPORT,
    GALLERY_BATCH,
    GALLERY_INDEX,
    GALLERY_REPORT,
    PROD_POINTER,
    ArtifactKey,
    ArtifactStore,
)
from facerec_pipeline.core.face_models import current_faces
from facerec_pipeline.core.faces.engine import l2_normalize
from facerec_pipeline.core.gallery.identity import consistency_decisions
from facerec_pipeline.core.gallery.open_set import (
    OperatingPoint,
    calibrate,
    described,
    rule_text,
)
from facerec_pipeline.core.gallery.previews import thumbnail_key, thumbnails_of
from facerec_pipeline.core.gallery.publish import (
    GalleryEntry,
    content_hash,
    damaged_files,
    file_checksums,
    index_path,
    next_batch_number,
    ordered_entries,
    served_paths,
    serving_row,
    write_batches,
)
from facerec_pipeline.core.gallery.report import (
    SheetItem,
    contact_sheet_png,
    distance_plot_png,
    inline_jpeg,
    inline_png,
    write_report,
)
from facerec_pipeline.core.gallery.self_evaluation import evaluate, nearest_neighbours
from facerec_pipeline.db.models import Gallery
from facerec_pipeline.defs.partitions import domain_partitions
from facerec_pipeline.defs.policy import stage_asset
from facerec_pipeline.defs.resources import FaceEngineResource, FacerecStorage

GALLERY_FACE_COLUMNS = [
    "gallery_id",
    "domain",
    "face_id",
    "person_id",
    "identity_status",
    "identity_reason",
    "centroid_distance",
]


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
            if decision.centroid_distance is not None:
                distance[row] = decision.centroid_distance
    return frame.assign(identity_status=status, identity_reason=reason, centroid_distance=distance)


def build_report(
    settings,
    code: str,
    version: int,
    frame: pd.DataFrame,
    vectors: np.ndarray,
    keep: np.ndarray,
    detected_faces: pd.DataFrame,
    raw_images: pd.DataFrame,
    figures: dict,
    point: OperatingPoint,
) -> dict:
    rejected = detected_faces[detected_faces["status"] == "rejected"]
    rejections = dict(Counter(rejected["rejection_reason"]))
    quarantined = frame[~keep]
    rejections.update(
        {f"identity:{k}": v for k, v in Counter(quarantined["identity_reason"]).items()}
    )
    kept_labels = list(frame["normalized_name"][keep])
    found = nearest_neighbours(vectors[keep], kept_labels)
    plot = distance_plot_png(found.same, found.other, kept_labels, rejections)
    paths = dict(zip(raw_images["id"], raw_images["file_path"], strict=True))
    accepted_items = [
        SheetItem(settings.absolute(p), n)
        for p, n in zip(frame["crop_path"][keep], frame["normalized_name"][keep], strict=True)
    ]
    rejected_items = [SheetItem(settings.absolute(p), "identity") for p in quarantined["crop_path"]]
    rejected_items += [
        SheetItem(settings.absolute(paths[i]), r)
        for i, r in zip(rejected["image_id"], rejected["rejection_reason"], strict=True)
        if i in paths
    ]
    sheet = contact_sheet_png(accepted_items, rejected_items)
    people = frame[keep].groupby("full_name").size().sort_values(ascending=False)
    summary = "\n".join(
        [
            f"# Gallery {code} v{version}",
            f"- people: {people.size}, faces: {int(keep.sum())}, quarantined: {int((~keep).sum())}",
            f"- photos rejected by validation: {len(rejected)} "
            f"({', '.join(f'{k} {v}' for k, v in sorted(rejections.items())) or 'none'})",
            f"- leave-one-out top-1 accuracy: {figures.get('loo_top1_accuracy', 'n/a')} "
            f"over {figures.get('loo_probes', 0)} faces",
            f"- nearest same-person distance mean/max: {figures.get('genuine_distance_mean')}"
            f"/{figures.get('genuine_distance_max')}; nearest other-person min/mean: "
            f"{figures.get('impostor_distance_min')}/{figures.get('impostor_distance_mean')}",
            f"- operating point: {described(point)}. {point.rule}",
        ]
    )
    files = write_report(
        settings.reports_dir(code) / f"gallery_v{version:04d}",
        summary,
        plot,
        sheet,
        ArtifactStore(settings),
        code,
        version,
    )
    return {
        "report": dg.MetadataValue.md(
            f"{summary}\n\n{inline_png(plot, 'distances')}\n\n{inline_png(sheet, 'contact sheet')}"
        ),
        "report_path": dg.MetadataValue.path(str(files["report"])),
        "faces_per_person": dg.MetadataValue.md(people.to_frame("faces").to_markdown()),
    }


def adopt_version_files(settings, session, code: str) -> int:
    """Rows for the files of the domain's versions written before files were tracked (batches,
    faiss index, reports, the production pointer); returns how many were adopted."""
    store = ArtifactStore(settings)
    adopted = 0
    for gallery in session.scalars(select(Gallery).where(Gallery.domain == code)).all():
        version = gallery.version
        for batch in gallery.batch_paths or []:
            folder = settings.absolute(batch)
            adopted += store.adopt_folder(
                folder,
                lambda file, name=folder.name, v=version: ArtifactKey(
                    code, GALLERY_BATCH, None, {"batch": name, "file": file}, v
                ),
            )
        reports = settings.reports_dir(code) / f"gallery_v{version:04d}"
        adopted += store.adopt_folder(
            reports,
            lambda file, v=version: ArtifactKey(
                code,
                EVALUATION_REPORT if file.startswith("evaluation_") else GALLERY_REPORT,
                None,
                {"version": v, "file": file},
                v,
            ),
        )
        index = index_path(settings.batched_dir(code), version)
        if index.is_file() and not store.is_current(index, code):
            key = ArtifactKey(code, GALLERY_INDEX, None, {"version": version}, version)
            store.put(index, key, None)
            adopted += 1
    pointer = settings.prod_dir(code) / "gallery.json"
    if pointer.is_file() and not store.is_current(pointer, code):
        store.put(pointer, ArtifactKey(code, PROD_POINTER, None, {}), None)
        adopted += 1
    return adopted


SHOWN_PREVIEWS = 12  # people whose thumbnail the gallery's metadata shows inline


def previews_metadata(settings, session, code: str, frame: pd.DataFrame, keep, faces) -> dict:
    """The thumbnails (400 px) and blurhashes of the version's people, from the previews stage:
    how many people have one, and the first SHOWN_PREVIEWS inline with their blurhash."""
    boxes = faces.set_index("id")[["image_sha256", "box_x", "box_y", "box_w", "box_h"]]
    first: dict[str, tuple[str, str]] = {}
    for row in frame[keep].itertuples():
        face = boxes.loc[int(row.face_id)]
        if row.full_name not in first and pd.notna(face.box_x):
            box = (int(face.box_x), int(face.box_y), int(face.box_w), int(face.box_h))
            first[row.full_name] = thumbnail_key(face.image_sha256, box)
    found = thumbnails_of(session, code, list(first.values()))
    lines = ["| person | thumbnail | blurhash | file |", "|---|---|---|---|"]
    for name, key in list(first.items())[:SHOWN_PREVIEWS]:
        artifact = found.get(key)
        if artifact is None:
            lines.append(f"| {name} | (none) | | |")
            continue
        small = inline_jpeg(settings.absolute(artifact.path), 64, name)
        lines.append(f"| {name} | {small} | `{artifact.blurhash}` | `{artifact.path}` |")
    return {
        "people_with_thumbnail": sum(key in found for key in first.values()),
        "people_without_thumbnail": sum(key not in found for key in first.values()),
        "thumbnails": dg.MetadataValue.md("\n".join(lines)),
    }


@stage_asset(
    deps=["previews"],
    code_version="2",
    group_name="gallery",
)
def gallery(
    context: dg.AssetExecutionContext,
    facerec: FacerecStorage,
    face_engine: FaceEngineResource,
    candidates: pd.DataFrame,
    raw_images: pd.DataFrame,
    detected_faces: pd.DataFrame,
    face_embeddings: pd.DataFrame,
) -> pd.DataFrame:
    """Identity decisions per face (table `gallery_faces`) and, when the accepted faces changed,
    a new candidate version in batches. It serves production only after its checks pass
    (`production_gallery`)."""
    code = context.partition_key
    settings = facerec.settings
    model = face_engine.model_of_domain(facerec, code)
    config = model.engine
    # Rows of earlier face configurations are kept in `faces`, never mixed in.
    detected_faces = current_faces(detected_faces, model)
    frame = gallery_candidates(candidates, detected_faces, face_embeddings, config.model_key)
    if frame.empty:
        raise dg.Failure(
            f"domain {code!r} has no accepted face to build a gallery from; see "
            f"`facerec skips --domain {code}`",
            allow_retries=False,
        )
    vectors = l2_normalize(
        np.stack([np.frombuffer(blob, dtype="<f4") for blob in frame["embedding"]])
    )
    frame = identity_filter(frame, vectors, model.identity_max_distance)
    keep = (frame["identity_status"] == "accepted").to_numpy()
    entries = ordered_entries(
        [
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
    )
    if not entries:
        raise dg.Failure(f"every face of domain {code!r} was quarantined", allow_retries=False)
    with facerec.session() as session:
        target_far = get_domain(session, code).target_far
        # The operating point is part of what a version serves: a new target FAR or decision
        # rule, a new version.
        rule = rule_text(model.nearest_share)
        digest = content_hash(entries, f"{config.model_key}|far{target_far}|{rule}")
        latest = latest_version(session, code)
        # The newest version holds these faces, but a damaged file of it would fail its checks
        # on every run: it is built again from the database as a new version instead.
        damaged = (
            damaged_files(settings.storage_dir, latest.file_checksums or {})
            if latest is not None and latest.content_sha256 == digest
            else []
        )
        if damaged:
            context.log.warning(
                f"gallery[{code}]: v{latest.version} holds these faces but its files are "
                f"damaged ({'; '.join(damaged[:3])}): built again as a new version"
            )
        if latest is not None and latest.content_sha256 == digest and not damaged:
            target, built = latest, False
            figures = dict(latest.evaluation or {})
            point = OperatingPoint.from_dict(latest.operating_point)
        else:
            matrix = np.stack([entry.vector for entry in entries])
            labels = [entry.normalized_name for entry in entries]
            figures = evaluate(matrix, labels)
            point = calibrate(
                matrix,
                np.unique(labels, return_inverse=True)[1],
                target_far,
                fallback_threshold=model.verification_threshold,
                share=model.nearest_share,
            )
            version = (
                session.scalar(select(func.max(Gallery.version)).where(Gallery.domain == code)) or 0
            ) + 1
            now = datetime.now(UTC)
            known_batches = session.scalars(
                select(Gallery.batch_paths).where(Gallery.domain == code)
            ).all()
            batches = write_batches(
                settings.batched_dir(code),
                entries,
                domain=code,
                version=version,
                model_config=config.model_key,
                created_at=now,
                first_batch=next_batch_number(known_batches),
                run_id=context.run_id,
                engine_config=asdict(config),
                artifacts=ArtifactStore(settings),
            )
            checksums = file_checksums(
                settings.storage_dir,
                served_paths(batches, index_path(settings.batched_dir(code), version)),
            )
            target = Gallery(
                domain=code,
                version=version,
                content_sha256=digest,
                model_config=config.model_key,
                dim=int(vectors.shape[1]),
                batch_paths=[settings.relative(path) for path in batches],
                person_count=len({e.person_id for e in entries}),
                face_count=len(entries),
                quarantined_count=int((~keep).sum()),
                evaluation=figures,
                run_id=context.run_id,
                created_at=now,
                status="candidate",
                checks={},
                operating_point=point.to_dict(),
                file_checksums=checksums,
            )
            session.add(target)
            session.flush()
            built = True
        gallery_id, version, status = target.id, target.version, target.status
        shown_previews = previews_metadata(settings, session, code, frame, keep, detected_faces)
    context.log.info(
        f"gallery[{code}]: version {version} ({'built' if built else f'unchanged, {status}'}): "
        f"{len({e.person_id for e in entries})} people, {len(entries)} faces, "
        f"{int((~keep).sum())} quarantined"
    )
    report = (
        build_report(
            settings,
            code,
            version,
            frame,
            vectors,
            keep,
            detected_faces,
            raw_images,
            figures,
            point,
        )
        if built
        else {}
    )
    with facerec.session() as session:  # reads only: the store writes in its own transactions
        adopted = adopt_version_files(settings, session, code)
    context.add_output_metadata(
        {
            "gallery_version": version_label(code, version),
            "built_this_run": built,
            "status": status,
            "face_model": model.name,
            "people": len({e.person_id for e in entries}),
            "faces": len(entries),
            "quarantined": int((~keep).sum()),
            "quarantined_by_reason": dict(Counter(frame.loc[~keep, "identity_reason"])),
            "evaluation": dg.MetadataValue.json(figures),
            "operating_point": dg.MetadataValue.json(point.to_dict()),
            "expected_dir": point.expected_dir,
            "expected_far": point.expected_far,
            **report,
            **shown_previews,
            "files_adopted": adopted,
        }
    )
    return frame.assign(gallery_id=gallery_id, domain=code)[GALLERY_FACE_COLUMNS]


def version_label(code: str, version: int) -> dg.MetadataValue:
    """A version as the UI shows it: text naming its domain, so no plot mixes the version
    numbers of different domains."""
    return dg.MetadataValue.text(f"{code} v{version}")


def serving_table(session) -> str:
    """Markdown: the version serving each domain, and whether a rollback pins it."""
    rows = ["| domain | serving | pinned by a rollback |", "|---|---|---|"]
    for domain in list_domains(session):
        row = serving_row(session, domain.code)
        if row is not None:
            pinned = f"yes, v{domain.pinned_version}" if domain.pinned_version else "no"
            rows.append(f"| {domain.code} | v{row.version} | {pinned} |")
    return "\n".join(rows)


def _check_spec(name: str, description: str) -> dg.AssetCheckSpec:
    """A blocking check of `gallery`, partitioned like it so each result shows its domain in
    the UI (a preview feature of Dagster 1.13: its warning is not the operator's concern)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(
            name,
            asset=gallery,
            blocking=True,
            description=description,
            partitions_def=domain_partitions,
        )


@dg.multi_asset_check(
    specs=[_check_spec(name, description) for name, description in CHECK_DESCRIPTIONS.items()],
    can_subset=False,
)
def gallery_promotion_checks(context: dg.AssetCheckExecutionContext, facerec: FacerecStorage):
    """The newest version must pass all of these before `production_gallery` serves it; if one
    fails the version is marked rejected and production keeps the version it has. `facerec
    gallery recheck` runs them again after settings changed."""
    code = context.op_execution_context.partition_key
    with facerec.session() as session:
        candidate, outcomes = run_checks(session, facerec.settings, code)
        version = candidate.version
    for name, (passed, figures) in outcomes.items():
        verdict = (
            f"{code} v{version}: {name} {'passed' if passed else 'FAILED'}: {figures_text(figures)}"
        )
        yield dg.AssetCheckResult(
            check_name=name,
            passed=bool(passed),
            description=verdict[:2000],
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "gallery_version": version_label(code, version),
                **{
                    key: dg.MetadataValue.json(value) if isinstance(value, (dict, list)) else value
                    for key, value in figures.items()
                    if value is not None
                },
            },
        )


@stage_asset(
    stores_table=False,
    deps=[gallery],
    code_version="1",
    group_name="gallery",
)
def production_gallery(
    context: dg.AssetExecutionContext, facerec: FacerecStorage
) -> dg.MaterializeResult:
    """Points storage/recognized_faces_prod/{domain}/ at the newest gallery version once its
    blocking checks passed; does nothing when that version already serves."""
    code = context.partition_key
    settings = facerec.settings
    with facerec.session() as session:
        candidate = latest_version(session, code)
        if candidate is None:
            raise dg.Failure(f"domain {code!r} has no gallery version", allow_retries=False)
        current = serving_row(session, code)
        checks = candidate.checks or {}
        failed = sorted(name for name, result in checks.items() if not result["passed"])
        if candidate.status == "rejected" or failed or set(checks) != set(CHECK_NAMES):
            raise dg.Failure(
                f"gallery v{candidate.version} of {code!r} is not promoted: "
                f"{failed_checks_message(candidate)}. Production keeps "
                + (f"v{current.version}" if current else "no version")
                + f"; after changing settings, `facerec gallery recheck --domain {code}`",
                allow_retries=False,
            )
        done = publish_passed(session, settings, candidate)
        serving = serving_table(session)
    for change in done.pointer_changes:
        context.log.warning(f"production_gallery[{code}]: pointer rewritten: {change}")
    context.log.info(
        f"production_gallery[{code}]: v{done.serving} "
        + (
            "published"
            if done.published
            else f"keeps serving: {done.pinned}"
            if done.pinned
            else "already serving"
        )
    )
    return dg.MaterializeResult(
        metadata={
            "gallery_version": version_label(code, done.serving),
            "published_this_run": done.published,
            "pinned": done.pinned or "no",
            "serving": dg.MetadataValue.md(serving),
            "pointer": dg.MetadataValue.path(str(settings.prod_dir(code) / "gallery.json")),
        }
    )
