"""Fault injection on the real pipeline, a real SQLite file and the real Dagster instance: runs
killed with SIGKILL in each stage, two runs of one domain at once, damaged and missing gallery
files, a rollback that must stick."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from sqlalchemy import func, select

from facerec_pipeline.db.engine import dispose_engines, session_scope
from facerec_pipeline.db.models import Face, FaceEmbedding, Gallery, Image, Person
from facerec_pipeline.defs.runs.recovery import HOST_TAG, PID_TAG, is_dead, process_of, run_tags
from facerec_pipeline_tests.conftest import REPO, build_folder, cli_env
from facerec_pipeline_tests.kill_at import paused_at


@pytest.fixture
def root(tmp_path, models_dir, photos, composed):
    """A storage root, a Dagster home and a two-person folder domain `demo`, set up through the
    CLI in a subprocess like an operator would."""
    env = {**os.environ, **cli_env(tmp_path, models_dir)}
    storage = Path(env["FACEREC_STORAGE_DIR"])
    folder = build_folder(
        tmp_path / "photos",
        {
            "barack_obama": [photos / "obama.jpg", photos / "obama2.jpg"],
            "joe_biden": [photos / "biden.jpg", composed["biden_mirrored.jpg"]],
        },
    )
    root = Root(storage, tmp_path / "dagster", env, folder)
    added = root.facerec(
        "domains", "add", "demo", "--name", "Demo", "--source", "folder", "--path", str(folder)
    )
    assert added.returncode == 0, added.stderr
    yield root
    dispose_engines()


class Root:
    def __init__(self, storage: Path, dagster_home: Path, env: dict, folder: Path):
        self.storage, self.dagster_home, self.env, self.folder = storage, dagster_home, env, folder
        self.url = f"sqlite:///{storage / 'facerec.db'}"

    def facerec(self, *args: str, timeout: int = 240) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "facerec_pipeline.cli.main", *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def killed_at(self, target: str, when: str, match: str, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "facerec_pipeline_tests.kill_at",
                target,
                when,
                match,
                "--",
                *args,
            ],
            env=self.env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def count(self, model, *where) -> int:
        with session_scope(self.url) as session:
            return session.scalar(select(func.count()).select_from(model).where(*where))


def test_main_module_runs_the_cli(root):
    assert root.facerec("domains", "list").stdout.startswith("code")


# Each point: the stage has done its work (files written) but its rows are not committed, or the
# gallery batches / production pointer are written and the database does not know yet.
WRITE_ROWS = "facerec_pipeline.defs.lineage.io_manager:write_stage_output"
KILL_POINTS = [
    (WRITE_ROWS, "before", "people"),
    # a photo half-copied into storage: its partial file is there, its row and name are not
    ("facerec_pipeline.core.artifacts.store:image_size", "after", "*"),
    (WRITE_ROWS, "before", "images"),
    (WRITE_ROWS, "before", "faces"),
    # before face_embeddings' rows: previews and embeddings both follow detected_faces, and a
    # run that got to the embeddings' rows may have made every preview already
    ("facerec_pipeline.app.stages.previews:previews_or_error", "after", "*"),
    (WRITE_ROWS, "before", "face_embeddings"),
    ("facerec_pipeline.app.stages.gallery:write_batches", "after", "*"),
    ("facerec_pipeline.app.promotion:write_prod_pointer", "after", "*"),
]


def test_a_run_killed_in_any_stage_is_recovered_by_the_next_run(root, photos):
    """SIGKILL at each point in turn, each time on the state the previous kill left; every next
    run frees the dead run's pool slot, closes its history and finishes its work, and the end
    state has no duplicate row, no half-written or unrecorded file and no run left running."""
    for target, when, match in KILL_POINTS:
        process = root.killed_at(target, when, match, "run", "--domain", "demo")
        process.wait(timeout=240)
        assert process.returncode == -signal.SIGKILL, (target, process.stderr.read())
    finished = root.facerec("run", "--domain", "demo")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert finished.stdout.count("recovered: run") == 1  # the last kill; earlier ones before

    with dg.DagsterInstance.from_config(str(root.dagster_home)) as instance:
        statuses = [run.status for run in instance.get_runs()]
        assert statuses.count(dg.DagsterRunStatus.FAILURE) == len(KILL_POINTS)
        assert statuses.count(dg.DagsterRunStatus.SUCCESS) == 1
        assert not instance.event_log_storage.get_concurrency_info("facerec_db").claimed_slots
    history = json.loads(root.facerec("history", "--domain", "demo", "--json").stdout)
    assert [row["status"] for row in history].count("failed") == len(KILL_POINTS)
    assert all("killed or crashed" in row["error"] for row in history if row["status"] == "failed")
    assert "running" not in {row["status"] for row in history}

    assert root.count(Person) == 2 and root.count(Image) == 4
    assert root.count(Face, Face.status == "accepted") == 4 and root.count(FaceEmbedding) == 4
    with session_scope(root.url) as session:
        (version,) = session.scalars(select(Gallery)).all()
        assert version.is_prod and version.version == 1
        recorded = set(version.batch_paths)
    on_disk = {
        p.relative_to(root.storage).as_posix()
        for p in (root.storage / "recognized_faces_batched").glob("*/*")
        if p.is_dir()
    }
    assert on_disk == recorded  # nothing half-written, nothing unrecorded, nothing moved aside
    assert not list(root.storage.rglob("*.partial"))
    training = list((root.storage / "training" / "demo").rglob("*.*"))
    assert len(training) == 4  # each photo stored once
    named = root.facerec("recognize", "--domain", "demo", "--json", str(photos / "obama3.jpg"))
    assert json.loads(named.stdout)[0]["faces"][0]["identity"]["person"] == "Barack Obama"
    verified = root.facerec("artifacts", "verify", "--domain", "demo", "--json")
    assert verified.returncode == 0, verified.stdout  # every file its row, every row its file
    assert json.loads(verified.stdout)["rows_checked"] > 0


def test_recovery_removes_the_half_written_files_of_every_dead_writer(tmp_path):
    """Found by their form: the pid in a partial file's name is its writer's, whether the run's
    own process or one of its workers killed with it; a live writer's file is left alone."""
    from facerec_pipeline.core.files import partial_path
    from facerec_pipeline.defs.runs.recovery import remove_partial_files

    exited = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = int(exited.stdout)
    crops = tmp_path / "trainingPass" / "demo" / "barack_obama"
    crops.mkdir(parents=True)
    live = partial_path(crops / "a.png")  # this process: alive
    written = [
        crops / f".b.png.{dead}.{140000000000 + dead}.partial",  # a dead worker's
        crops / f".c.png.{dead}.partial",  # the form before threads were named
        tmp_path / "previews" / f".d_400.jpg.{dead}.7.partial",
        live,
        crops / "e.png",  # a finished file
    ]
    for path in written:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    batch = tmp_path / "recognized_faces_batched" / "demo" / ".batch_0001.partial"
    batch.mkdir(parents=True)
    assert remove_partial_files(tmp_path) == 4
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == sorted([live, crops / "e.png"])
    assert not batch.exists()


