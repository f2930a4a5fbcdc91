"""`facerec serve`'s HTTP service, on real galleries built by `facerec run`: two folder domains
(alpha: Obama and Eileen Collins; beta: Biden and Eileen Collins) and gamma, which inherits alpha
and has no gallery of its own; one token each."""

from __future__ import annotations

import base64
import glob
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import requests
from click.testing import CliRunner
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from facerec_pipeline.app.clients import add_client, revoke_client
from facerec_pipeline.app.promotion import rollback
from facerec_pipeline.app.stats import domain_stats
from facerec_pipeline.cli.main import cli
from facerec_pipeline.core.images import image_files
from facerec_pipeline.core.recognition.recognizer import Recognizer
from facerec_pipeline.db.engine import session_scope
from facerec_pipeline.db.models import Artifact
from facerec_pipeline.serving.app import create_app
from facerec_pipeline.settings import Settings
from facerec_pipeline_tests.conftest import build_folder, cli_env

OBAMA = {"barack_obama": {"full_name": "Barack Obama", "wikidata_id": "Q76"}}


class World:
    """The storage root, the `facerec` CLI on it, the domains' folders and tokens."""

    def __init__(self, base: Path, models_dir: Path):
        self.env = cli_env(base, models_dir)
        self.runner = CliRunner()
        storage = base / "storage"
        self.settings = Settings(storage, f"sqlite:///{storage / 'facerec.db'}")
        self.folders: dict[str, Path] = {}
        self.tokens: dict[str, str] = {}

    def facerec(self, *args: str):
        result = self.runner.invoke(cli, list(args), env=self.env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@pytest.fixture(scope="module")
def world(tmp_path_factory, models_dir, photos, composed) -> World:
    base = tmp_path_factory.mktemp("serving")
    world = World(base, models_dir)
    world.folders = {
        "alpha": build_folder(
            base / "alpha",
            {
                "barack_obama": [photos / "obama.jpg", photos / "obama2.jpg"],
                "eileen_collins": [composed["astronaut.png"]],
            },
            mapping=OBAMA,
        ),
        "beta": build_folder(
            base / "beta",
            {"joe_biden": [photos / "biden.jpg"], "eileen_collins": [composed["astronaut.png"]]},
        ),
        "gamma": base / "gamma",
    }
    world.folders["gamma"].mkdir()
    for code, folder in world.folders.items():
        inherit = ["--inherit", "alpha"] if code == "gamma" else []
        world.facerec(
            *("domains", "add", code, "--name", code.title(), "--source", "folder"),
            *("--path", str(folder), *inherit),
        )
    world.facerec("run", "--domain", "alpha")
    world.facerec("run", "--domain", "beta")
    with session_scope(world.settings.database_url) as session:
        for code in ("alpha", "beta", "gamma"):
            world.tokens[code] = add_client(session, f"app-{code}", code)
        world.tokens["revoked"] = add_client(session, "app-revoked", "alpha")
        revoke_client(session, "app-revoked")
    return world


def wait_ready(get, seconds: float = 120) -> dict:
    """/readyz once every domain with a production gallery serves."""
    deadline = time.monotonic() + seconds
    while True:
        response = get("/readyz")
        if response.status_code == 200 and response.json()["status"] == "ready":
            return response.json()
        assert response.status_code in (200, 503), response.text
        assert time.monotonic() < deadline, response.json()
        time.sleep(0.2)


@pytest.fixture(scope="module")
def client(world):
    with TestClient(create_app(world.settings)) as test_client:
        ready = wait_ready(test_client.get)
        assert ready == {"status": "ready", "serving": 2, "loading": 0, "cannot_load": 0}
        yield test_client


def post_photo(client, world, who: str, photo: Path):
    with photo.open("rb") as file:
        return client.post(
            "/v1/recognize",
            headers=world.auth(who),
            files={"file": (photo.name, file, "image/jpeg")},
        )


def test_recognize_answers_as_the_recognizer_does(client, world, photos):
    recognizer = Recognizer.for_domains(world.settings, ["alpha"])
    expected = recognizer.recognize_image(photos / "obama3.jpg")
    assert expected["faces"][0]["identity"]["person"] == "Barack Obama"

    multipart = post_photo(client, world, "alpha", photos / "obama3.jpg")
    assert multipart.status_code == 200, multipart.text
    answer = multipart.json()
    assert answer["faces"] == json.loads(json.dumps(expected["faces"]))
    assert answer["image"] == "obama3.jpg"  # the client's name for it, never a server path
    assert answer["domain"] == "alpha" and answer["search_order"] == ["alpha"]
    (gallery,) = answer["galleries"]
    assert gallery["domain"] == "alpha" and gallery["version"] == 1
    assert gallery["operating_point"]["threshold"] == answer["faces"][0]["decision"]["threshold"]

    raw = client.post(
        "/v1/recognize",
        headers={**world.auth("alpha"), "Content-Type": "image/jpeg"},
        content=(photos / "obama3.jpg").read_bytes(),
    )
    assert raw.status_code == 200, raw.text
    assert raw.json()["faces"] == answer["faces"] and raw.json()["image"] is None
    # Uploads are written to a private temporary file, deleted after the answer.
    assert not glob.glob(os.path.join(tempfile.gettempdir(), "facerec-upload-*"))

    # A 16-bit grey PNG of the same photo is read as it looks, and named.
    grey = np.asarray(Image.open(photos / "obama3.jpg").convert("L")).astype(np.uint16) * 257
    wide = io.BytesIO()
    Image.fromarray(grey).save(wide, format="PNG")
    sixteen = client.post(
        "/v1/recognize",
        headers=world.auth("alpha"),
        files={"file": ("obama3_16bit.png", wide.getvalue(), "image/png")},
    )
    assert sixteen.status_code == 200, sixteen.text
    assert sixteen.json()["faces"][0]["identity"]["person"] == "Barack Obama"


def test_a_token_reaches_its_own_domain_only(client, world, photos):
    # Biden is enrolled in beta only: alpha's client never gets his name, beta's does.
    from_alpha = post_photo(client, world, "alpha", photos / "biden.jpg")
    assert from_alpha.status_code == 200, from_alpha.text
    assert "Joe Biden" not in from_alpha.text and "beta" not in from_alpha.text
    assert from_alpha.json()["faces"][0]["identity"] is None
    from_beta = post_photo(client, world, "beta", photos / "biden.jpg")
    assert from_beta.json()["faces"][0]["identity"]["person"] == "Joe Biden"

    # There is no domain parameter to widen the search.
    sneaky = client.post(
        "/v1/recognize?domain=beta",
        headers=world.auth("alpha"),
        files={"file": ("biden.jpg", (photos / "biden.jpg").read_bytes(), "image/jpeg")},
    )
    assert "Joe Biden" not in sneaky.text

    # gamma inherits alpha: its search order lists both, with what serves each.
    listed = client.get("/v1/domains", headers=world.auth("gamma")).json()
    assert listed["domain"] == "gamma" and listed["client"] == "app-gamma"
    assert [(d["domain"], d["gallery_version"]) for d in listed["search_order"]] == [
        ("gamma", None),
        ("alpha", 1),
    ]
    # ...but without a production gallery of its own it cannot recognize yet.
    missing = post_photo(client, world, "gamma", photos / "obama3.jpg")
    assert missing.status_code == 409
    assert "facerec run --domain gamma" in missing.json()["detail"]


def test_stats_of_the_tokens_own_domain_only(client, world):
    own = client.get("/v1/domains/alpha/stats", headers=world.auth("alpha"))
    assert own.status_code == 200, own.text
    with session_scope(world.settings.database_url) as session:
        expected = domain_stats(session, "alpha")
    figures = own.json()
    assert figures["domain"] == "alpha"
    assert figures["faces_accepted"] == expected["faces_accepted"] == 3
    assert figures["production_gallery"]["version"] == 1
    for other in ("beta", "nowhere"):
        refused = client.get(f"/v1/domains/{other}/stats", headers=world.auth("alpha"))
        assert refused.status_code == 403 and "alpha" in refused.json()["detail"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer frc_unknown"}, {"Authorization": "Basic YTpi"}, "revoked"],
)
def test_missing_unknown_or_revoked_tokens_get_401(client, world, photos, headers):
    if headers == "revoked":
        headers = world.auth("revoked")
    for response in (
        client.post(
            "/v1/recognize",
            headers={**headers, "Content-Type": "image/jpeg"},
            content=(photos / "obama3.jpg").read_bytes(),
        ),
        client.get("/v1/domains", headers=headers),
        client.get("/v1/domains/alpha/stats", headers=headers),
        client.get("/v1/people", headers=headers),
        client.get(f"/v1/previews/{first_preview_id(world)}", headers=headers),
    ):
        assert response.status_code == 401, response.text
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json()["detail"]


def first_preview_id(world) -> int:
    with session_scope(world.settings.database_url) as session:
        return session.scalar(
            select(Artifact.id).where(Artifact.stage == "thumbnail_400").order_by(Artifact.id)
        )


def assert_no_server_path(world, response) -> None:
    """Neither the storage root nor a file's path under it in what a client reads."""
    shown = response.text + json.dumps(dict(response.headers))
    storage = world.settings.storage_dir
    for folder in {str(storage), str(storage.resolve()), tempfile.gettempdir()}:
        assert folder not in shown
    with session_scope(world.settings.database_url) as session:
        stored = session.scalars(select(Artifact.path)).all()
    assert stored and not any(path in shown for path in stored)


def people_of(client, world, who: str, **params) -> dict:
    response = client.get("/v1/people", headers=world.auth(who), params=params)
    assert response.status_code == 200, response.text
    assert_no_server_path(world, response)
    return response.json()


def test_people_lists_each_serving_person_with_thumbnail_and_placeholder(client, world):
    alpha = people_of(client, world, "alpha")
    assert alpha["domain"] == "alpha" and alpha["search_order"] == ["alpha"]
    assert alpha["galleries"] == [{"domain": "alpha", "version": 1}]
    assert (alpha["total"], alpha["offset"], alpha["limit"]) == (2, 0, 200)
    listed = {person["name"]: person for person in alpha["people"]}
    assert list(listed) == ["Barack Obama", "Eileen Collins"]
    assert listed["Barack Obama"]["faces"] == 2 and listed["Eileen Collins"]["faces"] == 1
    with session_scope(world.settings.database_url) as session:
        thumbnails = {
            artifact.id: artifact
            for artifact in session.scalars(select(Artifact).where(Artifact.domain == "alpha"))
            if artifact.stage == "thumbnail_400"
        }
    for person in alpha["people"]:
        assert set(person) == {
            "domain",
            "name",
            "faces",
            "thumbnail_url",
            "width",
            "height",
            "blurhash",
            "placeholder",
        }
        assert person["domain"] == "alpha"
        found = re.fullmatch(r"/v1/previews/(\d+)", person["thumbnail_url"] or "")
        assert found, person
        artifact = thumbnails[int(found.group(1))]  # the person's own 400 px thumbnail
        assert (person["width"], person["height"]) == (artifact.width, artifact.height)
        assert 0 < max(person["width"], person["height"]) <= 400
        assert person["blurhash"] == artifact.blurhash and len(person["blurhash"]) >= 6
        prefix = "data:image/png;base64,"
        assert person["placeholder"].startswith(prefix)
        with Image.open(io.BytesIO(base64.b64decode(person["placeholder"][len(prefix) :]))) as png:
            assert png.format == "PNG" and png.width == 32
            assert abs(png.height - 32 * person["height"] / person["width"]) <= 1

    # Bounded: `limit` people from `offset`, at most 1000 an answer.
    first = people_of(client, world, "alpha", limit=1)
    second = people_of(client, world, "alpha", limit=1, offset=1)
    assert [p["name"] for p in first["people"] + second["people"]] == list(listed)
    assert first["total"] == second["total"] == 2
    assert people_of(client, world, "alpha", offset=5)["people"] == []
    for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}):
        refused = client.get("/v1/people", headers=world.auth("alpha"), params=bad)
        assert refused.status_code == 422, bad

    # beta's token lists beta's people only; gamma (no gallery) those of alpha, which it inherits.
    beta = people_of(client, world, "beta")
    assert [(p["domain"], p["name"]) for p in beta["people"]] == [
        ("beta", "Eileen Collins"),
        ("beta", "Joe Biden"),
    ]
    assert "Barack Obama" not in json.dumps(beta)
    gamma = people_of(client, world, "gamma")
    assert gamma["search_order"] == ["gamma", "alpha"]
    assert gamma["galleries"] == [{"domain": "alpha", "version": 1}]
    assert gamma["people"] == alpha["people"]


