"""detected_faces: one validation outcome per photo (table `faces`): the accepted face with its
box, confidence, blur score and aligned crop under storage/trainingPass/{domain}/{person}/, or the
rejection reason. Photos already judged under the same configuration are not judged again."""

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from sqlalchemy import text

from facerec_pipeline.app.stages.stage_run import (
    BatchedStage,
    BatchResult,
    FaceEngines,
    StagePlan,
    StageResult,
    StageRun,
    in_batches,
)
from facerec_pipeline.core.artifacts.failures import FailureLog, FailureOutcomes
from facerec_pipeline.core.artifacts.store import (
    FACE_ALIGNED,
    FACE_CHIP,
    FACE_CROP,
    ArtifactKey,
    ArtifactStore,
    fill_bytes,
)
from facerec_pipeline.core.face_models import FaceModel
from facerec_pipeline.core.faces.engine import EngineConfig
from facerec_pipeline.core.faces.validation import PhotoOutcome, validate_photos
from facerec_pipeline.core.images.duplicates import PhotoRef, find_duplicates

FACE_COLUMNS = [
    "image_id",
    "domain",
    "person_id",
    "image_sha256",
    "detector_config",
    "status",
    "rejection_reason",
    "rejection_detail",
    "faces_found",
    "background_faces",
    "box_x",
    "box_y",
    "box_w",
    "box_h",
    "confidence",
    "blur_score",
    "face_size",
    "crop_path",
    "crop_sha256",
]
PROGRESS_EVERY = 25
STAGE = "detected_faces"


def _rejected(base: dict, reason: str, detail: str | None) -> dict:
    return {**base, "status": "rejected", "rejection_reason": reason, "rejection_detail": detail}


def save_crop(
    crop_bgr: np.ndarray, target: Path, artifacts: ArtifactStore, key: ArtifactKey
) -> str:
    """Write a face crop losslessly (PNG) with its artifact row and return its sha256."""
    ok, encoded = cv2.imencode(".png", crop_bgr)
    if not ok:
        raise ValueError(f"could not encode the face crop for {target}")
    height, width = crop_bgr.shape[:2]
    return artifacts.put(target, key, fill_bytes(encoded.tobytes()), size=(width, height)).sha256


def crop_key(base: dict, stage: str, soft_rejected: bool) -> ArtifactKey:
    """The artifact of a face crop: the photo, the configuration that cut it and where it lies
    (its person's folder under trainingPass/, or cache/soft_rejected/)."""
    made = {
        "detector_config": base["detector_config"],
        "person_id": base["person_id"],
        "soft_rejected": soft_rejected,
    }
    return ArtifactKey(base["domain"], stage, base["image_sha256"], made)


def outcome_row(
    base: dict,
    outcome: PhotoOutcome,
    crops: tuple[Path, Path],
    relative,
    artifacts: ArtifactStore,
    crop_stage: str,
) -> dict:
    """The faces row for a judged photo. An accepted face's crop is written to crops[0] (under
    trainingPass/); a soft-rejected one's to crops[1] (under cache/soft_rejected/), in case
    its person needs it (keep_one_face_per_person)."""
    row = {
        **base,
        "status": outcome.status,
        "rejection_reason": outcome.rejection_reason,
        "rejection_detail": outcome.rejection_detail,
        "faces_found": outcome.faces_found,
        "background_faces": outcome.background_faces,
        "blur_score": outcome.blur_score,
    }
    face = outcome.face
    if face is not None:
        row.update(
            box_x=face.x,
            box_y=face.y,
            box_w=face.w,
            box_h=face.h,
            confidence=face.confidence,
            face_size=face.size,
        )
    if face is not None and (outcome.status == "accepted" or outcome.rejection_reason in SOFT):
        soft = outcome.status != "accepted"
        crop = crops[1] if soft else crops[0]
        key = crop_key(base, crop_stage, soft)
        row["crop_sha256"] = save_crop(face.crop_bgr, crop, artifacts, key)
        row["crop_path"] = relative(crop)
    return row


