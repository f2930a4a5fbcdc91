"""Wikidata, Commons and SerpApi answers parsed from hand-recorded fixtures."""

import os
from dataclasses import replace

import pytest
import responses

from facerec_pipeline.sources.commons import (
    CommonsClient,
    license_refusal,
    parse_page,
    strip_html,
)
from facerec_pipeline.sources.paid_search import Budget, parse_serpapi_images
from facerec_pipeline.sources.polite_http import BadResponse, PoliteSession, UserAgentRefused
from facerec_pipeline.sources.wikidata import (
    QueryTimeout,
    WikidataClient,
    candidates_query,
    check_sparql_answer,
    parse_candidates,
)
from facerec_pipeline_tests.wikimedia_fixtures import fixture_json, fixture_text

AGENT = "facerec-test/1.0 (ops@example.org)"
SPARQL = "https://wdqs.test/sparql"
API = "https://commons.test/w/api.php"


def session():
    return PoliteSession(AGENT, sleep=lambda _: None)


def test_candidates_are_grouped_by_qid_with_labels_images_and_sitelinks():
    people = parse_candidates(fixture_json("sparql_candidates.json"))
    assert [p.qid for p in people] == ["Q76", "Q6279", "Q555001", "Q555002", "Q555003"]
    obama = people[0]
    assert obama.sitelinks == 344 and obama.commons_category == "Barack Obama"
    assert obama.image_files == ["Obama portrait crop.jpg", "Obama second portrait.jpg"]
    assert obama.local_label == "Барак Обама"
    biden = people[1]
    assert biden.label == "Џо Бајден"  # no English label: the QID came back, the local one is used
    assert people[-1].image_files == [] and people[-1].commons_category is None


def test_query_text_uses_values_lang_filter_and_rejects_bad_ids():
    text = candidates_query(["Q403", "Q838261"], ["Q33999"], 20, 300, "sr")
    assert "VALUES ?country { wd:Q403 wd:Q838261 }" in text
    assert 'FILTER(LANG(?localLabel) = "sr")' in text and "LIMIT 300" in text
    assert "ORDER BY DESC(?sitelinks)" in text
    with pytest.raises(ValueError):
        candidates_query(["Q403 } ; DROP"], ["Q33999"], 20, 300, None)
    with pytest.raises(ValueError):
        candidates_query(["Q403"], ["Q33999"], 20, 300, 'sr") }')


def test_sparql_failures_are_errors_not_empty_results():
    with pytest.raises(QueryTimeout):
        check_sparql_answer(fixture_text("sparql_truncated_timeout.txt"), "application/json")
    with pytest.raises(BadResponse, match="User-Agent"):
        check_sparql_answer(fixture_text("sparql_user_agent_refused.txt"), "text/plain")


@responses.activate
def test_wikidata_client_caches_occupation_subclasses(tmp_path):
    responses.get(
        SPARQL,
        json=fixture_json("sparql_subclasses.json"),
        content_type="application/sparql-results+json",
    )
    client = WikidataClient(session(), SPARQL, tmp_path)
    assert client.occupation_with_subclasses("Q82955") == ["Q30461", "Q82955"]
    assert client.occupation_with_subclasses("Q82955") == ["Q30461", "Q82955"]
    assert len(responses.calls) == 1
    assert responses.calls[0].request.headers["Accept"] == "application/sparql-results+json"


@responses.activate
def test_wikidata_client_raises_on_the_cut_off_answer(tmp_path):
    responses.get(
        SPARQL,
        body=fixture_text("sparql_truncated_timeout.txt"),
        content_type="application/sparql-results+json",
    )
    with pytest.raises(QueryTimeout):
        WikidataClient(session(), SPARQL, tmp_path).query("SELECT ?x WHERE {}")


