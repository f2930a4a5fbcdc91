"""Run one domain's pipeline synchronously through the real Dagster instance."""

from __future__ import annotations

import logging
import sys
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import dagster as dg

from facerec_pipeline.core.files import full_disk
from facerec_pipeline.db.engine import DatabaseUnavailable, database_down
from facerec_pipeline.defs.assembly import build_definitions
from facerec_pipeline.defs.dagster_internals import ensure_pool_limits, free_pool_slots
from facerec_pipeline.defs.executors import require_shared_state, require_workers
from facerec_pipeline.defs.jobs import DOMAIN_PIPELINE_JOB
from facerec_pipeline.defs.partitions import ensure_partition
from facerec_pipeline.defs.policy import STAGE_POOLS
from facerec_pipeline.defs.runs.causes import forget_cause, leave_cause, reserve_cause
from facerec_pipeline.defs.runs.events import PARTITION_TAG, record_run, step_failure_message
from facerec_pipeline.defs.runs.recovery import (
    INVOCATION_TAG,
    recover_dead_runs,
    refuse_concurrent_run,
    run_tags,
    watch_pool,
)
from facerec_pipeline.settings import Settings, validate_domain_code

# Dagster's console logger at INFO shows the stages' own progress lines, not every event.
RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


@dataclass
class RunOutcome:
    run_id: str
    success: bool
    failures: list[str] = field(default_factory=list)
    materialized: dict[str, dict] = field(default_factory=dict)


def run_domain(
    settings: Settings,
    code: str,
    instance: dg.DagsterInstance | None = None,
    echo: Callable[[str], None] = print,
    executor: str | None = None,
) -> RunOutcome:
    """Run every stage of `code`: in this process, or with `executor` (default: the settings')
    `celery` orchestrated from this process and executed by Celery workers (refused at once
    when they could not share the state or no worker listens). Runs of this data root that died
    are cleaned up first; a live run of the same domain is refused (RunInProgress); while this
    run waits for the database pool, `echo` says which run holds it. A database (facerec's or
    Dagster's) that stops answering ends it with RunStopped, one line, and the cause is left
    for recovery."""
    validate_domain_code(code)
    instance = instance or dg.DagsterInstance.get()
    executor = executor or settings.executor.name
    if executor == "celery":
        require_shared_state(settings, instance)
        require_workers(settings, ("stages", "faces"))
        prepare_pools(instance)
    for line in recover_dead_runs(instance, settings):
        echo(f"  recovered: {line}")
    refuse_concurrent_run(instance, code)
    ensure_partition(instance, code)
    invocation = uuid.uuid4().hex
    stop = threading.Event()
    watcher = threading.Thread(
        target=watch_pool, args=(instance, settings, invocation, echo, stop), daemon=True
    )
    watcher.start()
    reserve_cause(settings, invocation)
    result, stopped = None, False
    try:
        with quiet_database_noise(echo):
            result = _execute(settings, code, instance, executor, invocation)
            # The run has ended: a slot it still claims is a step's that never reported its end
            # (a Celery worker killed in it), and would hold the pool for ever.
            free_pool_slots(instance, result.run_id)
            outcome = _outcome(result, echo)
            record_run(instance, result.run_id, settings)
    except Exception as error:
        down = database_down(error)
        if down is None:
            raise
        full = full_disk(settings.storage_dir, Path(instance.root_directory or "."))
        disk = f"{full}: {down}" if full else None
        if result is not None:  # the run ended; only its history row could not be written
            ended = "succeeded" if result.success else "FAILED"
            why = disk or f"the database is unavailable ({down})"
            raise RunStopped(
                f"run {result.run_id} of {code!r} {ended}, but its history could not be "
                f"written: {why}; the next `facerec run` or `facerec history` writes it"
            ) from error
        stopped = True
        cause = disk or f"the database became unavailable ({down})"
        kept = leave_cause(settings, invocation, cause)
        later = (
            "marks it failed with this cause"
            if kept
            else "marks it failed (killed or crashed: the cause could not be kept)"
        )
        fix = "Free space, then" if full else "When the database is back,"
        raise RunStopped(
            f"the run of {code!r} stopped: {cause}; what it stored is kept. {fix} the next "
            f"`facerec run --domain {code}` (or `facerec history`) {later} and the run goes on "
            "from what was stored"
        ) from error
    finally:
        stop.set()
        if not stopped:
            forget_cause(settings, invocation)
    return outcome


def prepare_pools(instance: dg.DagsterInstance) -> None:
    """The stage pools with their limits before any run claims them (several runs that start
    at once on PostgreSQL would race to set them)."""
    ensure_pool_limits(instance, STAGE_POOLS)