# Rejections of a photo that holds a face: when they leave its person with no face at all, the
# best of them is accepted after all (largest face), since on the LFW development set a person
# with no face costs that person every answer while a weak face still names them. With
# `multiple_faces` the largest face is taken for the subject: on LFW (photos centred on their
# subject) leaving it out lost 8 people and 0.9 points of rank-1 (BENCHMARKS.md); on web photos
# of groups it may be someone else.
SOFT = ("face_too_small", "blurry", "low_confidence", "multiple_faces")
# The crop of an accepted face could not be written (disk full, permissions): retried next run.
CROP_NOT_WRITTEN = "crop_not_written"


def crop_stage_of(engine: EngineConfig) -> str:
    """The artifact stage of the crops `engine` cuts: dlib's chip, SFace's aligned crop or
    DeepFace's crop."""
    if engine.uses_dlib_chips:
        return FACE_CHIP
    return FACE_ALIGNED if engine.uses_sface else FACE_CROP


def adopt_crop(artifacts: ArtifactStore, crop: Path, base: dict, old: dict, stage: str) -> None:
    """Give a crop written before files were tracked its artifact row (never rewritten)."""
    if not artifacts.is_current(crop, base["domain"]):
        soft = "soft_rejected" in crop.parts
        artifacts.put(crop, crop_key(base, stage, soft), None, sha256=old.get("crop_sha256"))


def keep_one_face_per_person(rows: list[dict]) -> int:
    """Accept the largest soft-rejected face of each person who has no accepted face; returns
    how many were kept so. A kept face is `accepted` with its rejection reason still recorded,
    and is judged afresh on every run (a person who gains a good photo drops it)."""
    for row in rows:
        if row["status"] == "accepted" and row.get("rejection_reason") in SOFT:
            row["status"] = "rejected"
    accepted = {row["person_id"] for row in rows if row["status"] == "accepted"}
    best: dict[int, dict] = {}
    for row in rows:
        if row["person_id"] in accepted or row.get("rejection_reason") not in SOFT:
            continue
        if not row.get("crop_path"):
            continue
        current = best.get(row["person_id"])
        if current is None or (row.get("face_size") or 0) > (current.get("face_size") or 0):
            best[row["person_id"]] = row
    for row in best.values():
        row["status"] = "accepted"
    return len(best)


def previous_outcomes(run: StageRun, detector_config: str) -> dict[int, dict]:
    """The domain's faces rows judged under `detector_config`, by image id."""
    with run.session() as session:
        previous = pd.read_sql_query(
            text("SELECT * FROM faces WHERE domain = :domain AND detector_config = :config"),
            session.connection(),
            params={"domain": run.domain, "config": detector_config},
        )
    previous = previous.astype(object).where(previous.notna(), None)  # NULL stays None, not NaN
    return {int(row["image_id"]): row for row in previous.to_dict("records")}


