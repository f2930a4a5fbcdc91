"""Run one domain's pipeline synchronously through the real Dagster instance."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg

from facerec_pipeline.definitions import build_definitions
from facerec_pipeline.jobs import DOMAIN_PIPELINE_JOB
from facerec_pipeline.partitions import domain_partitions
from facerec_pipeline.run_events import record_run, step_failure_message
from facerec_pipeline.run_recovery import (
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
) -> RunOutcome:
    """Run every stage of `code` in this process. Runs of this data root that died are cleaned
    up first; a live run of the same domain is refused (RunInProgress); while this run waits for
    the database pool, `echo` says which run holds it."""
    validate_domain_code(code)
    instance = instance or dg.DagsterInstance.get()
    for line in recover_dead_runs(instance, settings):
        echo(f"  recovered: {line}")
    refuse_concurrent_run(instance, code)
    if not instance.has_dynamic_partition(domain_partitions.name, code):
        instance.add_dynamic_partitions(domain_partitions.name, [code])
    job = build_definitions(settings).resolve_job_def(DOMAIN_PIPELINE_JOB)
    invocation = uuid.uuid4().hex
    stop = threading.Event()
    watcher = threading.Thread(
        target=watch_pool, args=(instance, settings, invocation, echo, stop), daemon=True
    )
    watcher.start()
    try:
        result = job.execute_in_process(
            instance=instance,
            partition_key=code,
            raise_on_error=False,
            run_config=RUN_CONFIG,
            tags={**run_tags(), "facerec/invocation": invocation},
        )
    finally:
        stop.set()
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
    record_run(instance, result.run_id, settings.database_url)
    return outcome
