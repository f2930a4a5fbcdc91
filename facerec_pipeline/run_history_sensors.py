"""Close the run history row of domain runs launched by the daemon or the UI (schedules,
sensors, backfills, the Materialize button's `__ASSET_JOB`); `facerec run` closes its own.
Every job of the code location is watched: a run of a `domain` partition is a domain run,
whichever job ran it."""

import dagster as dg

from facerec_pipeline.resources import FacerecStorage
from facerec_pipeline.run_history import finish
from facerec_pipeline.run_recovery import recover_dead_runs


def _close(facerec: FacerecStorage, run: dg.DagsterRun, succeeded: bool, error: str | None) -> None:
    domain = run.tags.get("dagster/partition")  # the only partitions here are domains
    if domain:
        with facerec.session() as session:
            finish(session, domain, run.run_id, succeeded, error)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Closes the run history row (training_sessions) of a domain run that succeeded, "
    "whichever job ran it.",
)
def domain_run_succeeded(context: dg.RunStatusSensorContext, facerec: FacerecStorage) -> None:
    _close(facerec, context.dagster_run, True, None)


@dg.run_failure_sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Closes the run history row of a domain run that failed, with its error.",
)
def domain_run_failed(context: dg.RunFailureSensorContext, facerec: FacerecStorage) -> None:
    _close(facerec, context.dagster_run, False, context.failure_event.message)


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every minute: runs whose process died are marked failed, their facerec_db "
    "pool slots freed, their history closed and their half-written files removed.",
)
def dead_run_recovery(
    context: dg.SensorEvaluationContext, facerec: FacerecStorage
) -> dg.SkipReason:
    """Every minute the daemon runs (and when it starts): runs whose process died are marked
    failed, their pool slots freed and their history closed (run_recovery.py)."""
    lines = recover_dead_runs(context.instance, facerec.settings)
    for line in lines:
        context.log.warning(line)
    return dg.SkipReason("; ".join(lines) or "no dead runs")
