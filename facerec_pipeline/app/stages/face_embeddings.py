"""face_embeddings: one DeepFace embedding per accepted face, stored as a float32 BLOB keyed by
(image sha256, model configuration). A re-run embeds only faces it has not seen."""

import numpy as np
import pandas as pd
from sqlalchemy import select

from facerec_pipeline.app.stages.stage_run import (
    BatchedStage,
    BatchResult,
    FaceEngines,
    StageFailed,
    StagePlan,
    StageResult,
    StageRun,
    in_batches,
)
from facerec_pipeline.core.face_models import FaceModel, current_faces
from facerec_pipeline.core.faces.engine import library_version
from facerec_pipeline.core.faces.validation import embed_crops
from facerec_pipeline.db.models import FaceEmbedding

EMBEDDING_COLUMNS = [
    "image_sha256",
    "model_config",
    "model_name",
    "detector_backend",
    "normalization",
    "library_version",
    "dim",
    "embedding",
]
EMBED_PROGRESS = 50


def _embeddings(run: StageRun, shas: list[str], model_config: str, column=FaceEmbedding) -> list:
    """The rows (or one `column`) of the faces `shas` embedded under `model_config`."""
    found = []
    with run.session() as session:
        for start in range(0, len(shas), 400):
            found.extend(
                session.scalars(
                    select(column).where(
                        FaceEmbedding.model_config == model_config,
                        FaceEmbedding.image_sha256.in_(shas[start : start + 400]),
                    )
                )
            )
    return found


def plan_face_embeddings(
    run: StageRun, model: FaceModel, batch_size: int, detected_faces: pd.DataFrame
) -> StagePlan:
    """The accepted faces (by sha256) and, in batches, those not yet embedded under the current
    face configuration with their crops."""
    current = current_faces(detected_faces, model)
    accepted = current[current["status"] == "accepted"].drop_duplicates("image_sha256")
    shas = list(accepted["image_sha256"])
    embedded = set(_embeddings(run, shas, model.engine.model_key, FaceEmbedding.image_sha256))
    missing = accepted[~accepted["image_sha256"].isin(embedded)]
    crops = list(zip(missing["image_sha256"], missing["crop_path"], strict=True))
    return StagePlan(shas, in_batches(crops, batch_size))


def embed_faces(
    run: StageRun, model: FaceModel, engines: FaceEngines, batch: list[tuple[str, str]]
) -> BatchResult:
    """Embed a batch of face crops ((sha256, crop path)): {sha256: float32 vector bytes}."""
    paths = [run.settings.absolute(path) for _, path in batch]
    vectors = embed_crops(engines.engine(model), paths, engines.pool(model))
    embedded = {}
    for done, ((sha, _), vector) in enumerate(zip(batch, vectors, strict=True), 1):
        embedded[sha] = np.asarray(vector, dtype="<f4").tobytes()
        if done % EMBED_PROGRESS == 0 or done == len(batch):
            run.log.info(f"face_embeddings[{run.domain}]: {done}/{len(batch)} faces embedded")
    return BatchResult(embedded, {"faces": len(batch)})


def merge_face_embeddings(
    run: StageRun, model: FaceModel, accepted: list[str], batches: list[dict[str, bytes]]
) -> StageResult:
    """One row per accepted face: embedded by a batch of this run, or before (reused)."""
    config = model.engine
    model_config = config.model_key
    new = {sha: vector for batch in batches for sha, vector in batch.items()}
    kept = _embeddings(run, [sha for sha in accepted if sha not in new], model_config)
    existing = {row.image_sha256: row for row in kept}
    lost = [sha for sha in accepted if sha not in new and sha not in existing]
    if lost:  # removed meanwhile (an erasure, say): the plan no longer holds
        raise StageFailed(
            f"face_embeddings[{run.domain}]: {len(lost)} embeddings found when the stage started "
            "were removed while it ran; run the domain again",
            retryable=True,
        )
    base = {
        "model_config": model_config,
        "model_name": config.model_name,
        "detector_backend": config.detector_backend,
        "normalization": config.normalization,
        "library_version": library_version(config),
    }
    rows = [
        {**base, "image_sha256": sha, "dim": row.dim, "embedding": row.embedding}
        for sha, row in existing.items()
    ] + [
        {**base, "image_sha256": sha, "dim": len(vector) // 4, "embedding": vector}
        for sha, vector in new.items()
    ]
    frame = pd.DataFrame(rows, columns=EMBEDDING_COLUMNS)
    shown = {
        "faces": len(frame),
        "embedded_this_run": len(new),
        "batches": len(batches),
        "reused_from_cache": len(existing),
        "model_config": model_config,
        "face_model": model.name,
    }
    return StageResult(frame, shown)


FACE_EMBEDDINGS = BatchedStage(
    "face_embeddings", plan_face_embeddings, embed_faces, merge_face_embeddings
)


def build_face_embeddings(
    run: StageRun, model: FaceModel, engines: FaceEngines, detected_faces: pd.DataFrame
) -> StageResult:
    """One embedding per accepted face under the current face configuration (table
    `face_embeddings`, keyed by the model configuration, so unlike embeddings never mix).
    Faces already embedded under it are reused. In this process; the pipeline runs each part
    as a step of its own."""
    return FACE_EMBEDDINGS.build(run, model, engines, detected_faces=detected_faces)
