"""Close the run history row of domain runs launched by the daemon (schedules, sensors,
backfills); `facerec run` closes its own."""

import dagster as dg

from facerec_pipeline.db.engine import session_scope
from facerec_pipeline.jobs import domain_pipeline_job
from facerec_pipeline.run_history import finish
from facerec_pipeline.run_recovery import recover_dead_runs
from facerec_pipeline.settings import Settings


def _close(run: dg.DagsterRun, succeeded: bool, error: str | None) -> None:
    domain = run.tags.get("dagster/partition")
    if domain:
        with session_scope(Settings.from_env().database_url) as session:
            finish(session, domain, run.run_id, succeeded, error)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[domain_pipeline_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def domain_run_succeeded(context: dg.RunStatusSensorContext) -> None:
    _close(context.dagster_run, True, None)


@dg.run_failure_sensor(
    monitored_jobs=[domain_pipeline_job], default_status=dg.DefaultSensorStatus.RUNNING
)
def domain_run_failed(context: dg.RunFailureSensorContext) -> None:
    _close(context.dagster_run, False, context.failure_event.message)


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def dead_run_recovery(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    """Every minute the daemon runs (and when it starts): runs whose process died are marked
    failed, their pool slots freed and their history closed (run_recovery.py)."""
    lines = recover_dead_runs(context.instance, Settings.from_env())
    for line in lines:
        context.log.warning(line)
    return dg.SkipReason("; ".join(lines) or "no dead runs")