def _execute(
    settings: Settings, code: str, instance: dg.DagsterInstance, executor: str, invocation: str
) -> dg.ExecuteInProcessResult | dg.JobExecutionResult:
    """Execute the domain pipeline for `code`: in this process, or orchestrated from here with
    its steps on the executor's workers (a job they rebuild from its module)."""
    tags = {**run_tags(), INVOCATION_TAG: invocation}
    if executor == "in_process":
        job = build_definitions(settings).resolve_job_def(DOMAIN_PIPELINE_JOB)
        return job.execute_in_process(
            instance=instance,
            partition_key=code,
            raise_on_error=False,
            run_config=RUN_CONFIG,
            tags=tags,
        )
    with warnings.catch_warnings():
        # dagster-celery registers its task again for each step it submits; Celery warns.
        warnings.filterwarnings("ignore", message="Task name 'execute_plan' is already")
        return dg.execute_job(
            reconstructable_pipeline(executor),
            instance=instance,
            raise_on_error=False,
            run_config=RUN_CONFIG,
            tags={**tags, PARTITION_TAG: code},  # execute_job takes no partition key
        )


def domain_pipeline_job(executor: str) -> dg.JobDefinition:
    """The domain pipeline built with `executor`: what a Celery worker rebuilds to execute a
    step of a run that `facerec run --executor celery` orchestrates (build_reconstructable_job),
    with the worker's own settings (the same storage and databases, mounted there)."""
    settings = Settings.from_env()
    settings = replace(settings, executor=replace(settings.executor, name=executor))
    return build_definitions(settings).resolve_job_def(DOMAIN_PIPELINE_JOB)


def reconstructable_pipeline(executor: str) -> dg.ReconstructableJob:
    """domain_pipeline_job(executor) as a job another process rebuilds from its module."""
    return dg.build_reconstructable_job(
        __name__, domain_pipeline_job.__name__, reconstructable_kwargs={"executor": executor}
    )


class RunStopped(DatabaseUnavailable):
    """A run could not go on, or not record its history: its database (facerec's or Dagster's)
    became unavailable, or its disk full."""


@contextmanager
def quiet_database_noise(echo: Callable[[str], None]) -> Iterator[None]:
    """While the run lasts, what Dagster and dagster-postgres say again and again when their
    database does not answer is said once, in one line each: dagster-postgres's warning at
    each connection retry (three lines, on the root logger), and Dagster's message (with the SQL
    and its parameters, on stderr) each time an event cannot be written."""

    class OnlyTheFirst(logging.Filter):
        said = False

        def filter(self, record: logging.LogRecord) -> bool:
            if not str(record.msg).startswith("Retrying failed database connection"):
                return True
            if not self.said:
                self.said = True
                echo(f"  the database does not answer, retrying: {_first_line(record.args)}")
            return False

    class FirstLineOnce:
        def __init__(self, stream):
            self.stream, self.said = stream, False

        def write(self, text: str) -> int:
            if not text.startswith(EVENT_WRITE_FAILED):
                return self.stream.write(text)
            if not self.said:
                self.said = True
                self.stream.write(text.splitlines()[0][:300] + "\n")
            return len(text)

        def __getattr__(self, name: str):
            return getattr(self.stream, name)

    quiet, stderr = OnlyTheFirst(), sys.stderr
    root = logging.getLogger()
    root.addFilter(quiet)
    sys.stderr = FirstLineOnce(stderr)
    try:
        yield
    finally:
        root.removeFilter(quiet)
        sys.stderr = stderr


EVENT_WRITE_FAILED = "Exception while writing logger call to event log"


def _first_line(args: Any) -> str:
    lines = str(args[0] if args else "").strip().splitlines()
    return lines[0] if lines else ""


def _outcome(
    result: dg.ExecuteInProcessResult | dg.JobExecutionResult, echo: Callable[[str], None]
) -> RunOutcome:
    """What the run materialized and checked, said as it is read, and its step failures."""
    outcome = RunOutcome(run_id=result.run_id, success=result.success)
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.step_materialization_data.materialization
            metadata = {key: value.value for key, value in materialization.metadata.items()}
            outcome.materialized[materialization.asset_key.to_user_string()] = metadata
            rows = metadata.get("dagster/row_count")
            count = f" ({rows} rows)" if rows is not None else ""
            echo(f"  materialized {materialization.asset_key.to_user_string()}{count}")
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.asset_check_evaluation_data
            state = "passed" if evaluation.passed else "FAILED"
            echo(f"  check {evaluation.check_name}: {state}")
            if not evaluation.passed and evaluation.description:
                echo(f"    {evaluation.description}")
        elif event.is_step_failure:
            outcome.failures.append(step_failure_message(event))
        elif event.event_type == dg.DagsterEventType.RUN_FAILURE and not outcome.failures:
            # No step reported its failure: a Celery worker died in it, and the executor's
            # error names the step ("[detected_faces.detected_faces_batch[00001]]:
            # WorkerLostError(...)").
            error = event.job_failure_data.error
            if error is not None:
                outcome.failures.append(" ".join(error.message.split())[:500])
    return outcome