def test_previews_serve_the_jpeg_to_the_domains_tokens_only(client, world):
    people = people_of(client, world, "alpha")["people"]
    url = people[0]["thumbnail_url"]
    for who in ("alpha", "gamma"):  # gamma inherits alpha
        served = client.get(url, headers=world.auth(who))
        assert served.status_code == 200, served.text
        assert served.headers["content-type"] == "image/jpeg"
        assert served.headers["cache-control"] == "private, max-age=86400"
        assert_no_server_path(world, served)
        with Image.open(io.BytesIO(served.content)) as jpeg:
            assert jpeg.format == "JPEG" and max(jpeg.size) <= 400
            assert jpeg.size == (people[0]["width"], people[0]["height"])

    # Another domain's preview reads exactly as one that does not exist.
    with session_scope(world.settings.database_url) as session:
        last = session.scalar(select(Artifact.id).order_by(Artifact.id.desc()))
        original = session.scalar(
            select(Artifact.id).where(Artifact.domain == "alpha", Artifact.stage == "original")
        )
        web = session.scalars(
            select(Artifact).where(Artifact.domain == "alpha", Artifact.stage == "web_800")
        ).first()
        assert web is not None and original is not None
        web_id, web_file = web.id, world.settings.absolute(web.path)
    artifact_id = int(url.rsplit("/", 1)[1])
    for who, asked in (
        ("beta", artifact_id),
        ("beta", web_id),
        ("alpha", last + 1000),
        ("alpha", original),  # not a preview: the stored photo itself is never served
        ("alpha", 2**63),  # beyond any database's integer: no such preview, not a 500
        ("alpha", 10**30),
        ("alpha", 0),
        ("alpha", -1),
    ):
        refused = client.get(f"/v1/previews/{asked}", headers=world.auth(who))
        assert refused.status_code == 404, (who, asked)
        assert refused.json() == {"detail": f"no preview {asked} for this token"}
    assert client.get("/v1/previews/not-a-number", headers=world.auth("alpha")).status_code == 422

    # The 800 px web copy too; its file gone, a 404 says what an administrator runs.
    served = client.get(f"/v1/previews/{web_id}", headers=world.auth("alpha"))
    assert served.status_code == 200
    with Image.open(io.BytesIO(served.content)) as jpeg:
        assert jpeg.format == "JPEG" and max(jpeg.size) <= 800
    aside = web_file.with_name(web_file.name + ".aside")
    shutil.move(web_file, aside)
    try:
        missing = client.get(f"/v1/previews/{web_id}", headers=world.auth("alpha"))
    finally:
        shutil.move(aside, web_file)
    assert missing.status_code == 404
    assert "facerec artifacts verify" in missing.json()["detail"]
    assert_no_server_path(world, missing)


