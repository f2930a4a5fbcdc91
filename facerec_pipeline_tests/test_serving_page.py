"""The page at `/` of `facerec serve`, in a real headless Chromium (Debian's `chromium`, driven by
Playwright, which downloads no browser here): a person pastes a token, drops a photo and sees
the faces boxed and named on it. The server is the real `facerec serve` on a gallery built by
`facerec run` (domain alpha: Obama and Eileen Collins)."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator

import pytest
import requests
from PIL import Image, ImageOps

from facerec_pipeline.app.clients import add_client
from facerec_pipeline.db.engine import session_scope
from facerec_pipeline_tests.conftest import build_folder
from facerec_pipeline_tests.test_serving import OBAMA, World, real_serve

TIMEOUT_MS = 60_000  # one recognition on 2 cores takes seconds; bounded all the same


@pytest.fixture(scope="module")
def world(tmp_path_factory, models_dir, photos, composed) -> World:
    base = tmp_path_factory.mktemp("serving_page")
    world = World(base, models_dir)
    folder = build_folder(
        base / "alpha",
        {
            "barack_obama": [photos / "obama.jpg", photos / "obama2.jpg"],
            "eileen_collins": [composed["astronaut.png"]],
        },
        mapping=OBAMA,
    )
    world.facerec(
        *("domains", "add", "alpha", "--name", "Alpha", "--source", "folder"),
        *("--path", str(folder)),
    )
    world.facerec("run", "--domain", "alpha")
    with session_scope(world.settings.database_url) as session:
        world.tokens["alpha"] = add_client(session, "app-page", "alpha")
    return world


@pytest.fixture(scope="module")
def server(world, tmp_path_factory) -> Iterator[str]:
    """The real `facerec serve` on a free port, once /readyz answers 200."""
    with real_serve(world.env, tmp_path_factory.mktemp("serve_log") / "serve.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium; missing chromium or Playwright fails, never skips."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail(
            "the page test needs Debian's chromium: `apt-get install chromium` "
            "(as root; .ci/run installs it when missing)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the page test needs Playwright for Python: pip install -e '.[dev]'")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            timeout=TIMEOUT_MS,
        )
        try:
            yield launched
        finally:
            launched.close()


class Watched:
    """A fresh browser tab and every console error and uncaught exception in it."""

    def __init__(self, browser, url: str):
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.errors: list[str] = []
        self.page.on(
            "console",
            lambda message: self.errors.append(message.text) if message.type == "error" else None,
        )
        self.page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        response = self.page.goto(url)
        assert response is not None and response.status == 200

    def status(self) -> str:
        """The status line once the page settles (done or error)."""
        # A selector, not a JS predicate: the page's Content-Security-Policy forbids eval.
        self.page.wait_for_selector(
            "body[data-state=done], body[data-state=error]", state="attached", timeout=TIMEOUT_MS
        )
        return self.page.inner_text("#status")

    def close(self) -> None:
        self.context.close()


def test_the_page_needs_no_token_and_shows_nothing_of_the_server(server, world):
    page = requests.get(f"{server}/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    # The people list paints blurhash placeholders (data:) and fetched thumbnails (blob:).
    (images,) = [part.split()[1:] for part in policy.split(";") if part.split()[0] == "img-src"]
    assert {"'self'", "data:", "blob:"} <= set(images)
    assert str(world.settings.storage_dir) not in page.text and "alpha" not in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing fetched elsewhere
    assert "/" not in requests.get(f"{server}/openapi.json", timeout=10).json()["paths"]


def test_a_person_drops_a_photo_and_sees_the_faces_named(server, world, photos, browser):
    photo = photos / "obama3.jpg"
    with Image.open(photo) as opened:
        expected_size = ImageOps.exif_transpose(opened).size
    with photo.open("rb") as file:
        answer = requests.post(
            f"{server}/v1/recognize",
            headers=world.auth("alpha"),
            files={"file": (photo.name, file, "image/jpeg")},
            timeout=60,
        ).json()
    (face,) = answer["faces"]
    assert face["identity"]["person"] == "Barack Obama"

    tab = Watched(browser, server)
    try:
        page = tab.page
        # No token yet: the page says where to get one, and recognizes nothing.
        assert "facerec clients add" in page.inner_text("#status")
        page.set_input_files("#file", str(photo))
        assert "facerec clients add" in tab.status()
        assert page.is_hidden("#canvas")

        page.fill("#token", world.tokens["alpha"])
        page.set_input_files("#file", str(photo))
        assert tab.status() == "1 face(s), 1 named."
        rows = page.locator("#faces tbody tr")
        assert rows.count() == 1
        cells = rows.first.locator("td").all_inner_texts()
        assert cells[1] == "Barack Obama"
        assert float(cells[2]) == face["decision"]["score"] <= float(cells[3])
        assert "Barack Obama (" in cells[4]
        assert "alpha (gallery v1)" in page.inner_text("#searched")

        # The canvas holds the photo at its own size, with the face's box drawn on it.
        drawn = page.evaluate(
            """([x, y]) => {
                const canvas = document.getElementById("canvas");
                const context = canvas.getContext("2d");
                const all = context.getImageData(0, 0, canvas.width, canvas.height).data;
                let lit = 0;
                for (let i = 0; i < all.length; i += 4) {
                    if (all[i] + all[i + 1] + all[i + 2]) lit++;
                }
                return {
                    width: canvas.width, height: canvas.height, lit: lit,
                    box: Array.from(context.getImageData(x, y, 1, 1).data),
                };
            }""",
            [face["box"]["x"], face["box"]["y"] + face["box"]["h"] // 2],
        )
        assert (drawn["width"], drawn["height"]) == expected_size
        assert drawn["lit"] > 0.5 * drawn["width"] * drawn["height"]
        red, green, blue, _ = drawn["box"]
        assert green > 120 and red < 80 and blue < 130, drawn["box"]  # the "named" green
        assert tab.errors == []

        # The token stays in this tab's sessionStorage only, and survives a reload.
        stored = page.evaluate(
            "[sessionStorage.getItem('facerec-token'), localStorage.length, document.cookie]"
        )
        assert stored == [world.tokens["alpha"], 0, ""]
        page.reload()
        assert page.input_value("#token") == world.tokens["alpha"]
        assert tab.errors == []
    finally:
        tab.close()


def test_a_wrong_token_shows_the_401_in_words(server, photos, browser):
    tab = Watched(browser, server)
    try:
        page = tab.page
        assert tab.errors == []
        page.fill("#token", "frc_not-a-real-token")
        # Dropped on the zone, as a person drags a file from their desktop.
        page.evaluate(
            """(data) => {
                const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
                const transfer = new DataTransfer();
                transfer.items.add(new File([bytes], "obama3.jpg", {type: "image/jpeg"}));
                const zone = document.getElementById("drop");
                zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true}));
            }""",
            base64.b64encode((photos / "obama3.jpg").read_bytes()).decode(),
        )
        message = tab.status()
        assert "The token was refused" in message and "HTTP 401" in message, message
        assert "unknown or revoked token" in message
        assert page.is_hidden("#canvas") and page.is_hidden("#faces")
        # Chromium logs the refused request itself; nothing else may go wrong.
        assert all("401" in error for error in tab.errors), tab.errors
    finally:
        tab.close()


def test_an_unreadable_file_shows_the_422_in_words(server, world, tmp_path, browser):
    not_a_photo = tmp_path / "notes.jpg"
    not_a_photo.write_bytes(b"hello, not a photo")
    tab = Watched(browser, server)
    try:
        tab.page.fill("#token", world.tokens["alpha"])
        tab.page.set_input_files("#file", str(not_a_photo))
        message = tab.status()
        assert "The photo could not be read (HTTP 422)" in message, message
        assert "unreadable_image" in message
    finally:
        tab.close()


def test_the_people_list_paints_placeholders_then_the_thumbnails(server, world, browser):
    listed = requests.get(f"{server}/v1/people", headers=world.auth("alpha"), timeout=30).json()
    expected = [(person["name"], person["width"], person["height"]) for person in listed["people"]]
    assert [name for name, _, _ in expected] == ["Barack Obama", "Eileen Collins"]

    tab = Watched(browser, server)
    try:
        page = tab.page
        assert page.locator("#people li").count() == 0  # no token, no list
        held = []  # the thumbnails' requests, answered once the placeholders are checked
        page.route("**/v1/previews/**", lambda route: held.append(route))
        page.fill("#token", world.tokens["alpha"])
        page.wait_for_selector("#people[data-state=done]", state="attached")
        assert page.inner_text("#people-status") == "2 people."
        tiles = page.locator("#people li")
        assert tiles.count() == 2
        assert [text.split("\n")[0] for text in tiles.all_inner_texts()] == [
            name for name, _, _ in expected
        ]
        for _ in range(100):
            if len(held) == 2:
                break
            page.wait_for_timeout(100)
        assert len(held) == 2
        assert all(
            route.request.headers["authorization"] == "Bearer " + world.tokens["alpha"]
            for route in held
        )

        def images() -> list[dict]:
            return page.evaluate(
                """() => Array.from(document.querySelectorAll("#people img"), (image) => ({
                    src: image.currentSrc || image.src, complete: image.complete,
                    naturalWidth: image.naturalWidth, naturalHeight: image.naturalHeight,
                    width: image.getBoundingClientRect().width,
                    height: image.getBoundingClientRect().height,
                }))"""
            )

        # First the blurhash, a PNG data URI at the thumbnail's ratio...
        page.wait_for_selector("#people img >> nth=1", state="attached")
        for _ in range(100):  # decoded: the page's policy lets data: images paint
            placeholders = images()
            if all(shown["complete"] and shown["naturalWidth"] for shown in placeholders):
                break
            page.wait_for_timeout(100)
        assert len(placeholders) == 2
        assert [shown["naturalWidth"] for shown in placeholders] == [32, 32]
        for shown, (_, width, height) in zip(placeholders, expected, strict=True):
            assert shown["src"].startswith("data:image/png;base64,"), shown["src"][:40]
            assert shown["width"] > 0  # painted at the thumbnail's ratio
            assert abs(shown["height"] - shown["width"] * height / width) <= 1.5
        # ...then the thumbnail itself, fetched with the token and shown from a blob: URL.
        for route in held:
            route.continue_()
        for nth in (1, 2):
            page.wait_for_selector(
                f"#people li:nth-child({nth})[data-state=loaded]", state="attached"
            )
        for shown, (_, width, height) in zip(images(), expected, strict=True):
            assert shown["src"].startswith("blob:"), shown["src"][:40]
            assert (shown["naturalWidth"], shown["naturalHeight"]) == (width, height)
        assert tab.errors == []
    finally:
        tab.close()


def test_the_api_docs_render_offline_from_the_servers_own_files(server, browser):
    """/docs and /redoc in Chromium with every request to another host refused: the pages
    render the API from scripts and styles the server itself serves."""
    for path, rendered in (("/docs", ".opblock-summary-path"), ("/redoc", "h1")):
        html = requests.get(f"{server}{path}", timeout=10).text
        assert "cdn." not in html and "fonts.googleapis" not in html
        context = browser.new_context()
        elsewhere: list[str] = []

        def only_this_server(route, request, found=elsewhere):
            if request.url.startswith(server):
                route.continue_()
                return
            # Refused, all of it; only an image may be asked (ReDoc's "by Redocly" logo,
            # which the page shows without): nothing it needs to render comes from elsewhere.
            if request.resource_type != "image":
                found.append(f"{request.resource_type} {request.url}")
            route.abort()

        try:
            page = context.new_page()
            page.route("**/*", only_this_server)
            page.set_default_timeout(TIMEOUT_MS)
            assert page.goto(f"{server}{path}").status == 200
            page.wait_for_selector(rendered, timeout=TIMEOUT_MS)
            text = page.inner_text("body")
            assert "/v1/recognize" in text and "facerec" in text, path
            assert not elsewhere, elsewhere
        finally:
            context.close()
