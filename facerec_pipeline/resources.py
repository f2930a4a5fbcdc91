"""Resources: the project's storage and database, the face engine, and the domains' sources."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import PrivateAttr
from sqlalchemy.orm import Session

from facerec_pipeline.core.artifacts.store import ArtifactStore
from facerec_pipeline.core.faces.engine import EngineConfig, FaceEngine
from facerec_pipeline.core.faces.quality_gates import GateConfig
from facerec_pipeline.core.faces.validation import WorkerPool
from facerec_pipeline.db.engine import session_scope
from facerec_pipeline.db.migrate import upgrade
from facerec_pipeline.db.models import Domain
from facerec_pipeline.settings import Settings
from facerec_pipeline.sources.folder import FolderSource
from facerec_pipeline.sources.interfaces import DomainSource, SourceError
from facerec_pipeline.sources.web import SERP_API_KEY_ENV, WebSources
from facerec_pipeline.sources.wikimedia import WikidataQuery, WikimediaSource


class FacerecStorage(dg.ConfigurableResource):
    """The storage root (files) and the database (SQLite file by default, any SQLAlchemy URL)."""

    storage_dir: str
    database_url: str

    @property
    def settings(self) -> Settings:
        return Settings(storage_dir=Path(self.storage_dir), database_url=self.database_url)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Runs are safe on a fresh or an older database: bring the schema up to date first.
        upgrade(self.database_url)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with session_scope(self.database_url) as session:
            yield session


class FaceEngineResource(dg.ConfigurableResource):
    """DeepFace configuration. The default (Dlib model, dlib detector) runs offline with the
    weights `facerec models install` provides; other DeepFace models need their weights.

    Set up for a run (by Dagster, or by `open()` outside it), the resource owns its face engine
    and its worker pool, both made at their first use and released when the run ends
    (`teardown_after_execution` stops the worker processes). Nothing is shared between two
    resources or two runs: each run gets a fresh copy of the resource, with its own engine."""

    models_dir: str
    model_name: str = "Dlib"
    detector_backend: str = "dlib"
    normalization: str = "base"
    detect_max_side: int = 800
    # dlib: a cheap pass without upsampling first; faces it may miss cannot change the decision.
    coarse_first: bool = True
    # Dlib: dlib's own face chips (5-point landmarks, 150 px, 25% padding), mirror-averaged.
    dlib_chips: bool = True
    mirror_average: bool = True
    min_confidence: float = GateConfig.min_confidence
    min_face_size: int = GateConfig.min_face_size
    min_blur_score: float = GateConfig.min_blur_score
    dominance_ratio: float = GateConfig.dominance_ratio
    duplicate_hash_distance: int = GateConfig.duplicate_hash_distance
    # Identity filter: a face farther than this (cosine) from the mean of its person's other
    # faces is quarantined. None: the configuration's own (EngineConfig.identity_max_distance,
    # 0.10 for Dlib chips, measured on the LFW development set).
    identity_max_distance: float | None = None
    # Processes for detection and embedding (dlib holds the GIL). Default: the machine's cores.
    workers: int = max(1, min(os.cpu_count() or 1, 8))

    _engine: FaceEngine | None = PrivateAttr(default=None)
    _pool: WorkerPool | None = PrivateAttr(default=None)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        # Dagster calls this when the run (or, with the multiprocess executor, the step's
        # process) is done with the resource, failed or not.
        pool, self._pool, self._engine = self._pool, None, None
        if pool is not None:
            pool.close()

    @contextmanager
    def open(self) -> Iterator["FaceEngineResource"]:
        """This resource set up as a run sets it up, for code outside Dagster (the CLI, the
        bench): yields the set-up copy, whose engine() and pool() serve until the block ends;
        then its worker processes stop."""
        with self.process_config_and_initialize_cm() as face_engine:
            yield face_engine

    @property
    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            self.model_name,
            self.detector_backend,
            self.normalization,
            self.detect_max_side,
            self.coarse_first,
            coarse_min_score=self.min_confidence,
            dlib_chips=self.dlib_chips,
            mirror_average=self.mirror_average,
        )

    @property
    def gates(self) -> GateConfig:
        return GateConfig(
            self.min_confidence,
            self.min_face_size,
            self.min_blur_score,
            self.dominance_ratio,
            self.duplicate_hash_distance,
        )

    @property
    def identity_distance(self) -> float:
        return self.identity_max_distance or self.engine_config.identity_max_distance

    @property
    def detector_config(self) -> str:
        """Identifies face rows judged alike (detection, crop, gates). A domain keeps the rows
        of earlier configurations; the stages after detected_faces read only the current ones."""
        return f"{self.engine_config.detector_key}|{self.gates.key}"

    def current_faces(self, faces: pd.DataFrame) -> pd.DataFrame:
        """The rows of `detected_faces` judged under this configuration."""
        return faces[faces["detector_config"] == self.detector_config]

    def engine(self) -> FaceEngine:
        """This resource's face engine (made at the first call; weights checked then)."""
        if self._engine is None:
            self._engine = FaceEngine(self.engine_config, Path(self.models_dir))
        return self._engine

    def pool(self) -> WorkerPool:
        """The worker processes of this run, for validate_photos and embed_crops: started at
        the first batch large enough to need them, stopped when the run ends."""
        if self._pool is None:
            self._pool = WorkerPool(self.engine(), self.workers)
        return self._pool