@dataclass
class Sorting:
    """The plan of a run's judging: a row for every photo of the domain (one judged before,
    rejected at ingest or a duplicate is complete; one left to judge holds its identity only)
    and the photos left to judge."""

    run: StageRun
    detector_config: str
    artifacts: ArtifactStore
    failures: FailureLog
    crop_stage: str
    rows: list[dict] = field(default_factory=list)
    to_judge: list[tuple[int, Any]] = field(default_factory=list)
    reused: int = 0

    def reusable(self, old: dict | None, image: Any) -> bool:
        """Whether the outcome judged before still holds for `image`: same file, not a
        duplicate then, a crop that was written (or one not to retry yet) and still exists."""
        return (
            old is not None
            and old["image_sha256"] == image.sha256
            and old["rejection_reason"] != "duplicate"
            and (
                old["rejection_reason"] != CROP_NOT_WRITTEN
                or not self.failures.should_try(image.sha256)
            )
            and (old["crop_path"] is None or self.run.settings.absolute(old["crop_path"]).exists())
        )

    def sort(self, image: Any, old: dict | None, duplicates: dict[int, int]) -> None:
        """A row for `image`: rejected at ingest, a duplicate, reused, or left to judge."""
        base = {
            "image_id": int(image.id),
            "domain": self.run.domain,
            "person_id": int(image.person_id),
            "image_sha256": image.sha256,
            "detector_config": self.detector_config,
            "faces_found": 0,
            "background_faces": 0,
        }
        if image.status != "approved":
            self.rows.append(_rejected(base, image.rejection_reason or "unreadable_image", None))
        elif int(image.id) in duplicates:
            original = duplicates[int(image.id)]
            self.rows.append(_rejected(base, "duplicate", f"same photo as image {original}"))
        elif self.reusable(old, image):
            self.rows.append({column: old.get(column) for column in FACE_COLUMNS})
            self.reused += 1
            if old["crop_path"] is not None:
                crop = self.run.settings.absolute(old["crop_path"])
                adopt_crop(self.artifacts, crop, base, old, self.crop_stage)
        else:
            self.rows.append(base)
            self.to_judge.append((len(self.rows) - 1, image))


@dataclass(frozen=True)
class PhotoToJudge:
    """A photo in a batch: its row's place in the plan, the row so far, its file (relative
    to the storage root) and its person's folder under trainingPass/."""

    index: int
    base: dict
    file_path: str
    person_folder: str


@dataclass
class PlannedRows:
    rows: list[dict]
    reused: int


@dataclass
class JudgedBatch:
    rows: dict[int, dict]  # by the photo's index in the plan
    failures: FailureOutcomes


def plan_detected_faces(
    run: StageRun,
    model: FaceModel,
    batch_size: int,
    raw_images: pd.DataFrame,
    candidates: pd.DataFrame,
) -> StagePlan:
    """A row for every photo of the domain: rejected at ingest, a duplicate, judged before under
    the same configuration (reused, never sent again), or left to judge, in batches."""
    sorting = Sorting(
        run,
        model.detector_config,
        ArtifactStore(run.settings),
        FailureLog(run.settings, run.domain, STAGE, run.run_id),
        crop_stage_of(model.engine),
    )
    cached = previous_outcomes(run, model.detector_config)
    duplicates = find_duplicates(
        [
            PhotoRef(int(row.id), row.sha256, row.perceptual_hash)
            for row in raw_images.itertuples()
            if row.status == "approved"
        ],
        model.gates.duplicate_hash_distance,
    )
    with sorting.artifacts.batch():
        for image in raw_images.itertuples():
            sorting.sort(image, cached.get(int(image.id)), duplicates)
    folder = dict(zip(candidates["id"], candidates["normalized_name"], strict=True))
    photos = [
        PhotoToJudge(index, sorting.rows[index], image.file_path, folder[int(image.person_id)])
        for index, image in sorting.to_judge
    ]
    return StagePlan(PlannedRows(sorting.rows, sorting.reused), in_batches(photos, batch_size))


