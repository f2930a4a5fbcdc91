"""face_embeddings: one DeepFace embedding per accepted face, stored as a float32 BLOB keyed by
(image sha256, model configuration). A re-run embeds only faces it has not seen."""

import dagster as dg
import pandas as pd

from facerec_pipeline.app.stages.face_embeddings import build_face_embeddings
from facerec_pipeline.defs.policy import run_stage, stage_asset
from facerec_pipeline.defs.resources import FaceEngineResource, FacerecStorage


@stage_asset(
    face_work=True,
    code_version="1",
    group_name="validation",
)
def face_embeddings(
    context: dg.AssetExecutionContext,
    facerec: FacerecStorage,
    face_engine: FaceEngineResource,
    detected_faces: pd.DataFrame,
) -> pd.DataFrame:
    """One embedding per accepted face under the current face configuration (table
    `face_embeddings`, keyed by the model configuration, so unlike embeddings never mix).
    Faces already embedded under it are reused."""
    model = face_engine.model_of_domain(facerec, context.partition_key)
    return run_stage(
        context,
        facerec.settings,
        lambda run: build_face_embeddings(run, model, face_engine, detected_faces),
    )