def face_engine_resource(settings: Settings | None = None) -> FaceEngineResource:
    """The face engine configuration of the project: the pipeline's resource
    (definitions.build_resources), and the one the CLI and the bench open, so all of them judge
    and embed faces alike. Without `settings`, the configuration only (no models folder)."""
    return FaceEngineResource(models_dir=str(settings.models_dir) if settings else "")


@contextmanager
def open_face_engine(settings: Settings) -> Iterator[FaceEngineResource]:
    """The project's face engine resource set up outside Dagster (see FaceEngineResource.open):
    `with open_face_engine(settings) as face_engine: face_engine.engine(), face_engine.pool()`."""
    with face_engine_resource(settings).open() as face_engine:
        yield face_engine


class SourcesResource(dg.ConfigurableResource):
    """Where each domain's people and photos come from: `for_domain` gives the domain's
    source (sources/interfaces.py: PersonSource and PhotoSource), a folder or Wikimedia
    (Wikidata, Commons and the optional paid image search). The web endpoints, User-Agent and
    the paid search key come from FACEREC_* environment variables (see README); the key as a
    `dg.EnvVar`, so Dagster shows the variable's name and resolves its value when a run starts."""

    sparql_url: str
    commons_api_url: str
    user_agent: str | None = None
    thumb_width: int = 960
    license_policy: str = "free"
    max_attempts: int = 5
    serp_api_url: str
    serp_api_key: str | None = None
    serp_cost_per_call: float = 0.015

    @classmethod
    def from_env(cls, config: dict) -> "SourcesResource":
        """The resource for `config` (web.sources.env_config()). Paid search is optional: with
        FACEREC_SERP_API_KEY unset when the definitions load there is no key (search off), as
        an EnvVar of an unset variable would fail every run."""
        key = dg.EnvVar(SERP_API_KEY_ENV) if os.environ.get(SERP_API_KEY_ENV) else None
        return cls(**config, serp_api_key=key)

    def web(self) -> WebSources:
        return WebSources(**{f.name: getattr(self, f.name) for f in fields(WebSources)})

    def for_domain(self, domain: Domain, settings: Settings) -> DomainSource:
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
                self.web(),
                query,
                photos_dir,
                settings.relative,
                wikidata_cache_dir=settings.cache_dir / "wikidata",
                images_per_person=domain.images_per_person,
                paid_budget=domain.serp_budget,
                artifacts=ArtifactStore(settings),
            )
        raise SourceError(f"domain {code!r}: unknown source {domain.source!r}", retryable=False)
