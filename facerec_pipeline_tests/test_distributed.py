"""Several machines, stood in for by one: Redis (Debian's redis-server) and PostgreSQL on
127.0.0.1, and two Celery workers started with `facerec worker` as processes of their own, one
for the stage steps and one for the face steps. Domains are built with `facerec run --executor
celery` and compared with the same folder built in process; a worker's step process, and a
worker as a whole, are killed with SIGKILL in the middle of a step."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import numpy as np
import psutil
import pytest
from sqlalchemy import text

from facerec_pipeline.db.engine import dispose_engines, get_engine
from facerec_pipeline.defs.assembly import build_definitions
from facerec_pipeline.defs.executors import (
    FACES_QUEUE,
    DistributedSetupError,
    require_workers,
)
from facerec_pipeline.defs.runs.recovery import HOST_TAG, PID_TAG, process_of
from facerec_pipeline.settings import ExecutorSettings, Settings, SettingsError
from facerec_pipeline_tests.conftest import build_folder, cli_env
from facerec_pipeline_tests.postgres_server import DAGSTER_YAML
from facerec_pipeline_tests.redis_server import RedisUnavailable, redis_binary, redis_server

FACEREC = [sys.executable, "-m", "facerec_pipeline.cli.main"]
STAGE_STEPS = {"candidates", "raw_images", "gallery", "production_gallery"}
FACE_STAGES = ("detected_faces", "previews", "face_embeddings")
# Two photos a batch: 4 photos, 8 previews (each photo and its face), 4 faces to embed.
BATCH_SIZE = 2
BATCHES = {"detected_faces": 2, "previews": 4, "face_embeddings": 2}
# The steps of the face stages: a plan and a merge each (database pool, stage workers) and
# their batches (face pool, face workers; two at a time, as `dagster instance concurrency set`
# sets it below).
PLAN_AND_MERGE = {f"{stage}.{stage}_{part}" for stage in FACE_STAGES for part in ("plan", "merge")}
BATCH_STEPS = {
    f"{stage}.{stage}_batch[{number:05d}]"
    for stage, count in BATCHES.items()
    for number in range(1, count + 1)
}
POOL_LIMITS = {"facerec_db": 1, "facerec_faces": 2}
FIRST_BATCH = "detected_faces.detected_faces_batch[00001]"
POOLS = {"facerec_db": STAGE_STEPS | PLAN_AND_MERGE, "facerec_faces": BATCH_STEPS}
# Seconds a step of a worker that stopped answering waits on the broker before another worker
# is given it (FACEREC_CELERY_REDELIVER_AFTER; 300 by default).
REDELIVER_AFTER = 15


def facerec(env: dict[str, str], *args, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*FACEREC, *map(str, args)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def celery_run(env: dict[str, str], code: str) -> subprocess.Popen:
    """`facerec run --domain CODE --executor celery`, started (its output piped, as text)."""
    return subprocess.Popen(
        [*FACEREC, "run", "--domain", code, "--executor", "celery"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_id_of(output: str) -> str:
    return re.search(r"run ([0-9a-f-]{36}) (?:succeeded|FAILED)", output).group(1)


@pytest.fixture(scope="module")
def cluster(pg, tmp_path_factory, models_dir, photos, composed):
    """Redis, PostgreSQL (facerec's tables and Dagster's instance), a folder domain, face
    stages in batches of two photos, and two workers: `stages` and `faces`, each running up to
    two steps at once; the face pool admits two batches at a time."""
    base = tmp_path_factory.mktemp("distributed")
    env = cli_env(base, models_dir)
    home = Path(env["DAGSTER_HOME"])
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    folder = build_folder(
        base / "photos",
        {
            "barack_obama": [photos / "obama.jpg", photos / "obama2.jpg"],
            "joe_biden": [photos / "biden.jpg"],
            "eileen_collins": [composed["astronaut.png"]],
        },
    )
    try:
        redis_binary()
    except RedisUnavailable as error:
        pytest.fail(str(error), pytrace=False)
    with redis_server(base) as broker, pytest.MonkeyPatch.context() as patch:
        env |= {
            "DATABASE_URL": pg.create_database("distributed"),
            "FACEREC_TEST_DAGSTER_PG_URL": pg.create_database("distributed_dagster"),
            "FACEREC_CELERY_BROKER": broker,
            "FACEREC_FACE_BATCH_SIZE": str(BATCH_SIZE),
            "FACEREC_CELERY_REDELIVER_AFTER": str(REDELIVER_AFTER),
        }
        patch.setenv("FACEREC_TEST_DAGSTER_PG_URL", env["FACEREC_TEST_DAGSTER_PG_URL"])
        for code in ("demo", "other", "killed", "orphaned", "abandoned", "stale"):
            added = facerec(
                env, "domains", "add", code, "--name", code, "--source", "folder", "--path", folder
            )
            assert added.returncode == 0, added.stderr
        # Before any worker: a run is refused at once, naming the command that starts one.
        refused = facerec(env, "run", "--domain", "demo", "--executor", "celery")
        assert refused.returncode == 1
        assert "no Celery worker listens on queue 'facerec_stages'" in refused.stderr
        assert "`facerec worker --queue stages`" in refused.stderr
        workers = {queue: start_worker(env, base, queue) for queue in ("stages", "faces")}
        try:
            wait_for_workers(env, workers, base)
            for pool, limit in POOL_LIMITS.items():  # as README says to size the pools
                subprocess.run(
                    [
                        str(Path(sys.executable).parent / "dagster"),
                        "instance",
                        "concurrency",
                        "set",
                        pool,
                        str(limit),
                    ],
                    env={**os.environ, **env},
                    check=True,
                    capture_output=True,
                )
            with dg.DagsterInstance.from_config(str(home)) as instance:
                yield {
                    "env": env,
                    "base": base,
                    "folder": folder,
                    "instance": instance,
                    "workers": workers,
                }
        finally:
            for worker in workers.values():
                worker.send_signal(signal.SIGTERM)
            for worker in workers.values():
                try:
                    worker.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(worker.pid, signal.SIGKILL)
            dispose_engines()


def start_worker(
    env: dict[str, str], base: Path, queue: str, name: str | None = None
) -> subprocess.Popen:
    """`facerec worker --queue QUEUE`, two steps at a time, logging to worker-NAME.log."""
    name = name or queue
    return subprocess.Popen(
        [*FACEREC, "worker", "--queue", queue, "--name", name, "--concurrency", "2"],
        env={**os.environ, **env},
        stdout=(base / f"worker-{name}.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def poll_until(seconds: float, poll: Callable, failure: str | Callable[[], str], every=0.5):
    """The first true value `poll()` gives within `seconds` (asked every `every` seconds);
    past them the test fails with `failure` (or what it returns then)."""
    deadline = time.monotonic() + seconds
    while not (got := poll()):
        assert time.monotonic() < deadline, failure() if callable(failure) else failure
        time.sleep(every)
    return got


def wait_until_ready(base: Path, name: str) -> None:
    """Until the worker NAME's log says it is ready (Celery's `NAME@host ready.`)."""
    log = base / f"worker-{name}.log"
    poll_until(
        180,
        lambda: f"{name}@" in (said := log.read_text()) and " ready." in said,
        lambda: f"worker {name} did not start:\n{log.read_text()}",
    )


def wait_for_workers(env: dict[str, str], workers: dict, base: Path) -> None:
    """Until a worker listens on each queue (as `facerec run` checks before it starts)."""
    settings = Settings.from_env(env)
    deadline = time.monotonic() + 180
    while True:
        try:
            require_workers(settings, ("stages", "faces"), timeout=1.0)
            return
        except DistributedSetupError:
            for queue, worker in workers.items():
                log = (base / f"worker-{queue}.log").read_text()
                assert worker.poll() is None, f"the {queue} worker ended:\n{log}"
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def step_events(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict]:
    """Each step's (last) start and end time, the pid of the process that started it and how
    many times it started."""
    steps: dict[str, dict] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or not event.step_key:
            continue
        step = steps.setdefault(event.step_key, {})
        if event.event_type == dg.DagsterEventType.STEP_START:
            step.update(start=entry.timestamp, pid=event.pid, starts=step.get("starts", 0) + 1)
        elif event.event_type in (
            dg.DagsterEventType.STEP_SUCCESS,
            dg.DagsterEventType.STEP_FAILURE,
        ):
            step["end"] = entry.timestamp
    return steps


def gallery_of(database_url: str, code: str) -> dict:
    """A domain's people, accepted faces and embeddings, by name and photo (no ids)."""
    with get_engine(database_url).connect() as connection:
        people = connection.execute(
            text("SELECT full_name FROM people WHERE domain = :d ORDER BY full_name"), {"d": code}
        ).scalars()
        accepted = connection.execute(
            text(
                "SELECT p.full_name, f.image_sha256, e.embedding FROM faces f "
                "JOIN people p ON p.id = f.person_id "
                "JOIN face_embeddings e ON e.image_sha256 = f.image_sha256 "
                "WHERE f.domain = :d AND f.status = 'accepted'"
            ),
            {"d": code},
        ).all()
    return {
        "people": list(people),
        "faces": {(name, sha): np.frombuffer(vector, "<f4") for name, sha, vector in accepted},
    }


