"""Runs that died: find them, free what they held, close their history; and say what a live run
is waiting for.

A run killed with `kill -9` (or lost with its machine) stays STARTED in Dagster's run storage and
keeps its slot of a stage pool (`facerec_db`, `facerec_faces`), so every later run of the data
root would wait for it forever. Dagster records the pid of the process that executes a run (an
engine event, for runs in process and for run workers the daemon launches); the process that
orchestrates a run also tags it with its host and pid (`facerec run` as it starts the run, the
executor of a run the daemon launches: executors.RunTaggingExecutor).
A run is dead when that process is gone from this host (or the pid now belongs to a younger
process). Recovery marks it failed, frees its pool slots, closes its `training_sessions` row with
the reason and removes the half-written files (`*.partial`) it left. It runs before every
`facerec run`, from `facerec history`, and from a daemon sensor every minute.

Runs whose host is not known are judged only on a single-machine instance (SQLite run storage).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import psutil
from sqlalchemy import select

from facerec_pipeline.app.run_history import RunFacts, write_run
from facerec_pipeline.db.engine import database_down, session_scope
from facerec_pipeline.db.models import Domain, Gallery, TrainingSession
from facerec_pipeline.defs.dagster_internals import (
    engine_event_pid,
    free_pool_slots,
    pool_state,
    run_storage_is_single_machine,
)
from facerec_pipeline.defs.jobs import DOMAIN_PIPELINE_JOB
from facerec_pipeline.defs.policy import STAGE_POOLS
from facerec_pipeline.defs.runs.causes import forget_cause, left_cause
from facerec_pipeline.defs.runs.events import PARTITION_TAG, record_run
from facerec_pipeline.settings import Settings

HOST_TAG = "facerec/host"
PID_TAG = "facerec/pid"
INVOCATION_TAG = "facerec/invocation"
HISTORY_LOOKBACK = 200  # recent domain runs checked for a missing history row
WATCHED_STATUSES = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


class RunInProgress(RuntimeError):
    """Another live run of the same domain holds it."""


@dataclass(frozen=True)
class RunProcess:
    run_id: str
    domain: str | None
    pid: int | None
    since: float | None  # when the pid was recorded (epoch seconds)
    host: str | None


def run_tags() -> dict[str, str]:
    """Tags `facerec run` puts on its runs so a later process can tell whether they live."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def process_of(instance: dg.DagsterInstance, run: dg.DagsterRun) -> RunProcess:
    """The pid Dagster recorded for the run's process (its latest engine event with a pid), or
    the pid tag; None when neither exists yet."""
    pid, since = None, None
    records = instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, ascending=False, limit=50
    ).records
    for record in records:
        pid = engine_event_pid(record)
        if pid is not None:
            since = record.event_log_entry.timestamp
            break
    host, tagged_pid = own_process_tags(instance, run)
    if pid is None and tagged_pid is not None:
        pid = int(tagged_pid)
    return RunProcess(run.run_id, run.tags.get(PARTITION_TAG), pid, since, host)


def own_process_tags(instance: dg.DagsterInstance, run: dg.DagsterRun) -> tuple[str | None, ...]:
    """The run's host and pid tags, unless they are its parent's: Dagster copies a run's tags to
    the run that re-executes it (the UI's re-execution), and those name the parent's process
    until the new run's own orchestrator tags it. A parent since deleted cannot tell: none."""
    tags = run.tags.get(HOST_TAG), run.tags.get(PID_TAG)
    if run.parent_run_id is None:
        return tags
    parent = instance.get_run_by_id(run.parent_run_id)
    if parent is None or (parent.tags.get(HOST_TAG), parent.tags.get(PID_TAG)) == tags:
        return None, None
    return tags


def is_alive(pid: int, since: float | None) -> bool:
    """The process exists and is older than the record of it (not a reused pid)."""
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and (
            since is None or process.create_time() <= since + 1.0
        )
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return False


def judged_here(instance: dg.DagsterInstance, process: RunProcess) -> bool:
    """Whether this machine can tell if the run's process lives."""
    if process.host is not None:
        return process.host == socket.gethostname()
    return run_storage_is_single_machine(instance)


def is_dead(instance: dg.DagsterInstance, process: RunProcess) -> bool:
    """The run's process is known to be gone: started (a pid), judged on this machine, not
    alive. A run not started yet, or on another machine, is not judged dead."""
    return (
        process.pid is not None
        and judged_here(instance, process)
        and not is_alive(process.pid, process.since)
    )


def dead_runs(instance: dg.DagsterInstance) -> list[RunProcess]:
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=WATCHED_STATUSES))
    return [p for p in (process_of(instance, run) for run in runs) if is_dead(instance, p)]


