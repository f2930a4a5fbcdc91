"""What a gallery version shows a person: its report (summary, distance plot, contact sheet), the
thumbnails of its people, and artifact rows for version files written before files were tracked."""

from collections import Counter

import numpy as np
import pandas as pd
from sqlalchemy import select

from facerec_pipeline.app.stages.stage_run import FilePath, Markdown
from facerec_pipeline.core.artifacts.store import (
    EVALUATION_REPORT,
    GALLERY_BATCH,
    GALLERY_INDEX,
    GALLERY_REPORT,
    PROD_POINTER,
    ArtifactKey,
    ArtifactStore,
)
from facerec_pipeline.core.gallery.loading import index_path
from facerec_pipeline.core.gallery.open_set import OperatingPoint, described
from facerec_pipeline.core.gallery.previews import thumbnail_key, thumbnails_of
from facerec_pipeline.core.gallery.report import (
    SheetItem,
    contact_sheet_png,
    distance_plot_png,
    inline_jpeg,
    inline_png,
    write_report,
)
from facerec_pipeline.core.gallery.self_evaluation import nearest_neighbours
from facerec_pipeline.db.models import Gallery


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
        "report": Markdown(
            f"{summary}\n\n{inline_png(plot, 'distances')}\n\n{inline_png(sheet, 'contact sheet')}"
        ),
        "report_path": FilePath(str(files["report"])),
        "faces_per_person": Markdown(people.to_frame("faces").to_markdown()),
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
        "thumbnails": Markdown("\n".join(lines)),
    }
