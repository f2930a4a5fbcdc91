"""Keeps the `domain` dynamic partitions in step with the registry and asks for the first run
of each active domain that has no gallery yet."""

import dagster as dg
from sqlalchemy import select

from facerec_pipeline.app.domains import list_domains
from facerec_pipeline.db.models import Gallery
from facerec_pipeline.defs.jobs import domain_pipeline_job
from facerec_pipeline.defs.partitions import domain_partitions
from facerec_pipeline.defs.resources import FacerecStorage


def missing_partitions(active: list[str], registered: list[str]) -> list[str]:
    known = set(registered)
    return [code for code in active if code not in known]


@dg.sensor(
    job=domain_pipeline_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Registers each active domain as a `domain` partition and requests the first "
    "run of a domain that has no gallery.",
)
def domain_registry_sensor(
    context: dg.SensorEvaluationContext, facerec: FacerecStorage
) -> dg.SensorResult | dg.SkipReason:
    with facerec.session() as session:
        active = [domain.code for domain in list_domains(session, active_only=True)]
        built = set(session.scalars(select(Gallery.domain).distinct()))
    new = missing_partitions(
        active, context.instance.get_dynamic_partitions(domain_partitions.name)
    )
    # One first run per domain ever (the run key), however often this sensor restarts.
    first_runs = [
        dg.RunRequest(
            partition_key=code, run_key=f"first-run:{code}", tags={"facerec/trigger": "first_run"}
        )
        for code in active
        if code not in built
    ]
    if not new and not first_runs:
        return dg.SkipReason(f"all {len(active)} active domains are registered and built")
    return dg.SensorResult(
        run_requests=first_runs,
        dynamic_partitions_requests=[domain_partitions.build_add_request(new)] if new else [],
    )