def test_commons_pages_keep_licence_and_attribution_fields():
    pages = fixture_json("commons_imageinfo.json", "https://up.test")["query"]["pages"]
    assert parse_page(pages[0]) is None  # missing
    portrait = parse_page(pages[1])
    assert portrait.download_url == "https://up.test/upload/thumb/obama.jpg"
    assert (portrait.page_id, portrait.sha1[:6], portrait.mime) == (10001, "5cf1b6", "image/jpeg")
    assert portrait.artist == "Pete Souza" and portrait.artist_html.startswith("<a ")
    assert portrait.copyrighted is False and portrait.restrictions == "personality"
    second = parse_page(pages[2])
    assert second.license_short_name == "CC BY-SA 4.0" and second.attribution_required is True
    assert portrait.credit == "White House"  # <span class="int-own-work" lang="en">
    category = fixture_json("commons_category_page2.json", "https://up.test")["query"]["pages"]
    assert "Someone & Co" in {parse_page(page).artist for page in category}  # <bdi>...&amp;


@pytest.mark.parametrize(
    ("extmetadata", "text"),
    [
        (
            '<div class="fn value">\n<a href="https://www.flickr.com/people/x" class="extiw">'
            'Gage Skidmore</a> from Peoria, AZ, <a href="/wiki/United_States">United '
            "States</a>\n</div>",
            "Gage Skidmore from Peoria, AZ, United States",
        ),
        ("<b>Ob<i>am</i>a</b>&nbsp;&amp;&#32;Biden &eacute;&#x41;", "Obama & Biden \u00e9A"),
        ("Line one<br/>line two<p>three</p>four", "Line one line two three four"),
        ('<style>.x{color:red}</style>Own work<script>alert("<b>")</script>', "Own work"),
        ("Smith & Jones <3 a < b <!-- hidden -->", "Smith & Jones <3 a < b"),
        ('<a href="x">never closed', "never closed"),
        ("<p> </p>", None),
    ],
)
def test_commons_html_fields_become_plain_text(extmetadata, text):
    assert strip_html(extmetadata) == text


@pytest.mark.parametrize(
    ("name", "copyrighted", "refusal"),
    [
        ("CC BY-SA 4.0", True, None),
        ("CC0", True, None),
        ("Public domain", None, None),
        ("CC BY 2.0", True, None),
        ("CC BY-NC 4.0", True, "license_not_free"),
        ("CC BY-ND 2.0", True, "license_not_free"),
        ("Fair use", True, "license_not_free"),
        (None, None, "license_unknown"),
        ("All rights reserved", False, None),
    ],
)
def test_licence_policy(name, copyrighted, refusal):
    pages = fixture_json("commons_imageinfo.json")["query"]["pages"]
    file = parse_page(pages[2])
    file.license_short_name, file.copyrighted = name, copyrighted
    assert license_refusal(file, "free") == refusal
    assert license_refusal(file, "any") is None


@responses.activate
def test_commons_client_batches_titles_and_follows_continuation():
    base = "https://up.test"
    responses.get(API, json=fixture_json("commons_imageinfo.json", base))
    found, missing = CommonsClient(session(), API).files(
        ["Obama portrait crop.jpg", "Obama_second_portrait.jpg", "Deleted long ago.jpg"]
    )
    assert [f.page_id for f in found] == [10001, 10002] and missing == ["Deleted long ago.jpg"]
    query = responses.calls[0].request.params
    assert query["formatversion"] == "2" and query["maxlag"] == "5" and query["iiurlwidth"] == "960"
    responses.replace(responses.GET, API, json=fixture_json("commons_category_page1.json", base))
    responses.add(responses.GET, API, json=fixture_json("commons_category_page2.json", base))
    files = CommonsClient(session(), API).category_files("Barack Obama", limit=10)
    assert [f.page_id for f in files] == [10003, 10004, 10005, 10006]
    second_request = responses.calls[-1].request.params
    assert second_request["gcmcontinue"] == "file|4f42414d41|10005"
    assert second_request["gcmtitle"] == "Category:Barack Obama"


def test_thumbnail_width_must_be_a_standard_one():
    with pytest.raises(ValueError, match="not one of"):
        CommonsClient(session(), API, thumb_width=1000)