def test_uploads_are_decoded_from_their_bytes_never_written_to_a_file(
    client, world, photos, monkeypatch
):
    """No temporary file per upload: the image reader takes the bytes."""

    def no_files(*args, **kwargs):
        raise AssertionError("a temporary file was made for an upload")

    monkeypatch.setattr(tempfile, "mkstemp", no_files)
    answer = post_photo(client, world, "alpha", photos / "obama3.jpg")
    assert answer.status_code == 200, answer.text
    assert answer.json()["image"] == "obama3.jpg"
    assert answer.json()["faces"][0]["identity"]["person"] == "Barack Obama"
    unreadable = client.post(
        "/v1/recognize",
        headers=world.auth("alpha"),
        files={"file": ("notes.jpg", b"not a photo", "image/jpeg")},
    )
    assert unreadable.status_code == 422
    assert "BytesIO" not in unreadable.json()["detail"], unreadable.json()


def test_each_request_uses_one_database_session(client, world, photos):
    """Authentication, the search order, what serves each domain and the answer's own reads:
    all in the request's one session (it opened three or more)."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    assert post_photo(client, world, "alpha", photos / "obama3.jpg").status_code == 200  # loaded
    auth = world.auth("alpha")
    calls = {
        "recognize": lambda: post_photo(client, world, "alpha", photos / "obama3.jpg"),
        "people": lambda: client.get("/v1/people", headers=auth),
        "domains": lambda: client.get("/v1/domains", headers=auth),
        "readyz": lambda: client.get("/readyz", headers=auth),
        "stats": lambda: client.get("/v1/domains/alpha/stats", headers=auth),
    }
    for name, call in calls.items():
        sessions = []  # kept alive: their ids stay distinct

        def began(session, transaction, connection, sessions=sessions):
            sessions.append(session)

        event.listen(Session, "after_begin", began)
        try:
            answer = call()
        finally:
            event.remove(Session, "after_begin", began)
        assert answer.status_code == 200, (name, answer.text)
        assert len({id(session) for session in sessions}) == 1, name


def test_unusable_uploads_get_clear_4xx(client, world, photos, composed, monkeypatch):
    def post(content: bytes, content_type: str):
        return client.post(
            "/v1/recognize",
            headers={**world.auth("alpha"), "Content-Type": content_type},
            content=content,
        )

    not_image = post(b"hello, not a photo", "image/jpeg")
    assert not_image.status_code == 422
    assert not_image.json()["detail"].startswith("unreadable_image")
    corrupt = post_photo(client, world, "alpha", composed["corrupt.jpg"])
    assert corrupt.status_code == 422 and "unreadable_image" in corrupt.json()["detail"]
    for refused in (not_image, corrupt):  # no server path in what a client reads
        detail = refused.json()["detail"]
        assert tempfile.gettempdir() not in detail and str(world.settings.storage_dir) not in detail
    assert post(b"hello", "text/plain").status_code == 415
    assert post(b"", "image/png").status_code == 422
    no_file = client.post(
        "/v1/recognize",
        headers=world.auth("alpha"),
        files={"photo": ("obama3.jpg", b"\xff\xd8", "image/jpeg")},
    )
    assert no_file.status_code == 422 and "`file`" in no_file.json()["detail"]
    form = client.post("/v1/recognize", headers=world.auth("alpha"), data={"file": "a name"})
    assert form.status_code == 415  # a urlencoded form carries no photo
    # A photo without a face: 200 with no faces, as `facerec recognize` answers.
    blank = post_photo(client, world, "alpha", composed["blank.jpg"])
    assert blank.status_code == 200 and blank.json()["faces"] == []
    # Over the reader's pixel limit: 413 with its message.
    monkeypatch.setattr(image_files, "MAX_IMAGE_PIXELS", 10_000)
    huge = post_photo(client, world, "alpha", photos / "obama3.jpg")
    assert huge.status_code == 413 and "limit 10000" in huge.json()["detail"]


def test_uploads_over_the_byte_limit_get_413(world, photos):
    photo = (photos / "obama3.jpg").read_bytes()
    small = TestClient(create_app(world.settings, max_upload_bytes=len(photo) - 1, warm=False))
    raw = small.post(
        "/v1/recognize",
        headers={**world.auth("alpha"), "Content-Type": "image/jpeg"},
        content=photo,
    )
    assert raw.status_code == 413 and "byte limit" in raw.json()["detail"]
    multipart = small.post(
        "/v1/recognize",
        headers=world.auth("alpha"),
        files={"file": ("obama3.jpg", photo, "image/jpeg")},
    )
    assert multipart.status_code == 413


def test_health_readiness_and_docs(world, monkeypatch):
    app = TestClient(create_app(world.settings, warm=False))
    assert app.get("/healthz").json() == {"status": "ok"}
    pool = app.app.state.pool
    monkeypatch.setattr(pool, "warm_in_background", lambda: None)  # only what the test loads
    # Nothing loaded yet: not ready, counted, no domain named to a caller without a token.
    first = app.get("/readyz")
    assert first.status_code == 503, first.text
    assert first.json() == {
        "status": "not ready",
        "detail": "loading",
        "serving": 0,
        "loading": 2,
        "cannot_load": 0,
    }
    # One domain loaded (as its first request does): ready for it while the other loads.
    pool.use(["alpha"], lambda recognizer: None)
    partly = app.get("/readyz")
    assert partly.status_code == 200, partly.text
    assert partly.json() == {"status": "partly ready", "serving": 1, "loading": 1, "cannot_load": 0}
    for body in (first.text, partly.text):
        assert "alpha" not in body and "beta" not in body
    # A client's token: its own search order, each domain's state and serving version.
    alpha = app.get("/readyz", headers=world.auth("alpha"))
    assert alpha.status_code == 200 and alpha.json() == {
        "status": "ready",
        "domain": "alpha",
        "search_order": [{"domain": "alpha", "version": 1, "state": "serving"}],
    }
    beta = app.get("/readyz", headers=world.auth("beta"))
    assert beta.status_code == 503 and beta.json()["search_order"] == [
        {"domain": "beta", "version": 1, "state": "loading"}
    ]
    gamma = app.get("/readyz", headers=world.auth("gamma"))  # no gallery, inherits alpha
    assert gamma.status_code == 200 and gamma.json()["search_order"] == [
        {"domain": "gamma", "version": None, "state": "no gallery yet"},
        {"domain": "alpha", "version": 1, "state": "serving"},
    ]
    assert app.get("/readyz", headers={"Authorization": "Bearer nope"}).status_code == 401
    monkeypatch.undo()
    assert wait_ready(app.get)["serving"] == 2
    paths = app.get("/openapi.json").json()["paths"]
    assert {
        "/v1/recognize",
        "/v1/domains",
        "/v1/domains/{code}/stats",
        "/v1/people",
        "/v1/previews/{artifact_id}",
        "/healthz",
    } <= set(paths)
    assert app.get("/docs").status_code == 200


@contextmanager
def real_serve(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """The real `facerec serve` as a subprocess on a free 127.0.0.1 port, yielded as its URL
    once /readyz answers 200; stopped (terminate, then kill) when the block ends."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = log_path.open("w+")
    server = subprocess.Popen(
        [sys.executable, "-m", "facerec_pipeline.cli.main", "serve", "--port", str(port)],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, log_path.read_text()
            try:
                if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()


def test_the_real_command_serves_over_http(world, photos, tmp_path):
    with (
        real_serve(world.env, tmp_path / "serve.log") as url,
        (photos / "obama3.jpg").open("rb") as photo,
    ):
        answer = requests.post(
            f"{url}/v1/recognize",
            headers=world.auth("alpha"),
            files={"file": ("obama3.jpg", photo, "image/jpeg")},
            timeout=60,
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["faces"][0]["identity"]["person"] == "Barack Obama"


def test_a_new_version_and_a_rollback_serve_without_restart(client, world, photos):
    """Last: it publishes beta v2 (beta also enrols Obama), then rolls back to v1."""

    def obama_from_beta():
        answer = post_photo(client, world, "beta", photos / "obama3.jpg")
        assert answer.status_code == 200, answer.text
        answer = answer.json()
        identity = answer["faces"][0]["identity"]
        return answer["galleries"][0]["version"], identity and identity["person"]

    assert obama_from_beta() == (1, None)
    build_folder(
        world.folders["beta"],
        {"barack_obama": [photos / "obama.jpg", photos / "obama2.jpg"]},
        mapping=OBAMA,
    )
    # Requests keep coming while the new version is built and published: none may fail.
    answers, failures, stop = [], [], threading.Event()

    def keep_asking():
        while not stop.is_set():
            try:
                answers.append(obama_from_beta())
            except Exception as failure:  # noqa: BLE001 - a failed request is what is counted
                failures.append(repr(failure))

    askers = [threading.Thread(target=keep_asking) for _ in range(2)]
    for asker in askers:
        asker.start()
    try:
        world.facerec("run", "--domain", "beta")
        deadline = time.monotonic() + 60
        while (2, "Barack Obama") not in answers[-2:] and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        for asker in askers:
            asker.join(timeout=60)
    assert failures == []
    assert len(answers) >= 4 and set(answers) <= {(1, None), (2, "Barack Obama")}
    assert answers[0] == (1, None) and answers[-1] == (2, "Barack Obama")
    assert obama_from_beta() == (2, "Barack Obama")
    with session_scope(world.settings.database_url) as session:
        rollback(session, world.settings, "beta", 1)
    # Readiness says the version that serves now, before any request loads it.
    ready = client.get("/readyz", headers=world.auth("beta")).json()
    assert ready["search_order"] == [{"domain": "beta", "version": 1, "state": "serving"}]
    assert obama_from_beta() == (1, None)
    listed = client.get("/v1/domains", headers=world.auth("beta")).json()
    assert listed["search_order"][0]["gallery_version"] == 1
