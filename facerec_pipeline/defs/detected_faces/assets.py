"""detected_faces: one validation outcome per photo (table `faces`): the accepted face with its
box, confidence, blur score and aligned crop under storage/trainingPass/{domain}/{person}/, or the
rejection reason. Photos already judged under the same configuration are not judged again."""

import dagster as dg
import pandas as pd

from facerec_pipeline.app.stages.detected_faces import build_detected_faces
from facerec_pipeline.defs.policy import run_stage, stage_asset
from facerec_pipeline.defs.resources import FaceEngineResource, FacerecStorage


@stage_asset(
    face_work=True,
    code_version="1",
    group_name="validation",
)
def detected_faces(
    context: dg.AssetExecutionContext,
    facerec: FacerecStorage,
    face_engine: FaceEngineResource,
    raw_images: pd.DataFrame,
    candidates: pd.DataFrame,
) -> pd.DataFrame:
    """Faces found in each photo (table `faces`), accepted or rejected by the quality gates
    (size, confidence, blur, dominance, duplicates) with the reason; a person whose photos all
    fail a soft gate keeps their largest face. Photos judged before are not judged again."""
    model = face_engine.model_of_domain(facerec, context.partition_key)
    return run_stage(
        context,
        facerec.settings,
        lambda run: build_detected_faces(run, model, face_engine, raw_images, candidates),
    )