def test_serpapi_results_and_budget():
    hits = parse_serpapi_images(fixture_json("serpapi_google_images.json", "https://img.test"))
    assert [h.image_url for h in hits] == ["https://img.test/serp/biden.jpg"]
    with pytest.raises(BadResponse, match="Invalid API key"):
        parse_serpapi_images({"error": "Invalid API key. Your API key should be here"})
    budget = Budget(0.03)
    assert budget.allows(0.015)
    budget.charge(0.015)
    budget.charge(0.015)
    assert not budget.allows(0.015)


@responses.activate
def test_unresolvable_subclasses_fall_back_to_the_occupation_uncached(tmp_path):
    responses.get(
        SPARQL,
        json=fixture_json("sparql_candidates.json"),
        content_type="application/sparql-results+json",
    )
    client = WikidataClient(session(), SPARQL, tmp_path)
    assert client.occupation_with_subclasses("Q33999") == ["Q33999"]  # rows without ?occupation
    responses.replace(responses.GET, SPARQL, status=400, body="bad query")
    client = WikidataClient(session(), SPARQL, tmp_path / "other")
    assert client.occupation_with_subclasses("Q33999") == ["Q33999"]
    assert client.warnings and "Q33999" in client.warnings[0]
    assert not (tmp_path / "other" / "occupation_Q33999.json").exists()


def test_contact_is_required_only_for_wikimedia_hosts():
    from facerec_pipeline.sources.web import WebSources

    stand_in = WebSources(
        "http://127.0.0.1:9/sparql",
        "http://127.0.0.1:9/w/api.php",
        "http://127.0.0.1:9/serp",
        user_agent="checker/0.1",
    )
    assert stand_in.session().user_agent.startswith("checker/0.1 ")
    real = WebSources(
        "https://query.wikidata.org/sparql",
        "https://commons.wikimedia.org/w/api.php",
        "https://serpapi.com/search.json",
        user_agent="checker/0.1",
    )
    with pytest.raises(UserAgentRefused, match="no contact"):
        real.session()
    with pytest.raises(UserAgentRefused, match="FACEREC_USER_AGENT"):
        WebSources(real.sparql_url, real.commons_api_url, real.serp_api_url).session()
    with pytest.raises(UserAgentRefused, match="generic"):
        WebSources(
            stand_in.sparql_url,
            stand_in.commons_api_url,
            stand_in.serp_api_url,
            user_agent="python-requests/2.31",
        ).session()


@responses.activate
def test_the_paid_search_key_reaches_the_search_but_never_the_definitions(settings, monkeypatch):
    import dagster as dg
    from dagster._core.remote_representation.external_data import RepositorySnap

    from facerec_pipeline.defs.assembly import build_definitions
    from facerec_pipeline.defs.resources import SourcesResource
    from facerec_pipeline.settings import WebSettings

    secret = "sk-live-0123456789abcdef"
    monkeypatch.setenv("FACEREC_SERP_API_KEY", secret)
    monkeypatch.setenv("FACEREC_SERP_API_URL", "https://serp.test/search.json")
    defs = build_definitions(replace(settings, web=WebSettings.from_env(os.environ)))
    # What the webserver and the UI get of the code location: the variable's name only.
    snapshot = RepositorySnap.from_def(defs.get_repository_def())
    assert secret not in dg.serialize_value(snapshot)
    (web,) = [resource for resource in snapshot.resources if resource.name == "sources"]
    assert web.configured_values["serp_api_key"].name == "FACEREC_SERP_API_KEY"
    assert secret not in repr(WebSettings.from_env(os.environ))
    responses.get("https://serp.test/search.json", json={"images_results": []})
    with dg.build_resources({"sources": defs.resources["sources"]}) as built:
        search = built.sources.web().paid_search(session())
        assert search is not None and search.search('"Ana" face portrait', 3) == []
    assert responses.calls[0].request.params["api_key"] == secret

    # Paid search is optional: no key, no EnvVar to fail the run, and the search stays off.
    monkeypatch.delenv("FACEREC_SERP_API_KEY")
    unset = SourcesResource.from_settings(WebSettings.from_env(os.environ))
    with dg.build_resources({"sources": unset}) as built:
        assert built.sources.web().paid_search(session()) is None