def test_a_second_run_of_a_busy_domain_is_refused_and_a_dead_one_is_cleaned_up(root):
    backed_up = root.facerec("db", "backup")
    assert backed_up.returncode == 0, backed_up.stderr
    backup = backed_up.stdout.split("backed up to ")[1].split(";")[0]
    busy = root.killed_at(
        WRITE_ROWS,
        "hang",
        "people",
        "run",
        "--domain",
        "demo",
    )
    try:
        assert busy.stdout.readline().strip() == "hanging"
        second = root.facerec("run", "--domain", "demo")
        assert second.returncode == 1
        assert "already has run" in second.stderr and f"pid {busy.pid}" in second.stderr
        assert f"`kill {busy.pid}`" in second.stderr and "dagster run delete" not in second.stderr
        # A restore under the live run is refused too, and changes nothing.
        before = (root.storage / "facerec.db").stat().st_mtime_ns
        restore = root.facerec("db", "restore", backup, "--yes")
        assert restore.returncode == 1, restore.stdout + restore.stderr
        assert "of 'demo') is in progress" in restore.stderr and f"pid {busy.pid}" in restore.stderr
        assert "nothing restored, the database is unchanged" in restore.stderr
        assert "Traceback" not in restore.stderr
        assert (root.storage / "facerec.db").stat().st_mtime_ns == before
    finally:
        busy.send_signal(signal.SIGKILL)
        busy.wait(timeout=30)
    history = json.loads(root.facerec("history", "--domain", "demo", "--json").stdout)
    assert history[0]["status"] == "failed" and "killed or crashed" in history[0]["error"]
    again = root.facerec("run", "--domain", "demo")
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_re_executed_run_is_not_judged_by_its_parents_process():
    """Dagster copies a run's tags to the run that re-executes it (the UI's re-execution), the
    host and pid of the parent's orchestrating process among them. Until the new run's own
    orchestrator tags it, recovery does not take the parent's dead process for the new run's."""
    ended = subprocess.Popen(["true"])
    ended.wait()
    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(ended.pid)}
    with dg.instance_for_test() as instance:
        parent = instance.add_run(dg.DagsterRun(job_name="domain_pipeline", tags=tags))
        child = instance.add_run(
            dg.DagsterRun(
                job_name="domain_pipeline",
                tags=tags,
                parent_run_id=parent.run_id,
                root_run_id=parent.run_id,
                status=dg.DagsterRunStatus.STARTING,
            )
        )
        assert is_dead(instance, process_of(instance, parent))
        assert process_of(instance, child).pid is None
        assert not is_dead(instance, process_of(instance, child))
        instance.add_run_tags(child.run_id, run_tags())  # as its orchestrator does
        tagged = process_of(instance, instance.get_run_by_id(child.run_id))
        assert tagged.pid == os.getpid() and not is_dead(instance, tagged)


