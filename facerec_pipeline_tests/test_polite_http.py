"""The HTTP client's etiquette and fault handling against a local server (real sockets), so
that urllib3's retries run for real: the `responses` library replaces the adapter's send and
would skip them. Waits go through the session's `sleep`, recorded here instead of slept."""

import hashlib
import json
import socket
import time

import pytest
from werkzeug import Response

from facerec_pipeline.sources.polite_http import (
    BadResponse,
    FinalHttpError,
    NotAnImage,
    PoliteSession,
    RetriesExhausted,
    RetryPolicy,
    TooLarge,
    UserAgentRefused,
    check_user_agent,
)
from facerec_pipeline_tests.wikimedia_fixtures import fixture_text

AGENT = "facerec-test/1.0 (https://example.org/contact; ops@example.org)"


@pytest.fixture
def waits():
    return []


@pytest.fixture
def http(waits):
    return PoliteSession(AGENT, sleep=waits.append, retry=RetryPolicy(max_attempts=4))


@pytest.fixture
def api(httpserver):
    return httpserver.url_for("/w/api.php")


def answers(httpserver, *responses):
    """The API answers these, in this order, once each."""
    for response in responses:
        httpserver.expect_ordered_request("/w/api.php").respond_with_response(response)


def ok(payload):
    return Response(json.dumps(payload), content_type="application/json; charset=utf-8")


@pytest.mark.parametrize(
    "agent", ["", "python-requests/2.31", "Mozilla/5.0 (X11; Linux)", "curl/8.0", "facerec"]
)
def test_generic_user_agents_are_refused(agent):
    with pytest.raises(UserAgentRefused, match="generic"):
        check_user_agent(agent)


def test_user_agent_needs_a_contact_and_gets_the_library_version():
    with pytest.raises(UserAgentRefused, match="no contact"):
        check_user_agent("facerec/1.0 (no contact here)")
    assert check_user_agent(AGENT).startswith(AGENT + " python-requests/")


def test_429_honours_retry_after_and_sends_the_user_agent(httpserver, api, http, waits):
    answers(httpserver, Response("slow down", 429, {"Retry-After": "1"}), ok({"ok": True}))
    assert http.get_json(api, {"a": "1"}) == {"ok": True}
    assert waits == [1.0] and http.waited_seconds == 1.0
    assert http.requests_made == len(httpserver.log) == 2
    assert all(r.headers["User-Agent"].startswith(AGENT) for r, _ in httpserver.log)
    assert httpserver.log[1][0].args["a"] == "1"  # the retry is the same request


def test_retry_after_is_really_slept_by_default(httpserver, api):
    http = PoliteSession(AGENT, retry=RetryPolicy(max_attempts=2))
    answers(httpserver, Response("", 503, {"Retry-After": "1"}), ok({"ok": 1}))
    started = time.monotonic()
    assert http.get_json(api, {}) == {"ok": 1}
    assert time.monotonic() - started >= 1.0 and http.waited_seconds == 1.0


def test_503_and_500_back_off_then_succeed(httpserver, api, http, waits):
    answers(
        httpserver,
        Response("", 503, {"Retry-After": "2"}),
        Response("java.util.concurrent.TimeoutException", 500),
        Response("", 502),
        ok({"ok": 1}),
    )
    assert http.get_json(api, {}) == {"ok": 1}
    # Retry-After first, then urllib3's backoff: 1 * 2**(n-1) plus up to 1s of jitter.
    assert waits[0] == 2.0 and 2.0 <= waits[1] < 3.0 and 4.0 <= waits[2] < 5.0
    assert http.requests_made == len(httpserver.log) == 4