def judge_photos(
    run: StageRun, model: FaceModel, engines: FaceEngines, batch: list[PhotoToJudge]
) -> BatchResult:
    """Judge a batch of photos, writing each accepted face's crop; a crop that cannot be
    written is recorded and retried on a later run, never fatal."""
    settings, code = run.settings, run.domain
    artifacts = ArtifactStore(settings)
    failures = FailureLog(settings, code, STAGE, run.run_id)
    crop_stage = crop_stage_of(model.engine)
    # Crops of another configuration (a DeepFace crop, a dlib chip) never share a file.
    crop_tag = hashlib.sha256(model.detector_config.encode()).hexdigest()[:8]
    crops = [
        (
            settings.training_pass_dir(code) / photo.person_folder / name,
            settings.cache_dir / "soft_rejected" / code / photo.person_folder / name,
        )
        for photo in batch
        for name in [f"{photo.base['image_sha256'][:24]}_{crop_tag}.png"]
    ]
    artifacts.know_only(code, [path for pair in crops for path in pair])
    paths = [settings.absolute(photo.file_path) for photo in batch]
    outcomes = validate_photos(engines.engine(model), model.gates, paths, engines.pool(model))
    rows: dict[int, dict] = {}
    with artifacts.batch():
        for done, (photo, outcome, pair) in enumerate(zip(batch, outcomes, crops, strict=True), 1):
            sha = photo.base["image_sha256"]
            try:
                rows[photo.index] = outcome_row(
                    photo.base, outcome, pair, settings.relative, artifacts, crop_stage
                )
                failures.record_success(sha)
            except OSError as error:  # one crop that cannot be written never fails the run
                person = photo.base["person_id"]
                failures.record_failure(sha, person, photo.file_path, error)
                rows[photo.index] = _rejected(photo.base, CROP_NOT_WRITTEN, str(error)[:500])
                run.log.warning(f"detected_faces[{code}]: {photo.file_path}: {error}")
            if done % PROGRESS_EVERY == 0 or done == len(batch):
                run.log.info(f"detected_faces[{code}]: judged {done}/{len(batch)} photos")
    statuses = Counter(row["status"] for row in rows.values())
    figures = {
        "photos": len(batch),
        "accepted": statuses["accepted"],
        "rejected": statuses["rejected"],
        "crops_not_written": len(failures.failed),
    }
    return BatchResult(JudgedBatch(rows, failures.outcomes()), figures)


def merge_detected_faces(
    run: StageRun, model: FaceModel, planned: PlannedRows, judged: list[JudgedBatch]
) -> StageResult:
    """The domain's faces table from the plan's rows and every batch's judged ones; a person
    whose photos all fail a soft gate keeps their largest face."""
    code = run.domain
    rows = list(planned.rows)
    failures = FailureLog(run.settings, code, STAGE, run.run_id)
    for batch in judged:
        for index, row in batch.rows.items():
            rows[index] = row
        failures.include(batch.failures)
    failures.save()
    computed = sum(len(batch.rows) for batch in judged)
    kept = keep_one_face_per_person(rows)
    frame = pd.DataFrame(rows, columns=FACE_COLUMNS)
    reasons = Counter(frame.loc[frame["status"] == "rejected", "rejection_reason"])
    accepted = int((frame["status"] == "accepted").sum())
    run.log.info(
        f"detected_faces[{code}]: {accepted} accepted, {sum(reasons.values())} rejected "
        f"({computed} judged now in {len(judged)} batches, {planned.reused} reused)"
    )
    shown = {
        "accepted": accepted,
        "rejected": int(sum(reasons.values())),
        "rejections_by_reason": dict(sorted(reasons.items())),
        "judged_this_run": computed,
        "batches": len(judged),
        "kept_as_only_face": kept,
        "reused_from_cache": planned.reused,
        "crops_not_written": len(failures.failed),
        "detector_config": model.detector_config,
        "face_model": model.name,
    }
    return StageResult(frame, shown)


DETECTED_FACES = BatchedStage(STAGE, plan_detected_faces, judge_photos, merge_detected_faces)


def build_detected_faces(
    run: StageRun,
    model: FaceModel,
    engines: FaceEngines,
    raw_images: pd.DataFrame,
    candidates: pd.DataFrame,
) -> StageResult:
    """Faces found in each photo (table `faces`), accepted or rejected by the quality gates
    (size, confidence, blur, dominance, duplicates) with the reason; a person whose photos all
    fail a soft gate keeps their largest face. Photos judged before are not judged again. In
    this process; the pipeline runs each part as a step of its own."""
    return DETECTED_FACES.build(run, model, engines, raw_images=raw_images, candidates=candidates)
