"""gallery: the identity-consistency filter and a new candidate version in batches, with a
report; blocking checks on it; production_gallery: promotion of a version that passed them."""

import warnings

import dagster as dg
import pandas as pd

from facerec_pipeline.app.promotion import CHECK_DESCRIPTIONS, figures_text, run_checks
from facerec_pipeline.app.stages.gallery import build_gallery
from facerec_pipeline.app.stages.production_gallery import build_production_gallery
from facerec_pipeline.app.stages.stage_run import version_label
from facerec_pipeline.defs.partitions import domain_partitions
from facerec_pipeline.defs.policy import run_stage, stage_asset
from facerec_pipeline.defs.resources import FaceEngineResource, FacerecStorage


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
    model = face_engine.model_of_domain(facerec, context.partition_key)
    return run_stage(
        context,
        facerec.settings,
        lambda run: build_gallery(
            run, model, candidates, raw_images, detected_faces, face_embeddings
        ),
    )


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
    return run_stage(context, facerec.settings, build_production_gallery)
