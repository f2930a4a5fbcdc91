"""One person's fetch: Commons first, paid search only below target and within budget, and a
failure for one person recorded without stopping the others."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import responses

from facerec_pipeline.app.domains import DomainSpec, add_domain, get_domain
from facerec_pipeline.app.stages.raw_images import record_fetch
from facerec_pipeline.app.stages.stage_run import StageRun
from facerec_pipeline.app.stats import (
    domain_stats,
    month_bounds,
    serp_spent_in_month,
    sourcing_figures,
)
from facerec_pipeline.core.images.image_files import INCOMING_DIR
from facerec_pipeline.core.images.photo_store import photo_path
from facerec_pipeline.db.models import SerpCall
from facerec_pipeline.defs.resources import FacerecStorage
from facerec_pipeline.sources.commons import CommonsClient
from facerec_pipeline.sources.paid_search import Budget, SerpApiImages
from facerec_pipeline.sources.polite_http import PoliteSession
from facerec_pipeline.sources.wikimedia_fetch import PersonToFetch, PhotoFetcher
from facerec_pipeline_tests.wikimedia_fixtures import fixture_json

API = "https://commons.test/w/api.php"
SERP = "https://serp.test/search.json"
BASE = "https://up.test"


@pytest.fixture
def http():
    return PoliteSession("facerec-test/1.0 (ops@example.org)", sleep=lambda _: None)


def fetcher(http, artifacts, budget, target=2):
    serp = SerpApiImages(http, "secret-key", SERP, cost_per_call=0.01)
    return PhotoFetcher(
        http,
        CommonsClient(http, API),
        photos_dir(artifacts),
        str,
        artifacts,
        target=target,
        paid_search=serp,
        budget=budget,
    )


def photos_dir(artifacts):
    return artifacts.settings.training_dir("demo")


def biden(person_id=1, have=0):
    return PersonToFetch(person_id, "Joe Biden", ["Joe Biden official.jpg"], None, have, set())


@responses.activate
def test_paid_search_tops_up_below_target_and_records_its_cost(http, artifacts, photos):
    responses.get(API, json=fixture_json("commons_imageinfo.json", BASE))
    responses.get(
        f"{BASE}/upload/thumb/biden.jpg",
        body=(photos / "biden.jpg").read_bytes(),
        content_type="image/jpeg",
    )
    responses.get(SERP, json=fixture_json("serpapi_google_images.json", BASE))
    responses.get(
        f"{BASE}/serp/biden.jpg",
        body=(photos / "obama3.jpg").read_bytes(),
        content_type="image/jpeg",
    )
    budget = Budget(0.015)
    result = fetcher(http, artifacts, budget).fetch("demo", biden())
    assert [row["source"] for row in result.rows] == ["wikimedia_p18", "serp"]
    assert result.rows[1]["license_short_name"].startswith("unknown")
    # Downloads are stored as folder photos are: {sha256[:2]}/{sha256}{suffix}.
    for row in result.rows:
        assert Path(row["file_path"]) == photo_path(photos_dir(artifacts), row["sha256"], ".jpg")
    assert not list((photos_dir(artifacts) / INCOMING_DIR).iterdir())
    assert result.serp_calls == [
        {
            "provider": "serpapi_google_images",
            "query": '"Joe Biden" face portrait',
            "result_count": 1,
            "estimated_cost": 0.01,
        }
    ]
    assert responses.calls[2].request.params["api_key"] == "secret-key"
    # The budget allows no second call: the next person below target is skipped with the reason.
    again = fetcher(http, artifacts, budget).fetch("demo", biden(person_id=2))
    assert [s.reason for s in again.skips] == ["serp_budget_exhausted"]
    assert again.serp_calls == [] and budget.spent == pytest.approx(0.01)


@responses.activate
def test_the_paid_search_budget_is_per_domain_per_calendar_month(http, artifacts, photos, settings):
    """Calls recorded earlier this month count against the domain's budget (last month's and
    another domain's do not), so a second run in the month cannot spend past it."""
    responses.get(API, json=fixture_json("commons_imageinfo.json", BASE))
    responses.get(SERP, json=fixture_json("serpapi_google_images.json", BASE))
    for path, photo in (("upload/thumb/biden.jpg", "biden.jpg"), ("serp/biden.jpg", "obama3.jpg")):
        body = (photos / photo).read_bytes()
        responses.get(f"{BASE}/{path}", body=body, content_type="image/jpeg")
    facerec = FacerecStorage(
        storage_dir=str(settings.storage_dir), database_url=settings.database_url
    )
    start, _ = month_bounds(datetime.now(UTC))
    with facerec.session() as session:
        get_domain(session, "demo").serp_budget = 0.02  # the `artifacts` fixture added it
        spec = DomainSpec(
            "other", "other", countries=["Q30"], occupations=["Q82955"], serp_budget=0.02
        )
        add_domain(session, spec)
        last_month = start - timedelta(seconds=1)
        earlier = [("demo", 0.01, start), ("demo", 0.5, last_month), ("other", 0.5, start)]
        session.add_all(
            SerpCall(domain=code, provider="x", query="q", estimated_cost=cost, created_at=at)
            for code, cost, at in earlier
        )
    with facerec.session() as session:
        assert serp_spent_in_month(session, "demo") == pytest.approx(0.01)
        assert serp_spent_in_month(session, "demo", start - timedelta(days=3)) == pytest.approx(0.5)

    def run(run_id: str, person_id: int):
        """What raw_images does: the month's spend so far, the fetch, the calls recorded."""
        with facerec.session() as session:
            limit = get_domain(session, "demo").serp_budget
            budget = Budget(limit, already_spent=serp_spent_in_month(session, "demo"))
        fetched = fetcher(http, artifacts, budget).fetch("demo", biden(person_id))
        record_fetch(StageRun(facerec.settings, "demo", run_id), [], [], fetched.serp_calls)
        return fetched

    first = run("run-1", 1)
    assert [call["estimated_cost"] for call in first.serp_calls] == [0.01]
    second = run("run-2", 2)
    assert second.serp_calls == []
    assert [(s.reason, s.detail) for s in second.skips] == [
        ("serp_budget_exhausted", "spent 0.020 of 0.020 this month")
    ]
    assert sum(call.request.url.startswith(SERP) for call in responses.calls) == 1
    with facerec.session() as session:
        stats = domain_stats(session, "demo")
    assert (stats["serp_spent_this_month"], stats["serp_budget_per_month"]) == (0.02, 0.02)


