"""Imported by every worker `facerec worker` starts (Celery's --include): what a step needs
from the process Celery runs it in.

A face stage starts worker processes of its own (core/faces/validation.py WorkerPool, `spawn`)
to use the machine's cores, and stops them before the step ends. Celery's prefork pool runs
each step in a child process that multiprocessing sees as daemonic (which may not start
processes) and whose authentication key is billiard's (which refuses to be pickled, as `spawn`
does). So each child, as it starts, is given what a main process has. A child that dies (killed,
out of memory) takes its face processes with it: they read their work from it and end when it
is gone (test_distributed.py kills one).
"""

import os
from multiprocessing import current_process, process

from celery.signals import worker_process_init


@worker_process_init.connect
def let_steps_start_processes(**_kwargs) -> None:
    # Private, and the one way: what multiprocessing checks and pickles when it starts a process.
    config = current_process()._config  # noqa: SLF001
    config["daemon"] = False
    config["authkey"] = process.AuthenticationString(os.urandom(32))
