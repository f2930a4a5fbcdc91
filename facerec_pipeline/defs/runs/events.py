"""A domain run's history from its own events in the Dagster instance: per stage the metadata
its materialization reported and the seconds its steps took (summed: a face stage's plan,
batches and merge), the run's status, error, start and end. The run-history sensor, `facerec
run` and run recovery all write the history through `record_run`, so one function decides what
a run's row says."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime

import dagster as dg

from facerec_pipeline.app.run_history import RUN_STATUS, RunFacts, write_run
from facerec_pipeline.db.engine import session_scope
from facerec_pipeline.settings import Settings

PARTITION_TAG = "dagster/partition"  # the only partitions here are domains
EVENTS = {
    dg.DagsterEventType.STEP_START,
    dg.DagsterEventType.STEP_SUCCESS,
    dg.DagsterEventType.STEP_FAILURE,
    dg.DagsterEventType.ASSET_MATERIALIZATION,
    dg.DagsterEventType.RUN_FAILURE,
}


def run_facts(instance: dg.DagsterInstance, run_id: str) -> RunFacts | None:
    """What the run's events say; None for a run that is not of a domain partition."""
    record = next(iter(instance.get_run_records(dg.RunsFilter(run_ids=[run_id]), limit=1)), None)
    if record is None or not record.dagster_run.tags.get(PARTITION_TAG):
        return None
    run = record.dagster_run
    started: dict[str, float] = {}
    seconds: dict[str, float] = {}
    metadata: dict[str, dict] = {}
    step_errors, run_error = [], None
    for entry in instance.all_logs(run_id, of_type=EVENTS):
        event = entry.dagster_event
        if event is None:
            continue
        if event.is_step_start:
            started[entry.step_key] = entry.timestamp
        elif event.is_step_success or event.is_step_failure:
            if entry.step_key in started:
                stage = stage_of_step(entry.step_key)
                took = entry.timestamp - started[entry.step_key]
                seconds[stage] = seconds.get(stage, 0.0) + took
            if event.is_step_failure:
                step_errors.append(step_failure_message(event))
        elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            materialization = entry.asset_materialization
            metadata[materialization.asset_key.to_user_string()] = {
                key: value.value for key, value in materialization.metadata.items()
            }
        elif event.event_type == dg.DagsterEventType.RUN_FAILURE:
            run_error = event.message or entry.user_message
    return RunFacts(
        domain=run.tags[PARTITION_TAG],
        run_id=run_id,
        status=run.status.value,
        error="; ".join(step_errors) or run_error or None,
        started_at=_moment(record.start_time),
        finished_at=_moment(record.end_time),
        stage_metadata=metadata,
        stage_seconds={stage: s for stage, s in seconds.items() if stage in metadata},
    )


def stage_of_step(step_key: str) -> str:
    """The stage a step belongs to: its asset's, for the steps of a batched face stage
    (`detected_faces.detected_faces_batch[00001]`: detected_faces)."""
    return step_key.split(".", 1)[0]


def step_failure_message(event: dg.DagsterEvent) -> str:
    """`step: error (caused by: ...)` of a STEP_FAILURE event."""
    error = event.step_failure_data.error
    message = error.message.strip() if error else "unknown error"
    if error and error.cause:
        message += f" (caused by: {error.cause.message.strip()})"
    return f"{event.step_key}: {message}"


def record_run(instance: dg.DagsterInstance, run_id: str, settings: Settings) -> bool:
    """Write (or rewrite) the history row of a domain run from its events, and once it has
    ended remove what its steps passed each other (the next run starts afresh; nothing here
    re-executes a part of a run); False when the run is not a domain run or its domain is
    gone."""
    facts = run_facts(instance, run_id)
    if facts is None:
        return False
    if facts.status in RUN_STATUS:  # the statuses of a run that has ended
        shutil.rmtree(settings.step_outputs_dir / run_id, ignore_errors=True)
    with session_scope(settings.database_url) as session:
        return write_run(session, facts) is not None


def _moment(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch else None
