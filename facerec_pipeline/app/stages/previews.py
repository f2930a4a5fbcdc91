"""previews: a 400 px thumbnail, an 800 px web copy and a blurhash of every accepted photo and of
its face, each an artifact row, made once (a re-run finds them current and makes none). A photo
whose previews cannot be made is recorded (processing_failures) and tried again on later runs; it
never fails the run."""

from collections import Counter
from dataclasses import dataclass

import pandas as pd

from facerec_pipeline.app.stages.stage_run import (
    BatchedStage,
    BatchResult,
    FaceEngines,
    FilePath,
    StagePlan,
    StageResult,
    StageRun,
    in_batches,
)
from facerec_pipeline.core.artifacts.failures import FailureLog, FailureOutcomes
from facerec_pipeline.core.artifacts.store import (
    THUMBNAIL,
    WEB,
    ArtifactKey,
    ArtifactStore,
    fill_bytes,
)
from facerec_pipeline.core.face_models import FaceModel, current_faces
from facerec_pipeline.core.images.previews import (
    THUMBNAIL_SIDE,
    WEB_SIDE,
    parameters,
    preview_path,
    previews_or_error,
)

STAGE = "previews"
PROGRESS_EVERY = 200


def preview_jobs(raw_images: pd.DataFrame, faces: pd.DataFrame) -> list[dict]:
    """One job per accepted photo and one per its face: (sha256, person, file, box or None)."""
    photos = raw_images.set_index("id")
    jobs: dict[tuple, dict] = {}
    for face in faces[faces["status"] == "accepted"].itertuples():
        if int(face.image_id) not in photos.index:
            continue
        photo = photos.loc[int(face.image_id)]
        base = {"sha256": photo.sha256, "person_id": int(face.person_id), "file": photo.file_path}
        jobs.setdefault((photo.sha256, None), {**base, "box": None})
        if pd.notna(face.box_x):
            box = (int(face.box_x), int(face.box_y), int(face.box_w), int(face.box_h))
            jobs.setdefault((photo.sha256, box), {**base, "box": box})
    return list(jobs.values())


@dataclass
class PreviewPlan:
    jobs: int
    counts: Counter
    failures: FailureOutcomes  # the photos whose previews were found made after a failure


@dataclass
class PreviewBatch:
    made: int
    failed: int
    failures: FailureOutcomes


def plan_previews(
    run: StageRun,
    model: FaceModel,
    batch_size: int,
    raw_images: pd.DataFrame,
    detected_faces: pd.DataFrame,
) -> StagePlan:
    """The previews of every accepted photo and face: current ones are left as they are, a
    photo that failed MAX_ATTEMPTS times is given up, the rest is made in batches."""
    code, settings = run.domain, run.settings
    store = ArtifactStore(settings)
    failures = FailureLog(settings, code, STAGE, run.run_id)
    jobs = preview_jobs(raw_images, current_faces(detected_faces, model))
    counts: Counter = Counter()
    to_make = []
    for job in jobs:
        box = job["box"]
        # Paths relative to the storage root: a worker may mount it elsewhere.
        job["made"] = {
            side: (
                settings.relative(
                    preview_path(settings.previews_dir(code), job["sha256"], parameters(side, box))
                ),
                ArtifactKey(code, stage, job["sha256"], parameters(side, box)),
            )
            for side, stage in ((THUMBNAIL_SIDE, THUMBNAIL), (WEB_SIDE, WEB))
        }
        made = [settings.absolute(path) for path, _ in job["made"].values()]
        if all(store.is_current(path, code) for path in made):
            counts["reused"] += 1
            failures.record_success(job["sha256"])
        elif not failures.should_try(job["sha256"]):
            counts["given_up"] += 1
        else:
            to_make.append(job)
    return StagePlan(
        PreviewPlan(len(jobs), counts, failures.outcomes()), in_batches(to_make, batch_size)
    )


def make_previews(
    run: StageRun, model: FaceModel, engines: FaceEngines, batch: list[dict]
) -> BatchResult:
    """Make a batch's previews, each with its artifact row; a photo whose previews cannot be
    made is recorded, never fatal."""
    code, settings = run.domain, run.settings
    store = ArtifactStore(settings)
    store.know_only(
        code, [settings.absolute(path) for job in batch for path, _ in job["made"].values()]
    )
    failures = FailureLog(settings, code, STAGE, run.run_id)
    work = [(settings.absolute(job["file"]), job["box"]) for job in batch]
    engine, pool = engines.engine(model), engines.pool(model)
    if pool.serves(engine, work):  # decoding and blurhash are CPU work: the run's workers
        found = pool.map(previews_or_error, work)
    else:
        found = (previews_or_error(engine, item) for item in work)
    counts: Counter = Counter()
    with store.batch():
        for done, (job, made) in enumerate(zip(batch, found, strict=True), 1):
            if isinstance(made, str):
                counts["failed"] += 1
                failures.record_failure(job["sha256"], job["person_id"], job["file"], made)
                run.log.warning(f"previews[{code}]: {job['file']}: {made}")
            else:
                for side, preview in ((THUMBNAIL_SIDE, made.thumbnail), (WEB_SIDE, made.web)):
                    path, key = job["made"][side]
                    store.put(
                        settings.absolute(path),
                        key,
                        fill_bytes(preview.data),
                        blurhash=made.blurhash,
                        size=(preview.width, preview.height),
                    )
                counts["made"] += 1
                failures.record_success(job["sha256"])
            if done % PROGRESS_EVERY == 0 or done == len(batch):
                run.log.info(f"previews[{code}]: made {done}/{len(batch)}")
    figures = {"photos_and_faces": len(batch), "made": counts["made"], "failed": counts["failed"]}
    return BatchResult(PreviewBatch(counts["made"], counts["failed"], failures.outcomes()), figures)


def merge_previews(
    run: StageRun, model: FaceModel, plan: PreviewPlan, batches: list[PreviewBatch]
) -> StageResult:
    """Record the failures of every batch (and the successes after a failure) and say what
    was made."""
    code, settings = run.domain, run.settings
    failures = FailureLog(settings, code, STAGE, run.run_id)
    failures.include(plan.failures)
    for batch in batches:
        failures.include(batch.failures)
    failures.save()
    made, failed = sum(batch.made for batch in batches), sum(batch.failed for batch in batches)
    counts = plan.counts
    run.log.info(
        f"previews[{code}]: {made} made, {counts['reused']} current, "
        f"{failed} failed, {counts['given_up']} given up"
    )
    return StageResult(
        None,
        {
            "photos_and_faces": plan.jobs,
            "made_this_run": made,
            "reused": counts["reused"],
            "failed_this_run": failed,
            "given_up": counts["given_up"],
            "batches": len(batches),
            "previews_dir": FilePath(str(settings.previews_dir(code))),
        },
    )


PREVIEWS = BatchedStage(STAGE, plan_previews, make_previews, merge_previews)


def build_previews(
    run: StageRun,
    model: FaceModel,
    engines: FaceEngines,
    raw_images: pd.DataFrame,
    detected_faces: pd.DataFrame,
) -> StageResult:
    """Thumbnails (400 px), web copies (800 px, progressive JPEG) and a blurhash of every
    accepted photo and face (table `artifacts`, files under storage/previews/{domain}/), made
    once; per-photo failures are recorded and retried, never fatal. In this process; the
    pipeline runs each part as a step of its own."""
    return PREVIEWS.build(run, model, engines, raw_images=raw_images, detected_faces=detected_faces)
