import dagster as dg

from facerec_pipeline.defs.partitions import domain_partitions

DOMAIN_PIPELINE_JOB = "domain_pipeline"

# Every stage of one domain, in order. Partitioned by domain, so
# `dagster job backfill -j domain_pipeline --partitions serbia,greece` works.
domain_pipeline_job = dg.define_asset_job(
    name=DOMAIN_PIPELINE_JOB,
    selection=dg.AssetSelection.groups("ingestion", "validation", "gallery"),
    partitions_def=domain_partitions,
    description="Candidates to production gallery for one domain partition.",
)
