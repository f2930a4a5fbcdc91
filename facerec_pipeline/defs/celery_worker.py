"""Imported by every worker `facerec worker` starts (Celery's --include): what a step needs
from the process Celery runs it in, the word that a live worker still holds its steps, and the
steps of ended runs left unexecuted.

A face stage starts worker processes of its own (core/faces/validation.py WorkerPool, `spawn`)
to use the machine's cores, and stops them before the step ends. Celery's prefork pool runs
each step in a child process that multiprocessing sees as daemonic (which may not start
processes) and whose authentication key is billiard's (which refuses to be pickled, as `spawn`
does). So each child, as it starts, is given what a main process has. A child that dies (killed,
out of memory) takes its face processes with it: they read their work from it and end when it
is gone (test_distributed.py kills one).
"""

import logging
import os
import time
from multiprocessing import current_process, process

from celery.signals import task_received, worker_process_init, worker_ready
from celery.worker import state
from dagster_celery.config import TASK_EXECUTE_PLAN_NAME

from facerec_pipeline.defs.dagster_internals import step_task_run
from facerec_pipeline.defs.executors import restore_interval

logger = logging.getLogger(__name__)


@worker_process_init.connect
def let_steps_start_processes(**_kwargs) -> None:
    # Private, and the one way: what multiprocessing checks and pickles when it starts a process.
    config = current_process()._config  # noqa: SLF001
    config["daemon"] = False
    config["authkey"] = process.AuthenticationString(os.urandom(32))


@worker_ready.connect
def keep_taken_steps(sender, **_kwargs) -> None:
    """Every few seconds, tell the broker that this worker still holds the steps it took.

    A step's task is acknowledged when it ends (executors.celery_config), and Redis gives a task
    held longer than its visibility timeout to another worker, as if its worker had died. A
    step may rightly last longer than that (a large download), and must not then run twice at
    once; so a live worker renews the time its unacknowledged tasks were taken, and only the
    tasks of a worker that stopped (killed, its machine lost) reach the timeout. Runs in the
    worker's main process, on its event loop's timer (`sender` is the worker's consumer).
    """
    options = sender.app.conf.broker_transport_options or {}
    if "visibility_timeout" in options:
        interval = restore_interval(int(options["visibility_timeout"]))
        sender.timer.call_repeatedly(interval, renew_taken_steps)


def renew_taken_steps() -> None:
    """The broker's record of when each unacknowledged task of this worker was taken, set to
    now (Kombu's Redis transport: the `unacked_index` sorted set, scored by time taken; a task
    already acknowledged or given away is left absent)."""
    for request in [*state.active_requests, *state.reserved_requests]:
        message = request.message
        channel = message.channel
        if message.acknowledged or not hasattr(channel, "unacked_index_key"):
            continue
        try:
            with channel.conn_or_acquire() as client:
                client.zadd(channel.unacked_index_key, {message.delivery_tag: time.time()}, xx=True)
        except channel.connection_errors:
            return  # the broker is away: the worker reconnects, and the next tick renews


@task_received.connect
def skip_steps_of_ended_runs(request, **_kwargs) -> None:
    """A step whose run has ended (failed, cancelled, deleted) is not executed: Celery takes its
    task as revoked (acknowledged and marked so, never run). Such a task is one given again
    after its worker died, once recovery had closed the run, or one a stopped run left on the
    queue; executed, it would run for a run nobody follows. Runs in the worker's main process
    as the task arrives, before any step process takes it (one query to Dagster's run storage
    through one instance the worker keeps open). Where that query fails, Celery logs the error
    and the step runs, as it would without this check."""
    if request.name != TASK_EXECUTE_PLAN_NAME:
        return
    run_id, instance = step_task_run(request.kwargs["execute_step_args_packed"])
    run = instance.get_run_by_id(run_id)
    if run is None or run.is_finished:
        ended = "is gone" if run is None else f"ended ({run.status.value})"
        logger.warning("step task %s not executed: its run %s %s", request.id, run_id, ended)
        state.revoked.add(request.id)
