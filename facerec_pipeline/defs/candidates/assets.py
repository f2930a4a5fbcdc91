"""candidates: the people a domain's gallery should hold, from the domain's source."""

import dagster as dg
import pandas as pd

from facerec_pipeline.app.stages.candidates import build_candidates
from facerec_pipeline.defs.policy import run_stage, stage_asset
from facerec_pipeline.defs.resources import FacerecStorage, SourcesResource


@stage_asset(
    code_version="3",
    group_name="ingestion",
    reaches_network=True,
)
def candidates(
    context: dg.AssetExecutionContext, facerec: FacerecStorage, sources: SourcesResource
) -> pd.DataFrame:
    """People of the domain (table `people`) from its source: one per sub-folder for a folder
    domain; humans of the domain's countries and occupations ranked by sitelinks for a Wikidata
    domain (people who drop out of the query are kept)."""
    return run_stage(context, facerec.settings, lambda run: build_candidates(run, sources))