@responses.activate
def test_no_paid_search_for_people_at_target(http, artifacts):
    result = fetcher(http, artifacts, Budget(1.0)).fetch("demo", biden(have=2))
    assert result.rows == [] and result.serp_calls == [] and len(responses.calls) == 0


@responses.activate
def test_a_failing_person_is_recorded_and_the_next_one_is_fetched(http, artifacts, photos):
    responses.get(API, status=403, body="forbidden")
    plain = PhotoFetcher(
        http, CommonsClient(http, API), photos_dir(artifacts), str, artifacts, target=2
    )
    failed = plain.fetch("demo", biden())
    assert [(s.reason, s.source) for s in failed.skips] == [("fetch_failed", "wikimedia")]
    responses.replace(responses.GET, API, json=fixture_json("commons_imageinfo.json", BASE))
    responses.get(
        f"{BASE}/upload/thumb/biden.jpg",
        body=(photos / "biden.jpg").read_bytes(),
        content_type="image/jpeg",
    )
    assert [row["status"] for row in plain.fetch("demo", biden(person_id=2)).rows] == ["approved"]


def test_sourcing_figures():
    figures = sourcing_figures(
        [(1, "wikimedia_p18"), (1, "wikimedia_category"), (2, "serp"), (2, "wikimedia_p18")],
        [1, 2, 3],
        ["Q1", "Q1", None],
        target=2,
        serp_cost_per_call=0.015,
    )
    assert figures == {
        "free_image_share": 0.75,
        "estimated_cost_saved": 0.015,
        "people_below_target": 1,
        "duplicate_wikidata_ids": ["Q1"],
    }