def answer(env: dict[str, str], code: str, probe: Path) -> dict:
    """What `facerec recognize` says of the probe's face: who, the decision and the nearest
    matches, numbers to 4 decimals."""
    recognized = facerec(env, "recognize", "--domain", code, "--json", probe)
    assert recognized.returncode == 0, recognized.stderr
    ((face, *_),) = [entry["faces"] for entry in json.loads(recognized.stdout)]
    return rounded({key: face[key] for key in ("identity", "decision", "matches")})


def worker_processes(worker: subprocess.Popen) -> set[int]:
    """The processes of a `facerec worker`: dagster-celery, Celery and its pool's children."""
    return {child.pid for child in psutil.Process(worker.pid).children(recursive=True)}


def parent_of(pid: int) -> int:
    return psutil.Process(pid).ppid()


def rounded(value):
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item) for item in value]
    return value


def test_refused_where_workers_could_not_share_the_state(tmp_path, models_dir, photos):
    env = cli_env(tmp_path, models_dir)
    folder = build_folder(tmp_path / "photos", {"joe_biden": [photos / "biden.jpg"]})
    added = facerec(
        env, "domains", "add", "demo", "--name", "demo", "--source", "folder", "--path", folder
    )
    assert added.returncode == 0, added.stderr
    no_broker = facerec(env, "run", "--domain", "demo", "--executor", "celery")
    assert no_broker.returncode == 1 and "FACEREC_CELERY_BROKER is not set" in no_broker.stderr
    env["FACEREC_CELERY_BROKER"] = "redis://127.0.0.1:9/0"
    on_sqlite = facerec(env, "run", "--domain", "demo", "--executor", "celery")
    assert on_sqlite.returncode == 1
    assert "the celery executor needs PostgreSQL" in on_sqlite.stderr
    assert "DATABASE_URL=postgresql+psycopg2://" in on_sqlite.stderr
    worker = facerec(env, "worker")
    assert worker.returncode == 1 and "needs PostgreSQL" in worker.stderr


