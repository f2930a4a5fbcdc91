"""Load on the real `facerec serve`: concurrent client apps against the HTTP service on 127.0.0.1,
and the same photos through DeepFace.find for the ratio.

    python -m bench.serve_load [--dev-set DIR] [--seconds N] [--requests N] [--output FILE]
    (FACEREC_DEV_SET=DIR also selects the LFW dev set; `make bench-serve`)

1. A gallery built as the product builds one: a folder domain and `run_domain` (what `facerec run`
   calls) from an empty storage root: the LFW development set's gallery/ (its probes/ are the
   photos sent) when --dev-set or FACEREC_DEV_SET is given, else the sample domain made from the
   face_recognition test photos (the photos sent: those photos, the astronaut and a mirrored copy
   of each).
2. A client token issued as `facerec clients add` issues one; `facerec serve` started as a
   subprocess (`python -m facerec_pipeline.cli.main serve`, one uvicorn worker) on a free port,
   timed until /readyz answers 200.
3. At 1, 4 and 16 concurrent clients (a thread and a requests.Session each), the probe photos
   POSTed to /v1/recognize (multipart, Bearer token) for a bounded time and count: latency
   p50/p95/p99, throughput, non-200 answers and the server process's peak RSS (psutil, sampled).
4. DeepFace.find (Dlib model, dlib detector) with db_path a folder of the same gallery photos: its
   first call builds DeepFace's datastore (timed apart); then the warm find on the probe photos.

Writes its section of BENCHMARKS.md (between the serve-load markers) and prints it.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.common import (
    REPO,
    add_folder_domain,
    checked_dev_set,
    dev_set_parser,
    fresh_storage,
    machine,
    short_commit,
    uncommitted_changes,
    write_section,
)

BEGIN, END = "<!-- serve-load:begin -->", "<!-- serve-load:end -->"
LEVELS = (1, 4, 16)
DOMAIN = "load"
CLIENT = "bench-load"
PHOTO_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}
IMAGE_SUFFIXES = tuple(PHOTO_TYPES)


@dataclass
class DataSet:
    label: str
    gallery: Path  # <person>/<photos>
    probes: list[Path]


@dataclass
class Level:
    clients: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, every answer (200 or not)
    statuses: dict[str, int] = field(default_factory=dict)
    named: int = 0  # 200 answers naming someone
    peak_rss: int = 0

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != "200")

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")


# --- 1: the data and the gallery -----------------------------------------------------------------
def dev_data(dev: Path) -> DataSet:
    return DataSet(
        label=(
            "the LFW development set (its gallery/ enrolled, its probes/ sent), built by "
            "`../shared/datasets/build_lfw_dev.py`"
        ),
        gallery=dev / "gallery",
        probes=sorted((dev / "probes").glob("*.jpg")),
    )


def small_data(work: Path) -> DataSet:
    from bench.photos import photo_set
    from facerec_pipeline.app.sample import build_sample_folder, fetch_test_images

    images = fetch_test_images(REPO / ".cache" / "test_images")
    people, _ = build_sample_folder(images, work / "sample")
    (work / "probes").mkdir(parents=True)
    return DataSet(
        label=(
            "the sample domain (face_recognition 1.3.0's test photos and scikit-image's astronaut: "
            "3 people, 7 photos); sent: those photos, the astronaut and a mirrored copy of each "
            "(1-2 MP)"
        ),
        gallery=people,
        probes=photo_set(work / "probes"),
    )


def build_gallery(data: DataSet, work: Path):
    """A fresh storage root with the data's gallery built by `run_domain`; (settings, seconds,
    photos in the gallery folder)."""
    import dagster as dg

    from facerec_pipeline.defs.launch import run_domain

    settings = fresh_storage(work)
    folder = work / "gallery"
    shutil.copytree(data.gallery, folder)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    add_folder_domain(settings, DOMAIN, "Serve load", folder)
    with dg.DagsterInstance.get() as instance:
        start = time.perf_counter()
        outcome = run_domain(settings, DOMAIN, instance, echo=lambda line: None)
        seconds = time.perf_counter() - start
    if not outcome.success:
        raise RuntimeError(f"the gallery run failed: {outcome.failures}")
    photos = sum(1 for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return settings, seconds, photos


def issue_token(settings) -> str:
    from facerec_pipeline.app.clients import add_client
    from facerec_pipeline.db.engine import session_scope

    with session_scope(settings.database_url) as session:
        return add_client(session, CLIENT, DOMAIN)


# --- 2: the server -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`facerec serve` in a subprocess on 127.0.0.1, pointed at the bench's storage; its RSS
    (with any children) sampled in a thread."""

    def __init__(self, settings, log: Path, *options: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update(
            FACEREC_STORAGE_DIR=str(settings.storage_dir),
            DATABASE_URL=settings.database_url,
            DAGSTER_HOME=str(settings.dagster_home),
        )
        self.log = log
        self._log_file = log.open("wb")
        command = [sys.executable, "-m", "facerec_pipeline.cli.main", "serve"]
        command += ["--host", "127.0.0.1", "--port", str(self.port), *options]
        self.process = subprocess.Popen(
            command, env=env, cwd=REPO, stdout=self._log_file, stderr=subprocess.STDOUT
        )
        self.peak_rss = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def rss(self) -> int:
        import psutil

        try:
            process = psutil.Process(self.process.pid)
            return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])
        except psutil.Error:
            return 0

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, self.rss())
            self._stop.wait(0.1)

    def wait_ready(self, limit: float) -> float:
        """Seconds from the start until /readyz answers 200."""
        import requests

        start = time.perf_counter()
        while time.perf_counter() - start < limit:
            if self.process.poll() is not None:
                raise RuntimeError(f"facerec serve exited:\n{self.log.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return time.perf_counter() - start
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise RuntimeError(
            f"facerec serve not ready in {limit:.0f} s:\n{self.log.read_text()[-3000:]}"
        )

    def stop(self) -> None:
        self._stop.set()
        self._sampler.join()
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log_file.close()


# --- 3: the clients ------------------------------------------------------------------------------
def load(server: Server, token: str, probes: list[Path], clients: int, seconds: float, cap: int):
    """`clients` threads POSTing the probe photos in turn until `seconds` have passed or `cap`
    requests have been sent."""
    import requests

    bodies = [(p.name, p.read_bytes(), PHOTO_TYPES[p.suffix.lower()]) for p in probes]
    level = Level(clients)
    counter = itertools.count()  # next() is atomic under the GIL
    lock = threading.Lock()
    server.peak_rss = server.rss()  # the peak during this level
    start = time.perf_counter()
    deadline = start + seconds

    def client() -> None:
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {token}"
            while time.perf_counter() < deadline:
                number = next(counter)
                if number >= cap:
                    return
                sent = time.perf_counter()
                named = False
                try:
                    answer = session.post(
                        f"{server.url}/v1/recognize",
                        files={"file": bodies[number % len(bodies)]},
                        timeout=120,
                    )
                    status = str(answer.status_code)
                    if answer.status_code == 200:
                        named = any(face.get("identity") for face in answer.json()["faces"])
                except requests.RequestException as error:
                    status = type(error).__name__
                took = time.perf_counter() - sent
                with lock:
                    level.latencies.append(took)
                    level.statuses[status] = level.statuses.get(status, 0) + 1
                    level.named += named

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    level.seconds = time.perf_counter() - start
    level.peak_rss = server.peak_rss
    return level


# --- 4: DeepFace.find ----------------------------------------------------------------------------
def deepface_find(data: DataSet, models_dir: Path, work: Path, sample: int) -> dict:
    """DeepFace.find on a copy of the gallery photos: the first call (which builds its datastore)
    timed apart, then the warm find per probe photo with refresh_database=False (no re-hashing of
    the folder: its fastest) and, on a few photos, with its default refresh_database=True."""
    from facerec_pipeline.core.faces.weights import use_models_dir

    use_models_dir(models_dir)  # before DeepFace is imported: it reads DEEPFACE_HOME then
    from deepface import DeepFace

    db = work / "deepface_db"
    for photo in data.gallery.rglob("*"):
        if photo.suffix.lower() in IMAGE_SUFFIXES:
            (db / photo.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(photo, db / photo.parent.name / photo.name)
    probes = data.probes[:: max(1, len(data.probes) // sample)][:sample]

    def find(probe: Path, refresh: bool):
        return DeepFace.find(
            img_path=str(probe),
            db_path=str(db),
            model_name="Dlib",
            detector_backend="dlib",
            enforce_detection=False,
            refresh_database=refresh,
            silent=True,
        )

    start = time.perf_counter()
    find(probes[0], True)
    build = time.perf_counter() - start
    warm = []
    for probe in probes:
        start = time.perf_counter()
        find(probe, False)
        warm.append(time.perf_counter() - start)
    refreshed = []
    for probe in probes[: min(10, len(probes))]:
        start = time.perf_counter()
        find(probe, True)
        refreshed.append(time.perf_counter() - start)
    return {
        "build_seconds": build,
        "gallery_photos": sum(1 for p in db.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES),
        "probes": len(probes),
        "median": float(np.median(warm)),
        "p95": float(np.percentile(warm, 95)),
        "mean": float(np.mean(warm)),
        "refresh_probes": len(refreshed),
        "refresh_median": float(np.median(refreshed)),
    }


# --- report --------------------------------------------------------------------------------------
def report(
    data: DataSet, built: dict, levels: list[Level], deepface: dict, args: argparse.Namespace
) -> str:
    commit = short_commit() + (" (uncommitted changes)" if uncommitted_changes() else "")
    mib = 2**20
    lines = [
        BEGIN,
        "## Serving under load: concurrent clients against `facerec serve` (`make bench-serve`)",
        "",
        f"Machine: {machine()}. Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Commit: {commit}.",
        "",
        f"Data: {data.label}. Gallery built as a folder domain with `run_domain` (what `facerec "
        f"run` does) from an empty storage root: {built['photos']} photos, {built['people']} "
        f"people, {built['faces']} faces, in {built['build_seconds']:.0f} s. The real `facerec "
        "serve` (one uvicorn worker) started as a subprocess on 127.0.0.1 with a token from "
        f"`add_client` (what `facerec clients add` does): /readyz answered 200 after "
        f"{built['ready_seconds']:.1f} s; RSS once ready {built['ready_rss'] / mib:.0f} MiB. "
        f"Each level: that many client threads (a `requests.Session` each) POSTing the "
        f"{len(data.probes)} probe photos in turn (multipart, Bearer token) for "
        f"{args.seconds:g} s or {args.requests} requests, whichever came first; latency is the "
        "client's (upload, recognition, JSON answer).",
        "",
        "| concurrent clients | requests | errors (non-200) | throughput req/s | p50 ms | p95 ms "
        "| p99 ms | answers naming someone | server peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for level in levels:
        ok = level.statuses.get("200", 0)
        lines.append(
            f"| {level.clients} | {level.requests} | {level.errors} | "
            f"{level.requests / level.seconds:.2f} | {level.percentile(50) * 1000:.0f} | "
            f"{level.percentile(95) * 1000:.0f} | {level.percentile(99) * 1000:.0f} | "
            f"{level.named}/{ok} | {level.peak_rss / mib:.0f} |"
        )
    errors = {s: n for level in levels for s, n in level.statuses.items() if s != "200"}
    if errors:
        lines += ["", f"Errors by status: {errors}."]
    served = levels[0].percentile(50)
    lines += [
        "",
        f"DeepFace.find (Dlib model, dlib detector, cosine) with db_path a folder of the same "
        f"{deepface['gallery_photos']} gallery photos, in this process: its first call, which "
        f"builds DeepFace's datastore of the folder, took {deepface['build_seconds']:.0f} s and is "
        f"left out; then on {deepface['probes']} of the probe photos, warm, "
        f"refresh_database=False (its fastest: the folder not re-hashed): median "
        f"{deepface['median'] * 1000:.0f} ms, p95 {deepface['p95'] * 1000:.0f} ms per photo "
        f"({1 / deepface['mean']:.2f} photos/s); with its default refresh_database=True "
        f"(every file re-hashed per call), median {deepface['refresh_median'] * 1000:.0f} ms "
        f"({deepface['refresh_probes']} photos). Per photo, the served answer at 1 client "
        f"(p50 {served * 1000:.0f} ms, through HTTP) is {deepface['median'] / served:.1f}× "
        f"faster than the warm DeepFace.find, and {deepface['refresh_median'] / served:.1f}× "
        "faster than its default.",
        "",
        "Read with care: the machine has "
        f"{os.cpu_count()} cores, and the client threads (one Python process: the uploads, the "
        "multipart encoding and the JSON decoding) share them with the server. The server is one "
        "uvicorn worker that serializes recognition per domain (the face engine is not "
        "thread-safe), so added clients queue: throughput stays about that of one recognition at "
        "a time and latency grows with the queue. The errors column is the goal (0): every "
        "request answered, none dropped or timed out. Peak RSS is the server process (with any "
        "children) sampled every 0.1 s during the level.",
        "",
        END,
    ]
    return "\n".join(lines)


def gallery_size(settings) -> tuple[int, int]:
    from facerec_pipeline.core.recognition.recognizer import Recognizer

    recognizer = Recognizer.for_domains(settings, [DOMAIN])
    gallery = recognizer.galleries[0]
    return len(gallery.people), len(gallery.matrix)


def main() -> None:
    parser = dev_set_parser(
        __doc__,
        "the folder build_lfw_dev.py wrote (env FACEREC_DEV_SET); default: the sample photos",
    )
    parser.add_argument("--seconds", type=float, default=40.0, help="per concurrency level")
    parser.add_argument("--requests", type=int, default=5_000, help="per concurrency level")
    parser.add_argument("--deepface-sample", type=int, default=100, help="probes for find")
    parser.add_argument("--ready-timeout", type=float, default=600.0)
    parser.add_argument("--output", default=str(REPO / "BENCHMARKS.md"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="facerec-serve-load-") as tmp:
        work = Path(tmp)
        if args.dev_set:
            data = dev_data(checked_dev_set(parser, args.dev_set))
        else:
            data = small_data(work / "data")
        print("building the gallery with run_domain...", flush=True)
        settings, build_seconds, photos = build_gallery(data, work / "root")
        people, faces = gallery_size(settings)
        token = issue_token(settings)
        print("starting facerec serve...", flush=True)
        server = Server(settings, work / "serve.log")
        try:
            ready = server.wait_ready(args.ready_timeout)
            built = {
                "build_seconds": build_seconds,
                "photos": photos,
                "people": people,
                "faces": faces,
                "ready_seconds": ready,
                "ready_rss": server.rss(),
            }
            load(server, token, data.probes[:3], 1, 60.0, 3)  # warm-up, not counted
            levels = []
            for clients in LEVELS:
                print(f"{clients} concurrent clients for {args.seconds:g} s...", flush=True)
                levels.append(
                    load(server, token, data.probes, clients, args.seconds, args.requests)
                )
                level = levels[-1]
                print(
                    f"  {level.requests} requests, {level.errors} errors, "
                    f"p50 {level.percentile(50) * 1000:.0f} ms",
                    flush=True,
                )
        finally:
            server.stop()
        print("DeepFace.find on the same photos...", flush=True)
        deepface = deepface_find(data, settings.models_dir, work, args.deepface_sample)
    section = report(data, built, levels, deepface, args)
    print(section)
    write_section(Path(args.output), section, BEGIN, END)


if __name__ == "__main__":
    main()