def test_other_4xx_is_final_and_retries_run_out(httpserver, api, http, waits):
    answers(httpserver, Response("no such thing", 404))
    with pytest.raises(FinalHttpError, match="404"):
        http.get_json(api, {})
    assert waits == [] and len(httpserver.log) == 1
    httpserver.clear()
    httpserver.expect_request("/w/api.php").respond_with_data("overloaded", status=500)
    with pytest.raises(RetriesExhausted, match="after 4 attempts.*HTTP 500: overloaded"):
        http.get_json(api, {})
    assert len(httpserver.log) == 4 and http.requests_made == 5


def test_connection_errors_are_retried_then_reported():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    waits = []
    http = PoliteSession(AGENT, sleep=waits.append, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(RetriesExhausted, match="after 3 attempts.*ConnectionError") as raised:
        http.get_json(f"http://127.0.0.1:{port}/w/api.php", {})
    assert raised.value.reason == "retries_exhausted"
    # urllib3 retries once at once, then backs off 1 * 2**1 plus up to 1s of jitter.
    assert http.requests_made == 3 and len(waits) == 1 and 2.0 <= waits[0] < 3.0


def test_a_retry_after_beyond_the_cap_fails_instead_of_waiting_a_day(httpserver, api, http, waits):
    answers(httpserver, Response("", 429, {"Retry-After": "86400"}))
    with pytest.raises(RetriesExhausted, match="86400"):
        http.get_json(api, {})
    assert waits == [] and len(httpserver.log) == 1


def test_maxlag_waits_and_retries(httpserver, api, http, waits):
    lagged = Response(
        fixture_text("commons_maxlag.json"),
        headers={"Retry-After": "5"},
        content_type="application/json; charset=utf-8",
    )
    answers(httpserver, lagged, ok({"query": {"pages": []}}))
    assert http.get_json(api, {"maxlag": 5}) == {"query": {"pages": []}}
    assert waits == [5.0] and http.requests_made == 2


def test_strict_json_parsing(httpserver, api, http):
    answers(
        httpserver,
        Response('{"query": {"pages": [', content_type="application/json"),
        Response("<html>maintenance</html>", content_type="text/html"),
        ok({"error": {"code": "badvalue", "info": "nope"}}),
    )
    with pytest.raises(BadResponse, match="cut-off JSON"):
        http.get_json(api, {})
    with pytest.raises(BadResponse, match="expected JSON"):
        http.get_json(api, {})
    with pytest.raises(FinalHttpError, match="badvalue"):
        http.get_json(api, {})


def test_a_body_cut_off_by_the_connection_is_a_bad_response(httpserver, api, http):
    cut = Response('{"query": {"pages": [', content_type="application/json")
    cut.automatically_set_content_length = False
    cut.headers["Content-Length"] = "200"  # the server closes after 21 bytes
    answers(httpserver, cut)
    with pytest.raises(BadResponse, match="cut-off body"):
        http.get_json(api, {})


def test_download_checks_type_and_size_and_hashes(httpserver, http, tmp_path):
    url = httpserver.url_for("/upload/a.jpg")
    body = b"\xff\xd8\xff" + b"x" * 5000
    image = httpserver.expect_request("/upload/a.jpg")
    image.respond_with_data(body, content_type="image/jpeg")
    got = http.download(url, tmp_path, max_bytes=10_000, suffix_by_type={"image/jpeg": ".jpg"})
    assert got.sha256 == hashlib.sha256(body).hexdigest() and got.path.read_bytes() == body
    assert got.path.name == f"{got.sha256}.jpg"
    with pytest.raises(TooLarge):
        http.download(url, tmp_path, max_bytes=100, suffix_by_type={"image/jpeg": ".jpg"})
    httpserver.clear()
    httpserver.expect_request("/upload/a.jpg").respond_with_data(
        "<html/>", content_type="text/html"
    )
    with pytest.raises(NotAnImage, match="text/html"):
        http.download(url, tmp_path, max_bytes=10_000, suffix_by_type={"image/jpeg": ".jpg"})
    assert sorted(p.name for p in tmp_path.iterdir()) == [got.path.name]  # no partial files left