def test_two_domains_built_by_two_workers_equal_the_in_process_build(
    cluster, tmp_path, models_dir, photos
):
    env, instance = cluster["env"], cluster["instance"]
    launched = [celery_run(env, code) for code in ("demo", "other")]
    outputs = [process.communicate(timeout=600) for process in launched]
    for process, (out, err) in zip(launched, outputs, strict=True):
        assert process.returncode == 0, out + err
    runs = [step_events(instance, run_id_of(out)) for out, _ in outputs]
    workers = cluster["workers"]
    # Embeddings are kept by photo and model, for every domain: the two domains' photos are
    # the same, so the first run to embed them did, and the other reused them.
    embedding_batches = {key for key in BATCH_STEPS if key.startswith("face_embeddings.")}
    every_run = STAGE_STEPS | PLAN_AND_MERGE | (BATCH_STEPS - embedding_batches)
    every_run.add("gallery_promotion_checks")
    assert sum(len(embedding_batches & set(steps)) for steps in runs) >= len(embedding_batches)
    for steps in runs:
        assert every_run <= set(steps) <= every_run | embedding_batches
        assert {key: step["starts"] for key, step in steps.items() if step["starts"] != 1} == {}
        # Every step ran in a worker's process: the batches in the faces worker's (in more than
        # one process), the others in the stages worker's.
        pids = {key: step["pid"] for key, step in steps.items()}
        assert os.getpid() not in pids.values() and launched[0].pid not in pids.values()
        stage_pids = {pids[key] for key in POOLS["facerec_db"]}
        batch_pids = {pids[key] for key in BATCH_STEPS & set(steps)}
        assert stage_pids.isdisjoint(batch_pids) and len(batch_pids) >= 2
        assert all(parent_of(pid) in worker_processes(workers["stages"]) for pid in stage_pids)
        assert all(parent_of(pid) in worker_processes(workers["faces"]) for pid in batch_pids)
    # No pool ever held more steps than its limit; the face pool held two batches at once.
    for pool, keys in POOLS.items():
        spans = [(s["start"], s["end"]) for steps in runs for k, s in steps.items() if k in keys]
        assert most_at_once(spans) == POOL_LIMITS[pool], pool
    # Each batch's metadata: the host and process that ran it, and its counts.
    (materialized,) = [
        entry.dagster_event.step_output_data
        for entry in instance.all_logs(
            run_id_of(outputs[0][0]), of_type=dg.DagsterEventType.STEP_OUTPUT
        )
        if entry.step_key == FIRST_BATCH
    ]
    figures = {key: value.value for key, value in materialized.metadata.items()}
    assert figures["photos"] == BATCH_SIZE
    assert figures["accepted"] + figures["rejected"] == BATCH_SIZE
    pid = runs[0][FIRST_BATCH]["pid"]
    assert figures["executed_by"] == f"{socket.gethostname()} pid {pid}"
    # What the steps passed each other is removed once a run has succeeded.
    outputs_dir = Path(env["FACEREC_STORAGE_DIR"]) / "cache" / "step_outputs"
    assert not [
        run for run in (run_id_of(out) for out, _ in outputs) if (outputs_dir / run).exists()
    ]
    # The same folder built in process, on SQLite.
    local = cli_env(tmp_path, models_dir)
    added = facerec(
        local,
        "domains",
        "add",
        "demo",
        "--name",
        "demo",
        "--source",
        "folder",
        "--path",
        cluster["folder"],
    )
    assert added.returncode == 0, added.stderr
    built = facerec(local, "run", "--domain", "demo")
    assert built.returncode == 0, built.stdout + built.stderr
    local_url = f"sqlite:///{Path(local['FACEREC_STORAGE_DIR']) / 'facerec.db'}"
    expected, got = gallery_of(local_url, "demo"), gallery_of(env["DATABASE_URL"], "demo")
    assert got["people"] == expected["people"] == ["Barack Obama", "Eileen Collins", "Joe Biden"]
    assert set(got["faces"]) == set(expected["faces"]) and len(got["faces"]) == 4
    for key, vector in expected["faces"].items():
        np.testing.assert_allclose(got["faces"][key], vector, rtol=0, atol=1e-6)
    probe = photos / "obama3.jpg"
    assert answer(env, "demo", probe) == answer(local, "demo", probe)
    assert answer(env, "demo", probe)["identity"]["person"] == "Barack Obama"