def recover_dead_runs(instance: dg.DagsterInstance, settings: Settings) -> list[str]:
    """Mark dead runs failed, free their pool slots, close their history and remove their
    half-written files. Returns one line per run recovered."""
    lines = []
    for process in dead_runs(instance):
        run = instance.get_run_by_id(process.run_id)
        if run is None or run.status not in WATCHED_STATUSES:
            continue  # another process recovered it meanwhile
        cause = left_cause(settings, run.tags.get(INVOCATION_TAG))
        how = f"stopped: {cause}" if cause else "is gone: killed or crashed"
        reason = (
            f"the run's process (pid {process.pid}) {how}; marked "
            f"failed by facerec at {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"
        )
        instance.report_run_failed(run, message=reason)
        free_pool_slots(instance, process.run_id)
        removed = remove_partial_files(settings.storage_dir)
        removed += remove_unrecorded_batches(settings, process.run_id)
        record_run(instance, process.run_id, settings)
        forget_cause(settings, run.tags.get(INVOCATION_TAG))
        lines.append(
            f"run {process.run_id[:8]} of {process.domain or '?'}: {reason}; pool "
            f"slots freed, {removed} half-written file(s) removed"
        )
    lines += close_orphaned_history(instance, settings)
    return lines


def close_orphaned_history(instance: dg.DagsterInstance, settings: Settings) -> list[str]:
    """History rows still `running` whose Dagster run has ended (rewritten from its events) or
    no longer exists (closed as failed, saying so); and recent domain runs that ended without a
    history row (their process could not write it: the database was locked or unreachable)."""
    lines = []
    ended = instance.get_runs(
        filters=dg.RunsFilter(
            statuses=[
                dg.DagsterRunStatus.SUCCESS,
                dg.DagsterRunStatus.FAILURE,
                dg.DagsterRunStatus.CANCELED,
            ]
        ),
        limit=HISTORY_LOOKBACK,
    )
    domain_runs = {run.run_id: run for run in ended if PARTITION_TAG in run.tags}
    with session_scope(settings.database_url) as session:
        running = session.scalars(
            select(TrainingSession).where(TrainingSession.status == "running")
        ).all()
        orphans = [(row.run_id, row.domain, row.started_at) for row in running]
        recorded = set(
            session.scalars(
                select(TrainingSession.run_id).where(TrainingSession.run_id.in_(domain_runs))
            )
        )
        known = set(session.scalars(select(Domain.code)))
    for run_id, run in domain_runs.items():
        if run_id in recorded or run.tags[PARTITION_TAG] not in known:
            continue
        if record_run(instance, run_id, settings):
            lines.append(
                f"run {run_id[:8]} of {run.tags[PARTITION_TAG]}: history written (the run ended "
                f"{run.status.value} without writing it)"
            )
    for run_id, domain, started_at in orphans:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.status in WATCHED_STATUSES + [dg.DagsterRunStatus.QUEUED]:
            continue
        if run is not None:
            record_run(instance, run_id, settings)
            ended = f"ended {run.status.value}"
        else:
            ended = "was deleted from Dagster"
            facts = RunFacts(
                domain=domain,
                run_id=run_id,
                status="FAILURE",
                error=f"the run {ended} without closing its history",
                started_at=started_at,
                finished_at=datetime.now(UTC),
            )
            with session_scope(settings.database_url) as session:
                write_run(session, facts)
        lines.append(f"run {run_id[:8]} of {domain}: history closed ({ended})")
    return lines


# core/files.partial_path: `.<name>.<pid>.<thread>.partial`; `.<name>.<pid>.partial` is the
# form written before threads were named.
PARTIAL_FILES = (
    re.compile(r"^\..+\.(\d+)\.\d+\.partial$"),
    re.compile(r"^\..+\.(\d+)\.partial$"),
)


def partial_writer(name: str) -> int | None:
    """The pid of the process that writes a file of partial_path's form (None: not one)."""
    for form in PARTIAL_FILES:
        found = form.match(name)
        if found:
            return int(found.group(1))
    return None


def remove_partial_files(storage_dir: Path) -> int:
    """Half-written files and folders dead processes left, found by their form: a file of
    `partial_path`'s form whose writer (the pid in its name) no longer lives on this machine,
    whichever process that was (the run's, or one of its worker processes killed with it),
    and `.batch_NNNN.partial` (gallery batches, written by the run that is being recovered).
    A file a live process is writing is left alone."""
    removed = 0
    for path in list(storage_dir.rglob("*.partial")):
        writer = partial_writer(path.name)
        dead = writer is not None and not psutil.pid_exists(writer)
        if (dead or path.name.startswith(".batch_")) and path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed += 1
    return removed


