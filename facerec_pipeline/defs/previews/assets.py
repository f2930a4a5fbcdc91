"""previews: a 400 px thumbnail, an 800 px web copy and a blurhash of every accepted photo and of
its face, each an artifact row, made once (a re-run finds them current and makes none). A photo
whose previews cannot be made is recorded (processing_failures) and tried again on later runs; it
never fails the run."""

import dagster as dg
import pandas as pd

from facerec_pipeline.app.stages.previews import build_previews
from facerec_pipeline.defs.policy import run_stage, stage_asset
from facerec_pipeline.defs.resources import FaceEngineResource, FacerecStorage


@stage_asset(
    face_work=True,
    stores_table=False,
    code_version="1",
    group_name="validation",
)
def previews(
    context: dg.AssetExecutionContext,
    facerec: FacerecStorage,
    face_engine: FaceEngineResource,
    raw_images: pd.DataFrame,
    detected_faces: pd.DataFrame,
) -> dg.MaterializeResult:
    """Thumbnails (400 px), web copies (800 px, progressive JPEG) and a blurhash of every
    accepted photo and face (table `artifacts`, files under storage/previews/{domain}/), made
    once; per-photo failures are recorded and retried, never fatal."""
    model = face_engine.model_of_domain(facerec, context.partition_key)
    return run_stage(
        context,
        facerec.settings,
        lambda run: build_previews(run, model, face_engine, raw_images, detected_faces),
    )