def _versions(root) -> dict[int, Gallery]:
    with session_scope(root.url) as session:
        return {g.version: g for g in session.scalars(select(Gallery))}


def two_versions(root, photos) -> None:
    assert root.facerec("run", "--domain", "demo").returncode == 0
    shutil.copyfile(photos / "obama3.jpg", root.folder / "barack_obama" / "obama3.jpg")
    ran = root.facerec("run", "--domain", "demo")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert [g.is_prod for _, g in sorted(_versions(root).items())] == [False, True]


def _damage(path: Path, how: str) -> None:
    if how == "overwritten":
        data = bytearray(path.read_bytes())
        middle = len(data) // 2
        data[middle : middle + 1024] = os.urandom(min(1024, len(data) - middle))
        path.write_bytes(bytes(data))
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "reordered":
        matrix = np.load(path)
        np.save(path, matrix[::-1].copy())
    elif how == "missing":
        shutil.rmtree(path.parent)


def test_a_damaged_production_version_never_answers(root, photos):
    """1 KB overwritten, truncated, rows reordered, batch folder missing: recognize says which
    file and answers from the last intact version; a rollback to the damaged one is refused."""
    two_versions(root, photos)
    batch = root.storage / _versions(root)[2].batch_paths[0]
    intact = root.storage.parent / "intact_batch"
    shutil.copytree(batch, intact)
    for how in ["overwritten", "truncated", "reordered", "missing"]:
        _damage(batch / "embeddings.npy", how)
        answer = root.facerec("recognize", "--domain", "demo", "--json", str(photos / "obama3.jpg"))
        assert answer.returncode == 0, (how, answer.stderr)
        assert "gallery v2 of 'demo' is damaged" in answer.stderr, how
        assert "embeddings.npy" in answer.stderr and "v1, the newest intact" in answer.stderr
        (result,) = json.loads(answer.stdout)
        assert result["faces"][0]["decision"]["gallery_version"] == 1, how
        assert result["faces"][0]["identity"]["person"] == "Barack Obama", how
        shutil.rmtree(batch, ignore_errors=True)
        shutil.copytree(intact, batch)

    _damage(batch / "embeddings.npy", "reordered")
    back = root.facerec("gallery", "rollback", "--domain", "demo", "--to", "1")
    assert back.returncode == 0, back.stderr
    forward = root.facerec("gallery", "rollback", "--domain", "demo", "--to", "2")
    assert forward.returncode == 1 and "damaged" in forward.stderr
    assert "Traceback" not in forward.stderr
    assert _versions(root)[1].is_prod  # the refused rollback changed nothing

    shutil.rmtree(root.storage / _versions(root)[1].batch_paths[0])  # the last good one, too
    none_left = root.facerec("recognize", "--domain", "demo", str(photos / "obama3.jpg"))
    assert none_left.returncode == 1 and "Traceback" not in none_left.stderr
    assert "gallery v1 of 'demo'" in none_left.stderr and "will not serve" in none_left.stderr


