"""face_embeddings: one DeepFace embedding per accepted face, stored as a float32 BLOB keyed by
(image sha256, model configuration). A re-run embeds only faces it has not seen."""

import numpy as np
import pandas as pd
from sqlalchemy import select

from facerec_pipeline.app.stages.stage_run import (
    FaceEngines,
    StageResult,
    StageRun,
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


def _existing_embeddings(run: StageRun, shas: list[str], model_config: str) -> dict:
    found = {}
    with run.session() as session:
        for start in range(0, len(shas), 400):
            rows = session.execute(
                select(FaceEmbedding).where(
                    FaceEmbedding.model_config == model_config,
                    FaceEmbedding.image_sha256.in_(shas[start : start + 400]),
                )
            ).scalars()
            found.update({row.image_sha256: row for row in rows})
    return found


def build_face_embeddings(
    run: StageRun, model: FaceModel, engines: FaceEngines, detected_faces: pd.DataFrame
) -> StageResult:
    """One embedding per accepted face under the current face configuration (table
    `face_embeddings`, keyed by the model configuration, so unlike embeddings never mix).
    Faces already embedded under it are reused."""
    code = run.domain
    settings = run.settings
    config = model.engine
    model_config = config.model_key
    current = current_faces(detected_faces, model)
    accepted = current[current["status"] == "accepted"].drop_duplicates("image_sha256")
    existing = _existing_embeddings(run, list(accepted["image_sha256"]), model_config)
    missing = accepted[~accepted["image_sha256"].isin(existing)]
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
    ]
    if len(missing):
        paths = [settings.absolute(path) for path in missing["crop_path"]]
        vectors = embed_crops(engines.engine(model), paths, engines.pool(model))
        for done, (sha, vector) in enumerate(zip(missing["image_sha256"], vectors, strict=True), 1):
            rows.append(
                {
                    **base,
                    "image_sha256": sha,
                    "dim": int(vector.shape[0]),
                    "embedding": np.asarray(vector, dtype="<f4").tobytes(),
                }
            )
            if done % EMBED_PROGRESS == 0 or done == len(missing):
                run.log.info(f"face_embeddings[{code}]: {done}/{len(missing)} new faces embedded")
    frame = pd.DataFrame(rows, columns=EMBEDDING_COLUMNS)
    shown = {
        "faces": len(frame),
        "embedded_this_run": len(missing),
        "reused_from_cache": len(existing),
        "model_config": model_config,
        "face_model": model.name,
    }
    return StageResult(frame, shown)
