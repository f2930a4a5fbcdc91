"""`facerec worker`: a Celery worker that executes the steps of runs on the celery executor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import click

from facerec_pipeline.cli.common import settings_ready, user_errors


@click.command("worker")
@click.option(
    "--queue",
    "queues",
    type=click.Choice(["stages", "faces", "runs"]),
    multiple=True,
    help="What this worker takes: `stages` (candidates, downloads, gallery, publishing), "
    "`faces` (detection, previews, embeddings: the CPU-heavy steps), `runs` (runs the daemon "
    "launches through CeleryRunLauncher, deploy/). Repeatable; default: stages and faces.",
)
@click.option("--name", default=None, help="The worker's name (default: facerec-<queues>-<pid>).")
@click.option(
    "--concurrency",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Steps executed at once, each in a process of its own; a face step also uses the "
    "machine's cores itself (FaceEngineResource.workers).",
)
@user_errors
def worker(queues: tuple[str, ...], name: str | None, concurrency: int) -> None:
    """Start a Celery worker (`dagster-celery worker start`) for this project's runs: same
    FACEREC_CELERY_BROKER, DATABASE_URL (PostgreSQL), DAGSTER_HOME (its instance on PostgreSQL)
    and storage root as the machine that launches the runs. Ctrl-C or SIGTERM stop it once the
    steps it executes have ended."""
    from facerec_pipeline.defs.executors import require_shared_state, worker_command
    from facerec_pipeline.defs.instance import dagster_instance
    from facerec_pipeline.defs.launch import prepare_pools

    settings = settings_ready()
    instance = dagster_instance(settings)
    require_shared_state(settings, instance)
    prepare_pools(instance)
    queues = queues or ("stages", "faces")
    command, env = worker_command(settings, instance, queues, name, concurrency)
    click.echo(f"starting: {' '.join(command)}", err=True)
    # dagster-celery starts `celery` as a child and does not pass signals on: the worker runs in
    # a process group of its own, and SIGTERM or Ctrl-C here reach all of it (Celery then ends
    # the steps it executes before it stops).
    process = subprocess.Popen(command, env=env, start_new_session=True)

    def pass_on(signum: int, _frame) -> None:
        os.killpg(process.pid, signum)

    signal.signal(signal.SIGTERM, pass_on)
    signal.signal(signal.SIGINT, pass_on)
    code = process.wait()
    sys.exit(128 - code if code < 0 else code)  # killed by a signal: 128 + its number, as a shell