def test_a_damaged_newest_version_is_built_again_by_the_next_run(root, photos):
    """Its faces are in the database: the next run builds them again as a new version, which
    passes its checks and serves; a rollback and unpin meanwhile change nothing to that."""
    two_versions(root, photos)
    _damage(root.storage / _versions(root)[2].batch_paths[0] / "embeddings.npy", "overwritten")
    assert root.facerec("gallery", "rollback", "--domain", "demo", "--to", "1").returncode == 0
    assert root.facerec("gallery", "unpin", "--domain", "demo").returncode == 0
    ran = root.facerec("run", "--domain", "demo")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "v2 holds these faces but its files are damaged" in ran.stderr
    versions = _versions(root)
    assert sorted(versions) == [1, 2, 3] and versions[3].is_prod
    assert versions[3].content_sha256 == versions[2].content_sha256
    answer = root.facerec("recognize", "--domain", "demo", "--json", str(photos / "obama3.jpg"))
    assert answer.returncode == 0 and "damaged" not in answer.stderr, answer.stderr
    assert json.loads(answer.stdout)[0]["faces"][0]["decision"]["gallery_version"] == 3
    again = root.facerec("run", "--domain", "demo")  # now intact: nothing more is built
    assert again.returncode == 0 and sorted(_versions(root)) == [1, 2, 3]


def test_a_stray_or_damaged_faiss_index_never_breaks_recognition(root, photos):
    """A faiss index file beside the batches that the version's checksums do not name is not
    the version's: never read. A version built before checksums whose index cannot be read, or
    indexes other rows, does not serve: the last intact version answers."""
    import faiss

    two_versions(root, photos)
    index = root.storage / "recognized_faces_batched" / "demo" / "index_v0002.faiss"

    def recognized() -> tuple[dict, str]:
        answer = root.facerec("recognize", "--domain", "demo", "--json", str(photos / "obama3.jpg"))
        assert answer.returncode == 0 and "Traceback" not in answer.stderr, answer.stderr
        (result,) = json.loads(answer.stdout)
        assert result["faces"][0]["identity"]["person"] == "Barack Obama"
        return result["faces"][0]["decision"], answer.stderr

    index.write_bytes(os.urandom(4096))  # stray: v2's checksums do not name it
    assert recognized()[0]["gallery_version"] == 2
    with session_scope(root.url) as session:  # as a version built before checksums
        session.get(Gallery, _versions(root)[2].id).file_checksums = None
    decision, notes = recognized()
    assert decision["gallery_version"] == 1
    assert "index_v0002.faiss is not a readable faiss IVF index" in notes
    flat = faiss.IndexFlatIP(128)  # a faiss index, but not the IVF index a version writes
    flat.add(np.eye(128, dtype=np.float32)[:10])
    faiss.write_index(flat, str(index))
    decision, notes = recognized()
    assert decision["gallery_version"] == 1 and "not a readable faiss IVF index" in notes
    other = faiss.IndexIVFFlat(faiss.IndexFlatIP(128), 128, 1, faiss.METRIC_INNER_PRODUCT)
    other.train(np.eye(128, dtype=np.float32))
    other.add(np.eye(128, dtype=np.float32)[:10])
    faiss.write_index(other, str(index))
    decision, notes = recognized()
    assert decision["gallery_version"] == 1 and "indexes 10 rows, the batches hold" in notes
    index.unlink()
    assert recognized()[0]["gallery_version"] == 2


