"""The retraining sensor: asks for the runs that bring each active domain's gallery up to date."""

from datetime import UTC, datetime

import dagster as dg

from facerec_pipeline.app.domains import list_domains
from facerec_pipeline.app.retraining import retrain_request
from facerec_pipeline.defs.jobs import domain_pipeline_job
from facerec_pipeline.defs.resources import FacerecStorage, SourcesResource
from facerec_pipeline.sources.interfaces import SourceError


@dg.sensor(
    job=domain_pipeline_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests a rebuild of a domain whose folder gained or lost photos, whose "
    "accepted faces are not all in its gallery (threshold per domain), or whose people are "
    "below their photo target (a re-download, at most daily).",
)
def retraining_sensor(
    context: dg.SensorEvaluationContext, facerec: FacerecStorage, sources: SourcesResource
) -> dg.SensorResult | dg.SkipReason:
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    requests = []
    with facerec.session() as session:
        for domain in list_domains(session, active_only=True):
            try:
                source = sources.for_domain(domain, facerec.settings)
            except SourceError as error:
                context.log.warning(f"{domain.code}: {error}")
                continue
            wanted = retrain_request(session, domain, today, source)
            if wanted is None:
                continue
            context.log.info(f"{wanted.domain}: {wanted.reason} -> {wanted.kind} run")
            requests.append(
                dg.RunRequest(
                    partition_key=wanted.domain,
                    run_key=wanted.run_key,
                    asset_selection=[dg.AssetKey(name) for name in wanted.assets],
                    tags={"facerec/trigger": f"retrain_{wanted.kind}"},
                )
            )
    if not requests:
        return dg.SkipReason("every active domain's gallery is up to date")
    return dg.SensorResult(run_requests=requests)
