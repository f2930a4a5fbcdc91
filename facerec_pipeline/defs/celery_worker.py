"""Imported by every worker `facerec worker` starts (Celery's --include): what a step needs
from the process Celery runs it in, and the word that a live worker still holds its steps.

A face stage starts worker processes of its own (core/faces/validation.py WorkerPool, `spawn`)
to use the machine's cores, and stops them before the step ends. Celery's prefork pool runs
each step in a child process that multiprocessing sees as daemonic (which may not start
processes) and whose authentication key is billiard's (which refuses to be pickled, as `spawn`
does). So each child, as it starts, is given what a main process has. A child that dies (killed,
out of memory) takes its face processes with it: they read their work from it and end when it
is gone (test_distributed.py kills one).
"""

import os
import time
from multiprocessing import current_process, process

from celery.signals import worker_process_init, worker_ready
from celery.worker import state

from facerec_pipeline.defs.executors import restore_interval


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