def test_a_rollback_sticks_until_unpinned_or_new_content(root, photos, composed):
    two_versions(root, photos)
    back = root.facerec("gallery", "rollback", "--domain", "demo", "--to", "1")
    assert back.returncode == 0 and "pinned" in back.stdout
    again = root.facerec("run", "--domain", "demo")  # a schedule tick, nothing changed
    assert again.returncode == 0, again.stderr
    assert _versions(root)[1].is_prod and not _versions(root)[2].is_prod
    listed = json.loads(root.facerec("gallery", "list", "--domain", "demo", "--json").stdout)
    assert [v["pinned"] for v in listed] == [True, False]
    # A recalibration (a new target FAR, or a new decision rule after an upgrade) builds v3
    # from v2's very faces: not new content, the pin holds.
    assert root.facerec("domains", "set", "demo", "--target-far", "0.02").returncode == 0
    recalibrated = root.facerec("run", "--domain", "demo")
    assert recalibrated.returncode == 0, recalibrated.stderr
    versions = _versions(root)
    assert sorted(versions) == [1, 2, 3] and versions[1].is_prod and not versions[3].is_prod

    assert "no longer pinned" in root.facerec("gallery", "unpin", "--domain", "demo").stdout
    assert root.facerec("run", "--domain", "demo").returncode == 0
    assert _versions(root)[3].is_prod

    root.facerec("gallery", "rollback", "--domain", "demo", "--to", "1")
    shutil.copyfile(composed["dominant_subject.jpg"], root.folder / "barack_obama" / "dom.jpg")
    assert root.facerec("run", "--domain", "demo").returncode == 0  # new faces: v4 serves
    versions = _versions(root)
    assert sorted(versions) == [1, 2, 3, 4] and versions[4].is_prod
    assert (
        json.loads(root.facerec("gallery", "list", "--domain", "demo", "--json").stdout)[0][
            "pinned"
        ]
        is False
    )


def test_batch_numbers_come_from_the_database(root, photos):
    assert root.facerec("run", "--domain", "demo").returncode == 0
    batched = root.storage / "recognized_faces_batched" / "demo"
    (first,) = _versions(root)[1].batch_paths
    assert first.endswith("batch_0001")
    shutil.move(batched / "batch_0001", root.storage.parent / "moved_away")  # an operator slip
    (batched / "batch_0002").mkdir()  # a stray folder where the next batch goes
    (batched / "batch_0002" / "stray.txt").write_text("not ours")
    shutil.copyfile(photos / "obama3.jpg", root.folder / "barack_obama" / "obama3.jpg")
    assert root.facerec("run", "--domain", "demo").returncode == 0
    (second,) = _versions(root)[2].batch_paths
    assert second.endswith("batch_0002") and (root.storage / second / "embeddings.npy").exists()
    (kept,) = (batched / ".orphaned").iterdir()  # the stray folder was moved aside, not lost
    assert (kept / "stray.txt").read_text() == "not ours"
    with session_scope(root.url) as session:
        assert all(g.file_checksums for g in session.scalars(select(Gallery)))


