"""Where each domain's people and photos come from: the one place that chooses a domain's source
by `domains.source` (a folder, or Wikimedia with the optional paid image search)."""

from __future__ import annotations

from pathlib import Path

from facerec_pipeline.core.artifacts.store import ArtifactStore
from facerec_pipeline.db.models import Domain
from facerec_pipeline.settings import Settings
from facerec_pipeline.sources.folder import FolderSource
from facerec_pipeline.sources.interfaces import DomainSource, SourceError
from facerec_pipeline.sources.web import WebSources
from facerec_pipeline.sources.wikimedia import WikidataQuery, WikimediaSource


def source_of(domain: Domain, settings: Settings, web: WebSources) -> DomainSource:
    """The source of `domain`: the one place that chooses it by `domains.source`. Nothing
    is read or fetched until the source is asked; SourceError for an unknown source."""
    code = domain.code
    photos_dir = settings.training_dir(code)
    if domain.source == "folder":
        return FolderSource(
            Path(domain.source_path or ""),
            photos_dir,
            settings.relative,
            inspection_cache=settings.cache_dir / "folder_scan" / f"{code}.json",
            artifacts=ArtifactStore(settings),
        )
    if domain.source == "wikidata":
        query = WikidataQuery(
            tuple(domain.countries),
            tuple(domain.occupations),
            domain.min_sitelinks,
            domain.max_people,
            domain.local_language,
        )
        return WikimediaSource(
            web,
            query,
            photos_dir,
            settings.relative,
            wikidata_cache_dir=settings.cache_dir / "wikidata",
            images_per_person=domain.images_per_person,
            paid_budget=domain.serp_budget,
            artifacts=ArtifactStore(settings),
        )
    raise SourceError(f"domain {code!r}: unknown source {domain.source!r}", retryable=False)
