"""Resources: the project's storage and database, the face engine, and the domains' sources."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr
from sqlalchemy import select
from sqlalchemy.orm import Session

from facerec_pipeline.app.domain_sources import source_of
from facerec_pipeline.app.stages.stage_run import RunEngines
from facerec_pipeline.core.face_models import (
    DEFAULT_FACE_MODEL,
    FaceModel,
    face_model,
    with_overrides,
)
from facerec_pipeline.core.faces.engine import FaceEngine
from facerec_pipeline.core.faces.validation import WorkerPool
from facerec_pipeline.db.engine import session_scope
from facerec_pipeline.db.migrate import upgrade
from facerec_pipeline.db.models import Domain
from facerec_pipeline.settings import (
    DEFAULT_FACE_BATCH_SIZE,
    SERP_API_KEY_ENV,
    Settings,
    WebSettings,
)
from facerec_pipeline.sources.interfaces import DomainSource, SourceError
from facerec_pipeline.sources.web import WebSources, web_config


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
    """The face engines of a run. Each domain names its face model (`domains.face_model`, the
    catalogue in core/face_models.py: `sface` by default, `dlib`, DeepFace's downloadable
    ones); `model(name)` gives that model's configuration, with any of the settings below set
    here replacing the model's own measured one for every domain (None: the model's own).

    Set up for a run (by Dagster, or by `open()` outside it), the resource owns the engines and
    worker pools it made, one per engine configuration, each made at first use and released when
    the run ends (`teardown_after_execution` stops the worker processes). Nothing is shared
    between two resources or two runs: each run gets a fresh copy of the resource."""

    models_dir: str
    detect_max_side: int | None = None
    # dlib: a cheap pass without upsampling first; faces it may miss cannot change the decision.
    coarse_first: bool | None = None
    # Dlib: dlib's own face chips (5-point landmarks, 150 px, 25% padding).
    dlib_chips: bool | None = None
    # Dlib chips and SFace: average the descriptors of the crop and of its mirror image.
    mirror_average: bool | None = None
    min_confidence: float | None = None
    min_face_size: int | None = None
    min_blur_score: float | None = None
    dominance_ratio: float | None = None
    duplicate_hash_distance: int | None = None
    # Identity filter: a face farther than this (cosine) from the mean of its person's other
    # faces is quarantined.
    identity_max_distance: float | None = None
    # Processes for detection and embedding (dlib holds the GIL). Default: the machine's cores.
    workers: int = max(1, min(os.cpu_count() or 1, 8))
    # Photos per worker from which a batch goes to the workers; None: the engine's own,
    # measured on 2 cores (core/faces/validation.py: min_photos_per_worker).
    min_photos_per_worker: int | None = None
    # Photos (faces, for the embeddings) in one step of a face stage (FACEREC_FACE_BATCH_SIZE).
    batch_size: int = DEFAULT_FACE_BATCH_SIZE

    _engines: RunEngines | None = PrivateAttr(default=None)

    def _run_engines(self) -> RunEngines:
        if self._engines is None:
            self._engines = RunEngines(
                Path(self.models_dir), self.workers, self.min_photos_per_worker
            )
        return self._engines

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        # Dagster calls this when the run (or, with the multiprocess executor, the step's
        # process) is done with the resource, failed or not.
        engines, self._engines = self._engines, None
        if engines is not None:
            engines.close()

    @contextmanager
    def open(self) -> Iterator["FaceEngineResource"]:
        """This resource set up as a run sets it up, for code outside Dagster (the CLI, the
        bench): yields the set-up copy, whose engine() and pool() serve until the block ends;
        then its worker processes stop."""
        with self.process_config_and_initialize_cm() as face_engine:
            yield face_engine

    def model(self, name: str = DEFAULT_FACE_MODEL) -> FaceModel:
        """The face model `name` (catalogue) with the settings this resource sets."""
        overrides = {
            field: getattr(self, field)
            for field in type(self).model_fields
            if field not in ("models_dir", "workers", "min_photos_per_worker", "batch_size")
        }
        return with_overrides(face_model(name), **overrides)

    def model_of_domain(self, storage: "FacerecStorage", code: str) -> FaceModel:
        """The face model the domain is set to use (`facerec domains set X --model NAME`)."""
        with storage.session() as session:
            name = session.scalar(select(Domain.face_model).where(Domain.code == code))
        if name is None:
            raise SourceError(f"unknown domain {code!r}", retryable=False)
        return self.model(name)

    def engine(self, model: FaceModel) -> FaceEngine:
        """The face engine of `model` (made at the first call; weights checked then)."""
        return self._run_engines().engine(model)

    def pool(self, model: FaceModel) -> WorkerPool:
        """The worker processes of this run for `model`'s engine (stopped when the run ends)."""
        return self._run_engines().pool(model)


def face_engine_resource(settings: Settings | None = None) -> FaceEngineResource:
    """The face engine configuration of the project: the pipeline's resource
    (definitions.build_resources), and the one the CLI and the bench open, so all of them judge
    and embed faces alike. Without `settings`, the configuration only (no models folder)."""
    if settings is None:
        return FaceEngineResource(models_dir="")
    return FaceEngineResource(
        models_dir=str(settings.models_dir), batch_size=settings.executor.face_batch_size
    )


@contextmanager
def open_face_engine(settings: Settings) -> Iterator[FaceEngineResource]:
    """The project's face engine resource set up outside Dagster (see FaceEngineResource.open):
    `with open_face_engine(settings) as face_engine: face_engine.engine(model), ...`."""
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
    def from_settings(cls, web: WebSettings) -> "SourcesResource":
        """The resource for the web settings. Paid search is optional: with
        FACEREC_SERP_API_KEY unset when the definitions load there is no key (search off), as
        an EnvVar of an unset variable would fail every run."""
        key = dg.EnvVar(SERP_API_KEY_ENV) if web.serp_api_key_set else None
        return cls(**web_config(web), serp_api_key=key)

    def web(self) -> WebSources:
        return WebSources(**{f.name: getattr(self, f.name) for f in fields(WebSources)})

    def for_domain(self, domain: Domain, settings: Settings) -> DomainSource:
        """The source of `domain` (app/domain_sources.py)."""
        return source_of(domain, settings, self.web())
