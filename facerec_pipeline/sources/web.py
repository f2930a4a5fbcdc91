"""Configuration of the web sources and the clients built from it. No Dagster here."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

from facerec_pipeline.settings import WebSettings
from facerec_pipeline.sources.commons import COMMONS_API_URL, CommonsClient
from facerec_pipeline.sources.paid_search import SERPAPI_URL, SerpApiImages
from facerec_pipeline.sources.polite_http import PoliteSession, RetryPolicy, UserAgentRefused
from facerec_pipeline.sources.wikidata import WIKIDATA_SPARQL_URL, WikidataClient

WIKIMEDIA_HOSTS = ("wikidata.org", "wikimedia.org", "wikipedia.org")
STAND_IN_USER_AGENT = "facerec_pipeline/0.1 (https://localhost/stand-in-endpoints)"


def web_config(web: WebSettings) -> dict:
    """The web sources' configuration from the settings, the public services where none is
    set; all but the paid search key: a secret is never copied into config (the Dagster
    resource takes it as an EnvVar)."""
    return {
        "sparql_url": web.wikidata_sparql_url or WIKIDATA_SPARQL_URL,
        "commons_api_url": web.commons_api_url or COMMONS_API_URL,
        "user_agent": web.user_agent,
        "serp_api_url": web.serp_api_url or SERPAPI_URL,
        "serp_cost_per_call": web.serp_cost_per_call,
    }


@dataclass(frozen=True)
class WebSources:
    sparql_url: str
    commons_api_url: str
    serp_api_url: str
    user_agent: str | None = None
    thumb_width: int = 960
    license_policy: str = "free"
    max_attempts: int = 5
    serp_api_key: str | None = None
    serp_cost_per_call: float = 0.015

    @property
    def uses_wikimedia(self) -> bool:
        hosts = [urlparse(url).hostname or "" for url in (self.sparql_url, self.commons_api_url)]
        return any(host.endswith(WIKIMEDIA_HOSTS) for host in hosts)

    def resolved_user_agent(self) -> str:
        """The configured User-Agent. Without one, the real Wikimedia services are refused (they
        block generic agents); stand-in endpoints on other hosts get a project default."""
        if self.user_agent:
            return self.user_agent
        if self.uses_wikimedia:
            raise UserAgentRefused(
                "set FACEREC_USER_AGENT to '<client>/<version> (<contact url or email>)' before "
                "querying Wikidata or Commons: Wikimedia blocks generic User-Agents"
            )
        return STAND_IN_USER_AGENT

    def session(self, sleep=None) -> PoliteSession:
        options = {
            "retry": RetryPolicy(max_attempts=self.max_attempts),
            "require_contact": self.uses_wikimedia,
        }
        if sleep is not None:
            options["sleep"] = sleep
        return PoliteSession(self.resolved_user_agent(), **options)

    def wikidata(self, http: PoliteSession, cache_dir) -> WikidataClient:
        return WikidataClient(http, self.sparql_url, cache_dir)

    def commons(self, http: PoliteSession) -> CommonsClient:
        return CommonsClient(http, self.commons_api_url, self.thumb_width)

    def paid_search(self, http: PoliteSession) -> SerpApiImages | None:
        if not self.serp_api_key:
            return None
        return SerpApiImages(http, self.serp_api_key, self.serp_api_url, self.serp_cost_per_call)
