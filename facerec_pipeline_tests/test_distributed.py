"""Several machines, stood in for by one: Redis (Debian's redis-server) and PostgreSQL on
127.0.0.1, and two Celery workers started with `facerec worker` as processes of their own, one
for the stage steps and one for the face steps. Domains are built with `facerec run --executor
celery` and compared with the same folder built in process; a worker's step process is killed
with SIGKILL in the middle of a step."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path

import dagster as dg
import numpy as np
import psutil
import pytest
import redis
from sqlalchemy import text

from facerec_pipeline.db.engine import dispose_engines, get_engine
from facerec_pipeline.defs.assembly import build_definitions
from facerec_pipeline.defs.executors import (
    FACES_QUEUE,
    DistributedSetupError,
    require_workers,
)
from facerec_pipeline.settings import ExecutorSettings, Settings, SettingsError
from facerec_pipeline_tests.conftest import build_folder, cli_env
from facerec_pipeline_tests.postgres_server import DAGSTER_YAML

FACEREC = [sys.executable, "-m", "facerec_pipeline.cli.main"]
REDIS_HINT = (
    "redis-server not found: install Debian's `redis-server` package "
    "(scripts/install-system-packages.sh does it) to run the distributed tests"
)
STAGE_STEPS = {"candidates", "raw_images", "gallery", "production_gallery"}
FACE_STEPS = {"detected_faces", "previews", "face_embeddings"}
POOLS = {"facerec_db": STAGE_STEPS, "facerec_faces": FACE_STEPS}


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A Redis server on a free port of 127.0.0.1 that keeps nothing on disk; yields its URL."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        pytest.fail(REDIS_HINT, pytrace=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = subprocess.Popen(
        [binary, *args, "--dir", str(folder)],
        stdout=(folder / "redis.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(30)


def facerec(env: dict[str, str], *args, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*FACEREC, *map(str, args)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_id_of(output: str) -> str:
    return re.search(r"run ([0-9a-f-]{36}) (?:succeeded|FAILED)", output).group(1)


@pytest.fixture(scope="module")
def cluster(pg, tmp_path_factory, models_dir, photos, composed):
    """Redis, PostgreSQL (facerec's tables and Dagster's instance), a folder domain and two
    workers: `stages` and `faces`, each running up to two steps at once."""
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
    with redis_server(base) as broker, pytest.MonkeyPatch.context() as patch:
        env |= {
            "DATABASE_URL": pg.create_database("distributed"),
            "FACEREC_TEST_DAGSTER_PG_URL": pg.create_database("distributed_dagster"),
            "FACEREC_CELERY_BROKER": broker,
        }
        patch.setenv("FACEREC_TEST_DAGSTER_PG_URL", env["FACEREC_TEST_DAGSTER_PG_URL"])
        for code in ("demo", "other", "killed"):
            added = facerec(
                env, "domains", "add", code, "--name", code, "--source", "folder", "--path", folder
            )
            assert added.returncode == 0, added.stderr
        # Before any worker: a run is refused at once, naming the command that starts one.
        refused = facerec(env, "run", "--domain", "demo", "--executor", "celery")
        assert refused.returncode == 1
        assert "no Celery worker listens on queue 'facerec_stages'" in refused.stderr
        assert "`facerec worker --queue stages`" in refused.stderr
        workers = {
            queue: subprocess.Popen(
                [*FACEREC, "worker", "--queue", queue, "--name", queue, "--concurrency", "2"],
                env={**os.environ, **env},
                stdout=(base / f"worker-{queue}.log").open("w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            for queue in ("stages", "faces")
        }
        try:
            wait_for_workers(env, workers, base)
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
    """Each step's start and end time and the pid of the process that started it."""
    steps: dict[str, dict] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or not event.step_key:
            continue
        step = steps.setdefault(event.step_key, {})
        if event.event_type == dg.DagsterEventType.STEP_START:
            step.update(start=entry.timestamp, pid=event.pid)
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
    launched = [
        subprocess.Popen(
            [*FACEREC, "run", "--domain", code, "--executor", "celery"],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for code in ("demo", "other")
    ]
    outputs = [process.communicate(timeout=600) for process in launched]
    for process, (out, err) in zip(launched, outputs, strict=True):
        assert process.returncode == 0, out + err
    runs = [step_events(instance, run_id_of(out)) for out, _ in outputs]
    workers = cluster["workers"]
    for steps in runs:
        assert set(steps) == STAGE_STEPS | FACE_STEPS | {"gallery_promotion_checks"}
        # Every step ran in a worker's process, the face steps in the faces worker's.
        pids = {key: step["pid"] for key, step in steps.items()}
        assert os.getpid() not in pids.values() and launched[0].pid not in pids.values()
        stage_pids = {pids[key] for key in STAGE_STEPS}
        face_pids = {pids[key] for key in FACE_STEPS}
        assert stage_pids.isdisjoint(face_pids)
        assert all(parent_of(pid) in worker_processes(workers["stages"]) for pid in stage_pids)
        assert all(parent_of(pid) in worker_processes(workers["faces"]) for pid in face_pids)
    # Each worker runs two steps at once, each pool admits one: no two steps of a pool overlap.
    for pool, keys in POOLS.items():
        spans = sorted(
            (s["start"], s["end"]) for steps in runs for k, s in steps.items() if k in keys
        )
        assert all(end <= start for (_, end), (start, _) in pairwise(spans)), pool
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
    # The faces table locked: detected_faces waits in its first query, in a worker's process.
    lock = get_engine(env["DATABASE_URL"]).connect()
    lock.execute(text("LOCK TABLE faces IN ACCESS EXCLUSIVE MODE"))
    launched = subprocess.Popen(
        [*FACEREC, "run", "--domain", "killed", "--executor", "celery"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        pid = wait_for_step(instance, "killed", "detected_faces")
        assert psutil.Process(pid).ppid() in worker_processes(cluster["workers"]["faces"])
        os.kill(pid, signal.SIGKILL)
    finally:
        lock.rollback()
        lock.close()
    out, err = launched.communicate(timeout=300)
    assert launched.returncode == 1, out + err
    said = err.split("FAILED for domain 'killed'")[1]  # the failure the CLI names
    assert "[detected_faces]" in said and "WorkerLostError" in said and "SIGKILL" in said
    again = facerec(env, "run", "--domain", "killed", "--executor", "celery", timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    verified = facerec(env, "artifacts", "verify", "--domain", "killed", "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    with get_engine(env["DATABASE_URL"]).connect() as connection:
        images, faces, distinct = connection.execute(
            text(
                "SELECT (SELECT COUNT(*) FROM images WHERE domain = 'killed'), "
                "COUNT(*), COUNT(DISTINCT image_id) FROM faces WHERE domain = 'killed'"
            )
        ).one()
    assert images == faces == distinct == 4


def wait_for_step(instance: dg.DagsterInstance, code: str, step_key: str) -> int:
    """The pid of the process that started `step_key` in the run of `code` (waiting for it)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        for run in instance.get_runs(dg.RunsFilter(tags={"dagster/partition": code})):
            pid = step_events(instance, run.run_id).get(step_key, {}).get("pid")
            if pid:
                return pid
        time.sleep(0.2)
    raise AssertionError(f"{step_key} of {code} did not start")


def test_the_executor_settings_and_the_jobs_they_give():
    with pytest.raises(SettingsError, match="FACEREC_EXECUTOR='dask' is not an executor"):
        Settings.from_env({"FACEREC_EXECUTOR": "dask"})
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
    queues = {node.name: node.tags.get("dagster-celery/queue") for node in job.graph.nodes}
    assert {name for name, queue in queues.items() if queue == FACES_QUEUE} == FACE_STEPS