def test_a_worker_killed_in_a_step_fails_the_run_naming_it_and_the_next_run_completes(cluster):
    env, instance = cluster["env"], cluster["instance"]
    launched = celery_run(env, "killed")
    with first_batch_waiting(env, instance, "killed") as pid:
        assert psutil.Process(pid).ppid() in worker_processes(cluster["workers"]["faces"])
        os.kill(pid, signal.SIGKILL)
    out, err = launched.communicate(timeout=300)
    assert launched.returncode == 1, out + err
    said = err.split("FAILED for domain 'killed'")[1]  # the failure the CLI names
    assert f"[{FIRST_BATCH}]" in said and "WorkerLostError" in said and "SIGKILL" in said
    again = facerec(env, "run", "--domain", "killed", "--executor", "celery", timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert_clean(env, "killed")


def test_a_killed_celery_run_is_recovered_by_the_next_one(cluster):
    """`facerec run --executor celery` killed with SIGKILL while its batches run on a worker:
    the next run finds it dead (its orchestrating process, on this host), marks it failed and
    frees its pool slots, then completes; nothing is duplicated or left half-written."""
    env, instance = cluster["env"], cluster["instance"]
    launched = celery_run(env, "orphaned")
    wait_for_step(instance, "orphaned", FIRST_BATCH)
    launched.kill()
    launched.communicate(timeout=30)
    again = facerec(env, "run", "--domain", "orphaned", "--executor", "celery", timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("recovered: run") == 1, again.stdout
    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/partition": "orphaned"}))
    assert sorted(run.status.value for run in runs) == ["FAILURE", "SUCCESS"]
    assert_clean(env, "orphaned")


def test_a_worker_killed_as_a_whole_leaves_its_steps_to_another_and_the_run_completes(cluster):
    """A second faces worker stands by. The main Celery process of the worker that holds a
    batch step is killed with SIGKILL while the step waits (its step processes die with it, as
    when a machine is lost). Before that, the step was held longer than the broker's visibility
    timeout and the idle worker was not given it: a live worker keeps its steps. After it, the
    broker gives the step to the other worker, where it runs again, and the run completes with
    nothing duplicated or half-written."""
    env, instance, base, workers = (cluster[key] for key in ("env", "instance", "base", "workers"))
    workers["faces-standby"] = start_worker(env, base, "faces", name="faces-standby")
    wait_until_ready(base, "faces-standby")
    launched = celery_run(env, "abandoned")
    with first_batch_waiting(env, instance, "abandoned") as pid:
        time.sleep(2 * REDELIVER_AFTER + 5)
        assert starts_of(instance, "abandoned", FIRST_BATCH) == [pid]  # held, not given away
        celery_main = parent_of(pid)
        (holder,) = [name for name in workers if celery_main in worker_processes(workers[name])]
        os.kill(celery_main, signal.SIGKILL)
    out, err = launched.communicate(timeout=300)
    assert launched.returncode == 0, out + err
    assert workers.pop(holder).wait(60) != 0  # `facerec worker` ended with its Celery worker
    (other,) = {"faces", "faces-standby"} - {holder}
    first, again = starts_of(instance, "abandoned", FIRST_BATCH)
    assert first == pid and again in worker_processes(workers[other])
    assert_clean(env, "abandoned")


def test_a_step_given_again_after_its_run_ended_is_not_executed(cluster):
    """The orchestrating `facerec run` killed with SIGKILL while a batch step waits on a
    worker, the dead run recovered (marked failed: `facerec history` recovers), then the
    worker that holds the step killed as a whole. When its step is given again (after the
    broker's visibility timeout) it is not executed: its run has ended. The next `facerec run`
    builds the domain; the old step never started again meanwhile."""
    env, instance, base, workers = (cluster[key] for key in ("env", "instance", "base", "workers"))
    workers["faces-spare"] = start_worker(env, base, "faces", name="faces-spare")
    wait_until_ready(base, "faces-spare")
    launched = celery_run(env, "stale")
    with first_batch_waiting(env, instance, "stale") as pid:
        celery_main = parent_of(pid)
        (holder,) = [name for name in workers if celery_main in worker_processes(workers[name])]
        launched.kill()
        launched.communicate(timeout=30)
        recovered = facerec(env, "history", "--domain", "stale")
        assert recovered.stderr.count("recovered: run") == 1, recovered.stdout + recovered.stderr
        os.kill(celery_main, signal.SIGKILL)
    workers.pop(holder).wait(60)
    (stale,) = instance.get_runs(dg.RunsFilter(tags={"dagster/partition": "stale"}))
    assert stale.status == dg.DagsterRunStatus.FAILURE
    skipped = f"not executed: its run {stale.run_id} ended (FAILURE)"
    poll_until(
        4 * REDELIVER_AFTER + 30,
        lambda: any(skipped in log.read_text() for log in base.glob("worker-faces*.log")),
        "the dead worker's step was not given again",
        every=1,
    )
    again = facerec(env, "run", "--domain", "stale", "--executor", "celery", timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    first = step_events(instance, stale.run_id)[FIRST_BATCH]
    assert first["pid"] == pid and first["starts"] == 1  # started once, never again
    assert_clean(env, "stale")


def test_a_run_the_daemon_launches_sends_its_steps_to_the_workers(cluster):
    """`dagster-daemon run` with FACEREC_EXECUTOR=celery in its code location's environment, as
    README says for the runs sensors, schedules and the UI launch. A domain added meanwhile gets
    its first run from domain_registry_sensor; the daemon launches it in a run worker on this
    machine, which tags the run with its host and pid (what recovery needs) and sends every step
    to the workers; run_history_sensor writes its history row."""
    env, instance, base, workers = (cluster[key] for key in ("env", "instance", "base", "workers"))
    added = facerec(
        env,
        "domains",
        "add",
        "scheduled",
        "--name",
        "scheduled",
        "--source",
        "folder",
        "--path",
        cluster["folder"],
    )
    assert added.returncode == 0, added.stderr
    daemon = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run"]
        + ["-m", "facerec_pipeline.definitions"],
        env={**os.environ, **env, "FACEREC_EXECUTOR": "celery"},
        stdout=(base / "daemon.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        run = wait_for_run_end(instance, "scheduled", daemon, base / "daemon.log")
        history = wait_for_history(env["DATABASE_URL"], run.run_id)
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["facerec/trigger"] == "first_run" and history == "succeeded"
    orchestrator = process_of(instance, run)  # the run worker Dagster says executes the run
    assert run.tags[HOST_TAG] == socket.gethostname() and run.tags[PID_TAG] == str(orchestrator.pid)
    steps = step_events(instance, run.run_id)
    batches = {key for key in steps if "_batch[" in key}
    assert {key for key in steps if key.startswith("detected_faces.")} >= {
        f"detected_faces.detected_faces_batch[{n:05d}]" for n in (1, 2)
    }
    faces = set().union(*(worker_processes(workers[name]) for name in workers if "faces" in name))
    assert all(parent_of(steps[key]["pid"]) in faces for key in batches)
    stages = worker_processes(workers["stages"])
    assert all(
        parent_of(step["pid"]) in stages for key, step in steps.items() if key not in batches
    )
    assert_clean(env, "scheduled")


def wait_for_run_end(
    instance: dg.DagsterInstance, code: str, daemon: subprocess.Popen, log: Path
) -> dg.DagsterRun:
    """The run of `code` (the only one), once it has ended."""

    def ended() -> dg.DagsterRun | None:
        assert daemon.poll() is None, f"dagster-daemon ended:\n{log.read_text()[-3000:]}"
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/partition": code}))
        assert len(runs) <= 1, [run.tags for run in runs]
        return runs[0] if runs and runs[0].is_finished else None

    return poll_until(480, ended, lambda: f"no run of {code} ended:\n{log.read_text()[-3000:]}", 1)


def wait_for_history(database_url: str, run_id: str) -> str:
    """The status of the run's history row, once it is no longer `running`."""
    with get_engine(database_url).connect() as connection:

        def written() -> str | None:
            status = connection.execute(
                text("SELECT status FROM training_sessions WHERE run_id = :r"), {"r": run_id}
            ).scalar()
            connection.rollback()
            return None if status in (None, "running") else status

        return poll_until(120, written, f"the history of run {run_id} was not written", 1)


def starts_of(instance: dg.DagsterInstance, code: str, step_key: str) -> list[int]:
    """The pid of each process that started `step_key` in the runs of `code`, in order."""
    return [
        entry.dagster_event.pid
        for run in instance.get_runs(dg.RunsFilter(tags={"dagster/partition": code}))
        for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
        if entry.dagster_event.step_key == step_key
    ]


def assert_clean(env: dict[str, str], code: str) -> None:
    """`facerec artifacts verify` finds nothing wrong, and each photo has one faces row."""
    verified = facerec(env, "artifacts", "verify", "--domain", code, "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    with get_engine(env["DATABASE_URL"]).connect() as connection:
        images, faces, distinct = connection.execute(
            text(
                "SELECT (SELECT COUNT(*) FROM images WHERE domain = :code), "
                "COUNT(*), COUNT(DISTINCT image_id) FROM faces WHERE domain = :code"
            ),
            {"code": code},
        ).one()
    assert images == faces == distinct == 4


@contextmanager
def first_batch_waiting(env: dict[str, str], instance: dg.DagsterInstance, code: str):
    """Once detection of `code` is planned, the artifacts table locked: each batch judges its
    first photo and then waits to record its crop, in a faces worker's process. Yields the pid
    of FIRST_BATCH's process, waiting on the lock; the lock is released on leaving."""
    lock = get_engine(env["DATABASE_URL"]).connect()
    try:
        wait_for_step(instance, code, "detected_faces.detected_faces_plan")
        lock.execute(text("LOCK TABLE artifacts IN ACCESS EXCLUSIVE MODE"))
        pid = wait_for_step(instance, code, FIRST_BATCH)
        wait_for_lock_wait(lock, pid)
        yield pid
    finally:
        lock.rollback()
        lock.close()


def wait_for_step(instance: dg.DagsterInstance, code: str, step_key: str) -> int:
    """The pid of the process that started `step_key` in the run of `code` (waiting for it)."""

    def started() -> int | None:
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/partition": code}))
        pids = [step_events(instance, run.run_id).get(step_key, {}).get("pid") for run in runs]
        return next(filter(None, pids), None)

    return poll_until(180, started, f"{step_key} of {code} did not start", every=0.2)


def wait_for_lock_wait(connection, pid: int) -> None:
    """Until the process `pid` waits for a lock in PostgreSQL (its backend's wait event)."""

    def waiting() -> bool:
        locked = connection.execute(
            text(
                "SELECT COUNT(*) FROM pg_stat_activity a WHERE a.wait_event_type = 'Lock' "
                "AND a.pid <> pg_backend_pid()"
            )
        ).scalar()
        return bool(locked) and psutil.pid_exists(pid)

    poll_until(120, waiting, f"process {pid} never waited for the lock", every=0.2)


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most spans (start, end) open at one moment; one ending as another starts is not."""
    moments = sorted([(end, -1) for _, end in spans] + [(start, 1) for start, _ in spans])
    open_now = most = 0
    for _, change in moments:
        open_now += change
        most = max(most, open_now)
    return most


def test_the_executor_settings_and_the_jobs_they_give():
    with pytest.raises(SettingsError, match="FACEREC_EXECUTOR='dask' is not an executor"):
        Settings.from_env({"FACEREC_EXECUTOR": "dask"})
    for name, value, least in (
        ("FACEREC_FACE_BATCH_SIZE", "0", 1),
        ("FACEREC_FACE_BATCH_SIZE", "many", 1),
        ("FACEREC_CELERY_REDELIVER_AFTER", "5", 10),
    ):
        with pytest.raises(
            SettingsError, match=f"{name}='{value}' is not a whole number of at least {least};"
        ):
            Settings.from_env({name: value})
    local = Settings.from_env({})
    assert local.executor == ExecutorSettings()  # in process unless asked
    assert build_definitions(local).resolve_job_def("domain_pipeline").executor_def.name != (
        "celery"
    )
    broker = "redis://127.0.0.1:6379/0"
    on_celery = Settings.from_env({"FACEREC_EXECUTOR": "celery", "FACEREC_CELERY_BROKER": broker})
    assert on_celery.executor.backend == broker  # results on the broker unless told otherwise
    job = build_definitions(on_celery).resolve_job_def("domain_pipeline")
    assert job.executor_def.name == "celery"
    queues = {
        str(op): job.graph.get_node(op).tags.get("dagster-celery/queue")
        for op in job.graph.get_op_handles(None)
    }
    assert {name for name, queue in queues.items() if queue == FACES_QUEUE} == {
        f"{stage}.{stage}_batch" for stage in FACE_STAGES
    }
