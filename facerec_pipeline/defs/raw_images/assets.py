"""raw_images: every photo the source offers for the domain's people, stored content-addressed
under storage/training/{domain}/ with its provenance and licence."""

import dagster as dg
import pandas as pd

from facerec_pipeline.app.stages.raw_images import build_raw_images
from facerec_pipeline.defs.policy import run_stage, stage_asset
from facerec_pipeline.defs.resources import FacerecStorage, SourcesResource


@stage_asset(
    code_version="3",
    group_name="ingestion",
    reaches_network=True,
)
def raw_images(
    context: dg.AssetExecutionContext,
    facerec: FacerecStorage,
    sources: SourcesResource,
    candidates: pd.DataFrame,
) -> pd.DataFrame:
    """Photos per person (table `images`) from the domain's source, stored content-addressed
    (deduplicated on disk by sha256), with source, provenance and licence. Folder photos that
    disappeared are marked removed, not deleted."""
    return run_stage(
        context, facerec.settings, lambda run: build_raw_images(run, sources, candidates)
    )
