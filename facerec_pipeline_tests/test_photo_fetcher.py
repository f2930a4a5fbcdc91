"""One person's fetch: Commons first, paid search only below target and within budget, and a
failure for one person recorded without stopping the others."""

import pytest
import responses

from facerec_pipeline.raw_images.commons import CommonsClient
from facerec_pipeline.raw_images.paid_search import Budget, SerpApiImages
from facerec_pipeline.raw_images.wikimedia_fetch import PersonToFetch, PhotoFetcher
from facerec_pipeline.stats import sourcing_figures
from facerec_pipeline.web.polite_http import PoliteSession
from facerec_pipeline_tests.wikimedia_fixtures import fixture_json

API = "https://commons.test/w/api.php"
SERP = "https://serp.test/search.json"
BASE = "https://up.test"


@pytest.fixture
def http():
    return PoliteSession("facerec-test/1.0 (ops@example.org)", sleep=lambda _: None)


def fetcher(http, tmp_path, budget, target=2):
    serp = SerpApiImages(http, "secret-key", SERP, cost_per_call=0.01)
    return PhotoFetcher(http, CommonsClient(http, API), tmp_path, str, target=target,
                        paid_search=serp, budget=budget)  # fmt: skip


def biden(person_id=1, have=0):
    return PersonToFetch(person_id, "Joe Biden", ["Joe Biden official.jpg"], None, have, set())


@responses.activate
def test_paid_search_tops_up_below_target_and_records_its_cost(http, tmp_path, photos):
    responses.get(API, json=fixture_json("commons_imageinfo.json", BASE))
    responses.get(f"{BASE}/upload/thumb/biden.jpg", body=(photos / "biden.jpg").read_bytes(),
                  content_type="image/jpeg")  # fmt: skip
    responses.get(SERP, json=fixture_json("serpapi_google_images.json", BASE))
    responses.get(f"{BASE}/serp/biden.jpg", body=(photos / "obama3.jpg").read_bytes(),
                  content_type="image/jpeg")  # fmt: skip
    budget = Budget(0.015)
    result = fetcher(http, tmp_path, budget).fetch("demo", biden())
    assert [row["source"] for row in result.rows] == ["wikimedia_p18", "serp"]
    assert result.rows[1]["license_short_name"].startswith("unknown")
    assert result.serp_calls == [{"provider": "serpapi_google_images",
                                  "query": '"Joe Biden" face portrait', "result_count": 1,
                                  "estimated_cost": 0.01}]  # fmt: skip
    assert responses.calls[2].request.params["api_key"] == "secret-key"
    # The budget allows no second call: the next person below target is skipped with the reason.
    again = fetcher(http, tmp_path, budget).fetch("demo", biden(person_id=2))
    assert [s.reason for s in again.skips] == ["serp_budget_exhausted"]
    assert again.serp_calls == [] and budget.spent == pytest.approx(0.01)


@responses.activate
def test_no_paid_search_for_people_at_target(http, tmp_path):
    result = fetcher(http, tmp_path, Budget(1.0)).fetch("demo", biden(have=2))
    assert result.rows == [] and result.serp_calls == [] and len(responses.calls) == 0


@responses.activate
def test_a_failing_person_is_recorded_and_the_next_one_is_fetched(http, tmp_path, photos):
    responses.get(API, status=403, body="forbidden")
    plain = PhotoFetcher(http, CommonsClient(http, API), tmp_path, str, target=2)
    failed = plain.fetch("demo", biden())
    assert [(s.reason, s.source) for s in failed.skips] == [("fetch_failed", "wikimedia")]
    responses.replace(responses.GET, API, json=fixture_json("commons_imageinfo.json", BASE))
    responses.get(f"{BASE}/upload/thumb/biden.jpg", body=(photos / "biden.jpg").read_bytes(),
                  content_type="image/jpeg")  # fmt: skip
    assert [row["status"] for row in plain.fetch("demo", biden(person_id=2)).rows] == ["approved"]


def test_sourcing_figures():
    figures = sourcing_figures(
        [(1, "wikimedia_p18"), (1, "wikimedia_category"), (2, "serp"), (2, "wikimedia_p18")],
        [1, 2, 3], ["Q1", "Q1", None], target=2, serp_cost_per_call=0.015,
    )  # fmt: skip
    assert figures == {"free_image_share": 0.75, "estimated_cost_saved": 0.015,
                       "people_below_target": 1, "duplicate_wikidata_ids": ["Q1"]}  # fmt: skip
