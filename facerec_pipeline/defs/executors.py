"""Where a run's steps execute: on the machine that runs it (the default), or on Celery workers
(`dagster-celery`, a Redis broker) that any number of machines start with `facerec worker`.

On Celery each stage is a step a worker takes from a queue: the face stages (detection, previews,
embeddings) from `facerec_faces`, the others from `facerec_stages`, so workers for the CPU-heavy
face work are started and sized apart from the rest. Workers on several machines must see the
same state: the project's tables and Dagster's instance on PostgreSQL, and one storage root they
all mount. What is missing is refused before a run starts, with the fix (require_shared_state,
require_workers), never found out by a run that waits for ever.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import dagster as dg
import yaml

from facerec_pipeline.db.engine import is_postgresql
from facerec_pipeline.defs.dagster_internals import run_storage_is_single_machine
from facerec_pipeline.defs.runs.recovery import run_tags
from facerec_pipeline.settings import ExecutorSettings, Settings, SettingsError, masked_url

STAGES_QUEUE = "facerec_stages"
FACES_QUEUE = "facerec_faces"
# The queue of CeleryRunLauncher (deploy/dagster.yaml): runs launched by the daemon are
# orchestrated by workers of their own, so an orchestrating run never holds a step worker.
RUNS_QUEUE = "facerec_runs"
QUEUES = {"stages": STAGES_QUEUE, "faces": FACES_QUEUE, "runs": RUNS_QUEUE}
# Dagster's tag that sends a step to a Celery queue.
CELERY_QUEUE_TAG = "dagster-celery/queue"


class DistributedSetupError(SettingsError):
    """The celery executor cannot run with these settings; the message names the fix."""


def celery_config(executor: ExecutorSettings) -> dict:
    """The celery executor's configuration (the same block `facerec worker` gives its workers):
    the broker and result backend, steps without a queue tag on `facerec_stages`, and one task
    taken at a time (a step can last minutes)."""
    try:
        import dagster_celery  # noqa: F401
    except ImportError as error:
        raise DistributedSetupError(
            f"the celery executor needs dagster-celery ({error}): pip install -e '.[celery]' "
            "(make install does)"
        ) from error
    if not executor.broker:
        raise DistributedSetupError(
            "FACEREC_CELERY_BROKER is not set: the celery executor needs the URL of the broker "
            "the workers listen on (e.g. redis://127.0.0.1:6379/0)"
        )
    from dagster_celery.config import DEFAULT_CONFIG, TASK_EXECUTE_PLAN_NAME

    return {
        "broker": executor.broker,
        "backend": executor.backend or executor.broker,
        "config_source": {
            "task_default_queue": STAGES_QUEUE,
            "worker_prefetch_multiplier": 1,
            # A result nobody read (a run that died) is dropped after a day.
            "result_expires": 86400,
            # A step's task is acknowledged when it ends, not when a worker takes it. A worker
            # that dies as a whole (its machine lost, its main process killed) leaves its steps
            # unacknowledged on the broker; every worker puts back on their queue the tasks held
            # `redeliver_after` seconds without word from their worker (a live worker says it
            # holds them: celery_worker.keep_taken_steps), and another takes them. The step
            # runs again there, as Dagster's retry would run it. A step whose process dies
            # alone is reported as that step's failure (WorkerLostError), not run again. Runs
            # (CeleryRunLauncher's tasks) keep the acknowledgement on receipt.
            "task_annotations": {TASK_EXECUTE_PLAN_NAME: {"acks_late": True}},
            # A worker that loses the broker puts the steps it runs back on their queue (Kombu
            # does on closing the connection): it stops them too, so that the worker that takes
            # one again is the only one running it. Celery marks them for retry, which the
            # orchestrator waits through; with the result backend down too, a step may be
            # marked revoked instead and its run fail (README).
            "worker_cancel_long_running_tasks_on_connection_loss": True,
            "broker_transport_options": {
                **DEFAULT_CONFIG["broker_transport_options"],
                "visibility_timeout": executor.redeliver_after,
                # Each worker looks for steps to give again every few seconds (not Kombu's
                # default of every 100).
                "unacked_restore_interval": restore_interval(executor.redeliver_after),
                "unacked_restore_throttle": 1,
            },
        },
    }


def restore_interval(redeliver_after: int) -> int:
    """Seconds between a worker's looks for steps to give again, and between its words that it
    still holds its own: a few within `redeliver_after`, at most every 10 s."""
    return max(1, min(10, redeliver_after // 5))


def executor_of(settings: Settings) -> dg.ExecutorDefinition:
    """The executor of the project's jobs: Dagster's default (one process per step for runs the
    daemon launches; `facerec run` executes in its own process), or the celery executor. Either
    first tags its run with the process that orchestrates it (RunTaggingExecutor)."""
    if settings.executor.name != "celery":
        return tagging_runs(dg.multi_or_in_process_executor)
    config = celery_config(settings.executor)
    from dagster_celery import celery_executor

    return tagging_runs(celery_executor).configured(config, name="celery")


class RunTaggingExecutor(dg.Executor):
    """`inner`, which first tags its run with the host and pid of the process that orchestrates
    it (recovery.run_tags). `facerec run` tags its runs as it starts them; the runs the daemon
    launches (sensors, schedules, the UI) are tagged here, by the run worker that orchestrates
    them, so that recovery on that machine can tell a dead one on an instance that several
    machines share (Dagster records the pid, not the host)."""

    def __init__(self, inner: dg.Executor) -> None:
        self._inner = inner

    def execute(self, plan_context, execution_plan):
        plan_context.instance.add_run_tags(plan_context.run_id, run_tags())
        yield from self._inner.execute(plan_context, execution_plan)

    @property
    def retries(self):
        return self._inner.retries

    @property
    def step_dependency_config(self):
        return self._inner.step_dependency_config

    def __getattr__(self, name: str):
        if name == "_inner":  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self._inner, name)  # what the inner executor's own loop asks of it


def tagging_runs(executor: dg.ExecutorDefinition) -> dg.ExecutorDefinition:
    """`executor` (same name, configuration and requirements) as a RunTaggingExecutor."""
    return dg.ExecutorDefinition(
        name=executor.name,
        config_schema=executor.config_schema,
        requirements=executor.get_requirements,
        executor_creation_fn=lambda init_context: RunTaggingExecutor(
            executor.executor_creation_fn(init_context)
        ),
        description=executor.description,
    )


def require_shared_state(settings: Settings, instance: dg.DagsterInstance) -> None:
    """Refuse the celery executor where workers on other machines could not see the state: a
    SQLite project database, or a Dagster instance that keeps its runs in SQLite."""
    celery_config(settings.executor)
    if not is_postgresql(settings.database_url):
        raise DistributedSetupError(
            f"the celery executor needs PostgreSQL: workers on other machines cannot share the "
            f"SQLite database {settings.database_label}; set DATABASE_URL=postgresql+psycopg2://"
            "user:password@host/facerec (README: Running on several machines), or run in process "
            "(FACEREC_EXECUTOR unset, no --executor)"
        )
    if run_storage_is_single_machine(instance):
        raise DistributedSetupError(
            f"the celery executor needs Dagster's instance on PostgreSQL: the instance in "
            f"{instance.root_directory} keeps its runs in SQLite, which workers on other machines "
            "cannot read; give its dagster.yaml a `storage: postgres:` block (deploy/dagster.yaml "
            "is an example)"
        )


def require_workers(settings: Settings, queues: tuple[str, ...], timeout: float = 5.0) -> None:
    """Refuse a run whose steps no worker would take: a broker that does not answer, or one of
    `queues` (their names in QUEUES) no worker listens on (its steps would wait for ever)."""
    config = celery_config(settings.executor)
    from dagster_celery.executor import CeleryExecutor
    from dagster_celery.make_app import make_app

    app = make_app(CeleryExecutor.for_cli(**config).app_args())
    broker = masked_url(config["broker"])
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
        answers = app.control.inspect(timeout=timeout).active_queues() or {}
    except Exception as error:  # noqa: BLE001 - kombu raises the transport's own errors
        raise DistributedSetupError(
            f"the Celery broker {broker} does not answer ({error}); start it (redis-server) or "
            "fix FACEREC_CELERY_BROKER"
        ) from error
    listened = {queue["name"] for queues_of in answers.values() for queue in queues_of}
    for name in queues:
        if QUEUES[name] not in listened:
            raise DistributedSetupError(
                f"no Celery worker listens on queue {QUEUES[name]!r} of broker {broker}: start one "
                f"with `facerec worker --queue {name}` (same FACEREC_CELERY_BROKER, DATABASE_URL, "
                "DAGSTER_HOME and storage)"
            )


def worker_command(
    settings: Settings,
    instance: dg.DagsterInstance,
    queues: tuple[str, ...],
    name: str | None,
    concurrency: int,
) -> tuple[list[str], dict[str, str]]:
    """The `dagster-celery worker start` command line (and its environment) of a worker that
    listens on `queues` and runs `concurrency` steps at a time, each in a process of its own
    (Celery's prefork pool: a step that dies, killed or out of memory, is reported as a failure
    of that step, naming it). The worker's configuration is written under the instance's home."""
    config_file = Path(instance.root_directory) / "celery" / "worker.yaml"
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config = {"execution": {"config": celery_config(settings.executor)}}
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    bin_dir = Path(sys.executable).parent
    command = [
        str(bin_dir / "dagster-celery"),
        "worker",
        "start",
        "--app",
        "dagster_celery.app",
        "--config-yaml",
        str(config_file),
        # One -q with the queues joined: Celery keeps only the last of several -Q options.
        "--queue",
        ",".join(QUEUES[queue] for queue in queues),
        "--name",
        name or f"facerec-{'-'.join(queues)}-{os.getpid()}",
        "--includes",
        "facerec_pipeline.defs.celery_worker",
        "--",
        "--pool",
        "prefork",
        "--concurrency",
        str(concurrency),
    ]
    env = dict(os.environ, FACEREC_EXECUTOR="celery")
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"  # dagster-celery starts `celery`
    return command, env
