"""Resources: the project's storage and database, and the face engine."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from functools import lru_cache
from pathlib import Path

import dagster as dg
import pandas as pd
from sqlalchemy.orm import Session

from facerec_pipeline.core.faces.engine import EngineConfig, FaceEngine
from facerec_pipeline.core.faces.quality_gates import GateConfig
from facerec_pipeline.db.engine import session_scope
from facerec_pipeline.db.migrate import upgrade
from facerec_pipeline.settings import Settings
from facerec_pipeline.sources.web import SERP_API_KEY_ENV, WebSources


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


@lru_cache(maxsize=4)
def _engine(config: EngineConfig, models_dir: str) -> FaceEngine:
    return FaceEngine(config, Path(models_dir))


class FaceEngineResource(dg.ConfigurableResource):
    """DeepFace configuration. The default (Dlib model, dlib detector) runs offline with the
    weights `facerec models install` provides; other DeepFace models need their weights."""

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
        return _engine(self.engine_config, self.models_dir)


def default_engine_config() -> EngineConfig:
    """The face engine configuration `facerec run` uses (the resource's defaults)."""
    return FaceEngineResource(models_dir="").engine_config


def default_detector_config() -> str:
    """The face configuration `facerec run` uses (the resource's defaults)."""
    return FaceEngineResource(models_dir="").detector_config


class WebSourcesResource(dg.ConfigurableResource):
    """Wikidata, Commons and the optional paid image search. Endpoints, User-Agent and the paid
    search key come from FACEREC_* environment variables (see README); the key as a
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
    def from_env(cls, config: dict) -> "WebSourcesResource":
        """The resource for `config` (web.sources.env_config()). Paid search is optional: with
        FACEREC_SERP_API_KEY unset when the definitions load there is no key (search off), as
        an EnvVar of an unset variable would fail every run."""
        key = dg.EnvVar(SERP_API_KEY_ENV) if os.environ.get(SERP_API_KEY_ENV) else None
        return cls(**config, serp_api_key=key)

    def sources(self) -> WebSources:
        return WebSources(**{f.name: getattr(self, f.name) for f in fields(WebSources)})
