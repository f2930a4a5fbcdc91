"""Keeps the `domain` dynamic partitions in step with the active domains of the registry."""

import dagster as dg

from facerec_pipeline.domains.partitions import domain_partitions
from facerec_pipeline.domains.registry import list_domains
from facerec_pipeline.resources import FacerecStorage


def missing_partitions(active: list[str], registered: list[str]) -> list[str]:
    known = set(registered)
    return [code for code in active if code not in known]


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Registers each active domain of the registry as a `domain` partition.",
)
def domain_registry_sensor(
    context: dg.SensorEvaluationContext, facerec: FacerecStorage
) -> dg.SensorResult | dg.SkipReason:
    with facerec.session() as session:
        active = [domain.code for domain in list_domains(session, active_only=True)]
    new = missing_partitions(
        active, context.instance.get_dynamic_partitions(domain_partitions.name)
    )
    if not new:
        return dg.SkipReason(f"all {len(active)} active domains are registered")
    context.log.info(f"registering domain partitions: {', '.join(new)}")
    return dg.SensorResult(dynamic_partitions_requests=[domain_partitions.build_add_request(new)])
