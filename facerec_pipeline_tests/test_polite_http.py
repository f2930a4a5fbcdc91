"""The HTTP client's etiquette and fault handling, against replayed responses."""

import hashlib

import pytest
import responses

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
from facerec_pipeline_tests.wikimedia_fixtures import fixture_json

API = "https://api.test/w/api.php"
AGENT = "facerec-test/1.0 (https://example.org/contact; ops@example.org)"


@pytest.fixture
def waits():
    return []


@pytest.fixture
def http(waits):
    return PoliteSession(AGENT, sleep=waits.append, retry=RetryPolicy(max_attempts=4))


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


@responses.activate
def test_429_honours_retry_after_and_sends_the_user_agent(http, waits):
    responses.get(API, status=429, headers={"Retry-After": "7"})
    responses.get(API, json={"ok": True})
    assert http.get_json(API, {"a": "1"}) == {"ok": True}
    assert waits == [7.0]
    assert responses.calls[0].request.headers["User-Agent"].startswith(AGENT)


@responses.activate
def test_503_and_500_back_off_then_succeed(http, waits):
    responses.get(API, status=503, headers={"Retry-After": "2"})
    responses.get(API, status=500, body="java.util.concurrent.TimeoutException")
    responses.get(API, status=502)
    responses.get(API, json={"ok": 1})
    assert http.get_json(API, {}) == {"ok": 1}
    assert waits[0] == 2.0 and 1.0 <= waits[1] <= 2.0 and 2.0 <= waits[2] <= 4.0


@responses.activate
def test_other_4xx_is_final_and_retries_run_out(http, waits):
    responses.get(API, status=404, body="no such thing")
    with pytest.raises(FinalHttpError, match="404"):
        http.get_json(API, {})
    assert waits == [] and len(responses.calls) == 1
    responses.replace(responses.GET, API, status=500)
    with pytest.raises(RetriesExhausted, match="4 attempts"):
        http.get_json(API, {})


@responses.activate
def test_a_retry_after_beyond_the_cap_fails_instead_of_waiting_a_day(http, waits):
    responses.get(API, status=429, headers={"Retry-After": "86400"})
    with pytest.raises(RetriesExhausted, match="86400"):
        http.get_json(API, {})
    assert waits == []


@responses.activate
def test_maxlag_waits_and_retries(http, waits):
    responses.get(API, json=fixture_json("commons_maxlag.json"), headers={"Retry-After": "5"})
    responses.get(API, json={"query": {"pages": []}})
    assert http.get_json(API, {"maxlag": 5}) == {"query": {"pages": []}}
    assert waits == [5.0]


@responses.activate
def test_strict_json_parsing(http):
    responses.get(API, body='{"query": {"pages": [', content_type="application/json")
    with pytest.raises(BadResponse, match="cut-off JSON"):
        http.get_json(API, {})
    responses.replace(responses.GET, API, body="<html>maintenance</html>", content_type="text/html")
    with pytest.raises(BadResponse, match="expected JSON"):
        http.get_json(API, {})
    responses.replace(responses.GET, API, json={"error": {"code": "badvalue", "info": "nope"}})
    with pytest.raises(FinalHttpError, match="badvalue"):
        http.get_json(API, {})


@responses.activate
def test_download_checks_type_and_size_and_hashes(http, tmp_path):
    url = "https://upload.test/a.jpg"
    body = b"\xff\xd8\xff" + b"x" * 5000
    responses.get(url, body=body, content_type="image/jpeg")
    got = http.download(url, tmp_path, max_bytes=10_000, suffix_by_type={"image/jpeg": ".jpg"})
    assert got.sha256 == hashlib.sha256(body).hexdigest() and got.path.read_bytes() == body
    assert got.path.name == f"{got.sha256}.jpg"
    with pytest.raises(TooLarge):
        http.download(url, tmp_path, max_bytes=100, suffix_by_type={"image/jpeg": ".jpg"})
    responses.replace(responses.GET, url, body="<html/>", content_type="text/html")
    with pytest.raises(NotAnImage, match="text/html"):
        http.download(url, tmp_path, max_bytes=10_000, suffix_by_type={"image/jpeg": ".jpg"})
    assert sorted(p.name for p in tmp_path.iterdir()) == [got.path.name]  # no partial files left