def test_a_run_waiting_for_the_database_pool_says_so_and_goes_on_when_the_holder_dies(root, photos):
    other = build_folder(root.folder.parent / "other", {"barack_obama": [photos / "obama.jpg"]})
    assert (
        root.facerec(
            "domains", "add", "other", "--name", "Other", "--source", "folder", "--path", str(other)
        ).returncode
        == 0
    )
    holder = root.killed_at(
        WRITE_ROWS,
        "hang",
        "people",
        "run",
        "--domain",
        "demo",
    )
    waiting = None
    try:
        assert holder.stdout.readline().strip() == "hanging"  # it holds the pool's one slot
        waiting = subprocess.Popen(
            [sys.executable, "-m", "facerec_pipeline.cli.main", "run", "--domain", "other"],
            env=root.env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        said = ""
        while "waiting for the database pool" not in said:
            line = waiting.stdout.readline()
            assert line, said
            said += line
        assert "(demo)" in said.splitlines()[-1]
        holder.send_signal(signal.SIGKILL)
        rest, _ = waiting.communicate(timeout=240)
        assert waiting.returncode == 0, said + rest
        assert "recovered: run" in rest and "succeeded for domain 'other'" in rest
    finally:
        for process in (holder, waiting):
            if process is not None and process.poll() is None:
                process.kill()


def test_a_damaged_or_deleted_pointer_is_rewritten_from_the_database(root, photos):
    """The database row is the one truth of what serves: the recognizer never reads the
    pointer file, so a damaged one changes no answer, and the next run rewrites it."""
    assert root.facerec("run", "--domain", "demo").returncode == 0
    pointer = root.storage / "recognized_faces_prod" / "demo" / "gallery.json"
    good = json.loads(pointer.read_text())
    pointer.write_text('{"version": 1, "batch')  # truncated JSON
    answer = root.facerec("recognize", "--domain", "demo", "--json", str(photos / "obama3.jpg"))
    assert answer.returncode == 0, answer.stderr
    (result,) = json.loads(answer.stdout)
    assert result["faces"][0]["identity"]["person"] == "Barack Obama"
    assert "notes" not in result
    assert root.facerec("run", "--domain", "demo").returncode == 0
    assert json.loads(pointer.read_text()) == good
    pointer.unlink()
    assert root.facerec("run", "--domain", "demo").returncode == 0
    assert json.loads(pointer.read_text()) == good


@pytest.fixture
def small_disk(tmp_path):
    """A 48 MB tmpfs mounted for the test (as root, as the suite runs in CI), unmounted after."""
    mount = tmp_path / "small_disk"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}", pytrace=False)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(folder: Path) -> Path:
    """Write zeros into `folder` until its disk is full; the file to delete to free it."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as file:
        for block in (1 << 20, 4096, 512):  # to the last few bytes
            try:
                while True:
                    file.write(b"\0" * block)
            except OSError:
                pass
    return filler


def test_a_full_disk_mid_run_stops_it_in_one_line_and_keeps_the_cause(
    small_disk, tmp_path, models_dir, photos
):
    """Storage and Dagster's home on one disk that fills inside detected_faces: a few lines and
    one error naming the full disk (it was ~170 lines of tracebacks and no FAILED line); once
    space is freed, recovery records that cause (it said "killed or crashed"), and the re-run
    builds the domain."""
    storage = small_disk / "storage"
    storage.mkdir()
    (storage / "models").symlink_to(models_dir, target_is_directory=True)
    env = {
        **os.environ,
        "FACEREC_STORAGE_DIR": str(storage),
        "DAGSTER_HOME": str(storage / "dagster"),
        "DATABASE_URL": "",
    }
    root = Root(
        storage,
        storage / "dagster",
        env,
        build_folder(
            tmp_path / "photos",
            {
                "barack_obama": [photos / "obama.jpg", photos / "obama2.jpg"],
                "joe_biden": [photos / "biden.jpg"],
            },
        ),
    )
    added = root.facerec(
        "domains", "add", "demo", "--name", "Demo", "--source", "folder", "--path", str(root.folder)
    )
    assert added.returncode == 0, added.stderr
    with paused_at(env, WRITE_ROWS, "faces", "run", "--domain", "demo") as resume:
        filler = fill(small_disk)
        status, output = resume()
    assert status == 1, output
    assert "Traceback" not in output, output
    lines = output.strip().splitlines()
    assert len(lines) <= 3, output
    assert lines[-1].startswith(
        f"Error: the run of 'demo' stopped: no space left on the device of {storage}"
    ), lines[-1]
    assert "Free space, then the next `facerec run --domain demo`" in lines[-1]
    assert "marks it failed with this cause" in lines[-1]

    filler.unlink()
    history = root.facerec("history", "--domain", "demo", "--json")
    assert history.returncode == 0, history.stderr
    assert f"stopped: no space left on the device of {storage}" in history.stderr + history.stdout
    (row,) = json.loads(history.stdout[history.stdout.index("[") :])
    assert row["status"] == "failed" and "no space left on the device" in row["error"]
    assert "killed or crashed" not in row["error"]
    assert not list((storage / "cache" / "run_causes").glob("*"))
    again = root.facerec("run", "--domain", "demo")
    assert again.returncode == 0, again.stdout + again.stderr
