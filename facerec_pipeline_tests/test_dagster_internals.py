"""Every Dagster internal the project uses (defs/dagster_internals.py) exercised against the
installed Dagster, so an upgrade that moves one fails here rather than in a run."""

import os

import dagster as dg

from facerec_pipeline.defs.dagster_internals import (
    delete_check_executions,
    engine_event_pid,
    ensure_pool_limits,
    free_pool_slots,
    pool_state,
    reading_step,
    run_storage_is_single_machine,
    step_task_run,
    stored_code_version,
)


@dg.op
def nothing() -> None:
    return None


@dg.job
def in_process_job():
    nothing()


def test_a_runs_process_is_found_in_its_engine_events(instance):
    result = in_process_job.execute_in_process(instance=instance)
    records = instance.get_records_for_run(
        result.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=50
    ).records
    assert os.getpid() in {engine_event_pid(record) for record in records}


def test_the_test_instance_keeps_its_runs_in_sqlite(instance):
    assert run_storage_is_single_machine(instance)


def test_a_dead_runs_pool_slot_is_seen_and_freed(instance):
    storage = instance.event_log_storage
    storage.set_concurrency_slots("facerec_db", 1)
    storage.claim_concurrency_slot("facerec_db", "run-dead", "gallery")
    state = pool_state(instance, "facerec_db")
    assert state.limit == 1 and [slot.run_id for slot in state.claimed_slots] == ["run-dead"]
    free_pool_slots(instance, "run-dead")
    assert pool_state(instance, "facerec_db").claimed_slots == []


def test_pools_get_the_default_limit_once_and_keep_one_set_by_hand():
    overrides = {"concurrency": {"pools": {"default_limit": 2}}}
    with dg.instance_for_test(overrides=overrides) as instance:
        instance.event_log_storage.set_concurrency_slots("set_by_hand", 5)
        ensure_pool_limits(instance, ["facerec_faces", "set_by_hand"])
        ensure_pool_limits(instance, ["facerec_faces"])  # again: nothing changes
        assert pool_state(instance, "facerec_faces").limit == 2
        assert pool_state(instance, "set_by_hand").limit == 5


class Recording(dg.IOManager):
    seen: dict = {}

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        Recording.seen["code_version"] = stored_code_version(context)

    def load_input(self, context: dg.InputContext):
        Recording.seen["step"] = reading_step(context)
        return 1


@dg.asset(code_version="7", io_manager_key="recording")
def upstream() -> int:
    return 1


@dg.asset(io_manager_key="recording")
def downstream(upstream: int) -> int:
    return upstream


def test_the_io_manager_sees_the_code_version_and_the_reading_step(instance):
    result = dg.materialize(
        [upstream, downstream], resources={"recording": Recording()}, instance=instance
    )
    assert result.success
    assert Recording.seen["step"] == (result.run_id, "downstream")
    # handle_output ran last for downstream, which has no code version; upstream's is checked
    # on its own.
    dg.materialize([upstream], resources={"recording": Recording()}, instance=instance)
    assert Recording.seen["code_version"] == "7"


@dg.asset_check(asset=upstream)
def named_check() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


def test_the_check_executions_of_erased_runs_are_deleted(instance):
    result = dg.materialize(
        [upstream, named_check], resources={"recording": Recording()}, instance=instance
    )
    key = dg.AssetCheckKey(dg.AssetKey("upstream"), "named_check")
    history = instance.event_log_storage.get_asset_check_execution_history(key, limit=10)
    assert [record.run_id for record in history] == [result.run_id]
    delete_check_executions(instance, [result.run_id])
    assert instance.event_log_storage.get_asset_check_execution_history(key, limit=10) == []


def test_a_celery_step_task_names_its_run_and_instance(instance):
    """What dagster-celery's executor packs into an `execute_plan` task (executor._submit_task)
    gives back the run id and an instance on the same storage."""
    from dagster._grpc.types import ExecuteStepArgs
    from dagster._serdes import pack_value

    run = instance.create_run_for_job(in_process_job)
    packed = pack_value(
        ExecuteStepArgs(
            job_origin=dg.reconstructable(in_process_job).get_python_origin(),
            run_id=run.run_id,
            step_keys_to_execute=["nothing"],
            instance_ref=instance.get_ref(),
        )
    )
    run_id, same = step_task_run(packed)
    assert run_id == run.run_id and same.get_run_by_id(run_id).job_name == "in_process_job"
    assert step_task_run(packed)[1] is same  # one instance kept, not one a task