def remove_unrecorded_batches(settings: Settings, run_id: str) -> int:
    """Batch folders the dead run wrote but no gallery version records (it died before its
    database transaction committed)."""
    with session_scope(settings.database_url) as session:
        recorded = {
            path for paths in session.scalars(select(Gallery.batch_paths)) for path in paths
        }
    removed = 0
    for metadata in (settings.storage_dir / "recognized_faces_batched").glob(
        "*/batch_*/batch_metadata.json"
    ):
        batch = metadata.parent
        try:
            written_by = json.loads(metadata.read_text()).get("run_id")
        except (OSError, ValueError):
            continue
        if written_by == run_id and settings.relative(batch) not in recorded:
            shutil.rmtree(batch)
            removed += 1
    return removed


def _where_and_stop(run: dg.DagsterRun, process: RunProcess) -> tuple[str, str]:
    """Where a live run is, and how an operator stops it."""
    if not process.pid:
        return run.status.value.lower(), "Terminate on the run's page in the Dagster UI"
    host = process.host or "this machine"
    return f"pid {process.pid} on {host}", f"`kill {process.pid}` on {host}"


def refuse_concurrent_run(instance: dg.DagsterInstance, domain: str) -> None:
    """A second live run of the same domain would race the first: say which one holds it."""
    for run in instance.get_runs(
        filters=dg.RunsFilter(
            statuses=WATCHED_STATUSES + [dg.DagsterRunStatus.QUEUED],
            job_name=DOMAIN_PIPELINE_JOB,
            tags={PARTITION_TAG: domain},
        )
    ):
        where, stop = _where_and_stop(run, process_of(instance, run))
        raise RunInProgress(
            f"domain {domain!r} already has run {run.run_id} in progress ({where}); wait for it "
            f"to finish, or stop it ({stop}): the next `facerec run` marks a killed run failed "
            "and frees what it held"
        )


def refuse_while_runs_live(instance: dg.DagsterInstance, action: str) -> None:
    """`action` (a restore) must not run under a live run of this storage root, of any job. A
    run whose process is gone does not refuse it (the next run recovers it); nothing here reads
    the facerec database, which may be the damaged one being restored."""
    for run in instance.get_runs(
        filters=dg.RunsFilter(statuses=WATCHED_STATUSES + [dg.DagsterRunStatus.QUEUED])
    ):
        process = process_of(instance, run)
        if is_dead(instance, process):
            continue
        where, stop = _where_and_stop(run, process)
        domain = run.tags.get(PARTITION_TAG)
        raise RunInProgress(
            f"run {run.run_id} ({run.job_name}{f' of {domain!r}' if domain else ''}) is in "
            f"progress ({where}): {action} under it would lose what it writes or break it; wait "
            f"for it to finish or stop it ({stop}), then try again"
        )


def domain_of(instance: dg.DagsterInstance, run_id: str) -> str:
    run = instance.get_run_by_id(run_id)
    return run.tags.get(PARTITION_TAG, "?") if run else "deleted run"


def watch_pool(
    instance: dg.DagsterInstance,
    settings: Settings,
    invocation: str,
    echo: Callable[[str], None],
    stop,
    interval: float = 5.0,
    repeat_every: float = 60.0,
) -> None:
    """Until `stop` is set: when the run tagged `invocation` waits for a slot of a stage pool
    (the database's or the face stages'), say who holds it (once, then every `repeat_every`
    seconds), and recover the holder if its process has died meanwhile."""
    try:
        _watch_pool(instance, settings, invocation, echo, stop, interval, repeat_every)
    except Exception as error:  # the run itself reports an unreachable database
        if database_down(error) is None:
            echo(f"  stopped watching the stage pools: {type(error).__name__}: {error}")


def _watch_pool(instance, settings, invocation, echo, stop, interval, repeat_every) -> None:
    last_said = dict.fromkeys(STAGE_POOLS, -repeat_every)
    while not stop.wait(interval):
        runs = instance.get_runs(filters=dg.RunsFilter(tags={INVOCATION_TAG: invocation}))
        if not runs:
            continue
        run_id = runs[0].run_id
        for pool, guarded in STAGE_POOLS.items():
            info = pool_state(instance, pool)
            waiting = any(
                step.run_id == run_id and step.assigned_timestamp is None
                for step in info.pending_steps
            )
            holders = sorted({slot.run_id for slot in info.claimed_slots} - {run_id})
            if not (waiting and holders):
                continue
            for line in recover_dead_runs(instance, settings):
                echo(f"  recovered: {line}")
            if time.monotonic() - last_said[pool] >= repeat_every:
                last_said[pool] = time.monotonic()
                who = ", ".join(
                    f"{holder[:8]} ({domain_of(instance, holder)})" for holder in holders
                )
                echo(
                    f"  waiting for the {guarded} pool {pool!r} (limit {info.limit}), held by run "
                    f"{who}; it goes on when that run's current stage ends"
                )
