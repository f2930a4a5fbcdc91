"""The run-history sensor: every domain run of every job (schedules, sensors, backfills, the
Materialize button's `__ASSET_JOB`) gets its `training_sessions` row from its own events when it
starts and when it ends (events.py); and recovery of runs whose process died."""

from datetime import UTC, datetime

import dagster as dg

from facerec_pipeline.defs.resources import FacerecStorage
from facerec_pipeline.defs.runs.events import record_run
from facerec_pipeline.defs.runs.recovery import recover_dead_runs

RUNS_PER_TICK = 500
OVERLAP_SECONDS = 60.0


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Writes the run history (training_sessions) of every domain run, whichever job "
    "ran it, from the run's own events: per-stage counts and seconds, status, error.",
)
def run_history_sensor(context: dg.SensorEvaluationContext, facerec: FacerecStorage):
    """Runs whose status changed since the cursor (an update timestamp), oldest first, read
    again over the last OVERLAP_SECONDS: Dagster stamps an update with its event's time, which
    can be committed after a later-stamped one was read. A row is rewritten whole from the
    events, so a run seen twice is written the same way twice."""
    after = float(context.cursor) if context.cursor else 0.0
    since = datetime.fromtimestamp(max(0.0, after - OVERLAP_SECONDS), UTC)
    records = context.instance.get_run_records(
        filters=dg.RunsFilter(updated_after=since),
        order_by="update_timestamp",
        ascending=True,
        limit=RUNS_PER_TICK,
    )
    written = 0
    for record in records:
        written += record_run(context.instance, record.dagster_run.run_id, facerec.settings)
        after = max(after, record.update_timestamp.timestamp())
    context.update_cursor(str(after))
    return dg.SkipReason(f"history written for {written} domain run(s)")


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every minute: runs whose process died are marked failed, their stage pool "
    "pool slots freed, their history closed and their half-written files removed.",
)
def dead_run_recovery(
    context: dg.SensorEvaluationContext, facerec: FacerecStorage
) -> dg.SkipReason:
    """Every minute the daemon runs (and when it starts): runs whose process died are marked
    failed, their pool slots freed and their history closed (recovery.py)."""
    lines = recover_dead_runs(context.instance, facerec.settings)
    for line in lines:
        context.log.warning(line)
    return dg.SkipReason("; ".join(lines) or "no dead runs")
