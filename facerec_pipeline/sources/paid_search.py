"""Paid image search, the optional fallback for people still below their photo target after
Wikimedia. Off unless an API key is configured; every call's estimated cost is recorded and the
stage stops at the domain's budget for the calendar month. No Dagster here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from facerec_pipeline.sources.polite_http import BadResponse, PoliteSession

SERPAPI_URL = "https://serpapi.com/search.json"


@dataclass(frozen=True)
class SearchHit:
    image_url: str
    page_url: str | None
    title: str | None
    source: str | None


class PaidImageSearch(Protocol):
    provider: str
    cost_per_call: float

    def search(self, query: str, count: int) -> list[SearchHit]: ...


class SerpApiImages:
    """SerpApi's Google Images engine (`engine=google_images`)."""

    provider = "serpapi_google_images"

    def __init__(self, http: PoliteSession, api_key: str, url: str, cost_per_call: float):
        if not api_key:
            raise ValueError("SerpApi needs an API key (FACEREC_SERP_API_KEY)")
        self.http = http
        self.api_key = api_key
        self.url = url
        self.cost_per_call = cost_per_call

    def search(self, query: str, count: int) -> list[SearchHit]:
        payload = self.http.get_json(
            self.url, {"engine": "google_images", "q": query, "api_key": self.api_key}
        )
        return parse_serpapi_images(payload)[:count]


def parse_serpapi_images(payload: dict[str, Any]) -> list[SearchHit]:
    if payload.get("error"):
        raise BadResponse(f"SerpApi error: {payload['error']}")
    results = payload.get("images_results", [])
    if not isinstance(results, list):
        raise BadResponse("SerpApi answer: images_results is not a list")
    hits = []
    for result in results:
        url = result.get("original") if isinstance(result, dict) else None
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            hits.append(
                SearchHit(url, result.get("link"), result.get("title"), result.get("source"))
            )
    return hits


class Budget:
    """Spending against a domain's paid search budget for the calendar month (UTC);
    `already_spent`: what the month's earlier runs spent (stats.serp_spent_in_month)."""

    def __init__(self, limit: float, already_spent: float = 0.0):
        self.limit = limit
        self.spent = already_spent

    def allows(self, cost: float) -> bool:
        return self.spent + cost <= self.limit + 1e-9

    def charge(self, cost: float) -> None:
        self.spent += cost
