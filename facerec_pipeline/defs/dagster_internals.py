"""The Dagster internals this project still needs, in one place: each is a private attribute or
module of Dagster 1.13 with no public equivalent, and test_dagster_internals.py exercises every
one against the installed Dagster, so an upgrade that moves one fails there, not in a run.

- which process executes a run: the pid in a run's engine events (run recovery);
- whether the run storage is the single-machine SQLite one (run recovery);
- the `facerec_db` pool: the slots a dead run still claims, who holds and who waits;
- the pools' limits, set before runs start (Dagster's first-use setting races on PostgreSQL);
- the code version of the asset an IO manager stores and the step reading an input (lineage);
- the asset check executions of erased runs (people erase);
- the run and instance a dagster-celery step task belongs to (a worker skips the steps of ended
  runs).
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable


def engine_event_pid(record: dg.EventLogRecord) -> int | None:
    """The pid an engine event carries (Dagster records the process that executes a run)."""
    event = record.event_log_entry.dagster_event
    data = event.engine_event_data if event else None
    metadata = data.metadata if data else {}
    return int(metadata["pid"].value) if "pid" in metadata else None


def step_task_run(packed_step_args: dict) -> tuple[str, dg.DagsterInstance]:
    """The run id of a dagster-celery `execute_plan` task (its packed ExecuteStepArgs) and the
    instance that run is kept in: opened once per instance in a process, and kept open."""
    from dagster._grpc.types import ExecuteStepArgs
    from dagster._serdes import serialize_value, unpack_value

    args = unpack_value(packed_step_args, as_type=ExecuteStepArgs)
    key = serialize_value(args.instance_ref)
    if key not in _STEP_TASK_INSTANCES:
        _STEP_TASK_INSTANCES[key] = dg.DagsterInstance.from_ref(args.instance_ref)
    return args.run_id, _STEP_TASK_INSTANCES[key]


_STEP_TASK_INSTANCES: dict[str, dg.DagsterInstance] = {}


def run_storage_is_single_machine(instance: dg.DagsterInstance) -> bool:
    """Whether the instance keeps its runs in Dagster's SQLite run storage (one machine)."""
    return type(instance.run_storage).__name__.startswith("Sqlite")


def free_pool_slots(instance: dg.DagsterInstance, run_id: str) -> None:
    """Free the pool slots a (dead) run still claims."""
    instance.event_log_storage.free_concurrency_slots_for_run(run_id)


def ensure_pool_limits(instance: dg.DagsterInstance, pools: Iterable[str]) -> None:
    """Give each pool its limit (the instance's default) unless it has one. Dagster does it when
    a run first claims a pool; on PostgreSQL two runs that do so at once fail the second one
    (its insert's unique violation aborts the transaction its fallback update then runs in)."""
    storage = instance.event_log_storage
    for pool in pools:
        if pool in storage.get_concurrency_keys():
            continue
        try:
            storage.initialize_concurrency_limit_to_default(pool)
        except Exception:
            if pool not in storage.get_concurrency_keys():  # not set by someone else meanwhile
                raise


def pool_state(instance: dg.DagsterInstance, pool: str):
    """The pool's limit, claimed slots (with their run ids) and pending steps."""
    return instance.event_log_storage.get_concurrency_info(pool)


def stored_code_version(context: dg.OutputContext) -> str | None:
    """The code version of the asset an IO manager is storing, None when it has none."""
    try:
        return context.step_context.job_def.asset_layer.get(context.asset_key).code_version
    except Exception:  # noqa: BLE001 - lineage without a code version beats a failed step
        return None


def reading_step(context: dg.InputContext) -> tuple[str, str]:
    """(run id, step key) of the step an IO manager loads an input for."""
    return context.step_context.run_id, context.step_context.step.key


def delete_check_executions(instance: dg.DagsterInstance, run_ids: Iterable[str]) -> None:
    """Delete the asset check executions the runs recorded (their figures name people)."""
    run_ids = list(run_ids)
    with instance.event_log_storage.index_connection() as connection:
        connection.execute(
            AssetCheckExecutionsTable.delete().where(
                AssetCheckExecutionsTable.c.run_id.in_(run_ids)
            )
        )
