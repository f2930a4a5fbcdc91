"""SQLAlchemy 2.0 models for the tables named in ARCHITECTURE.md.

Status and reason columns hold readable words ("accepted", "multiple_faces"), never numbers.
Columns that hold a domain code are foreign keys to `domains.code`, so the partition key is usable
directly in every query (always bound as a parameter).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from facerec_pipeline.db.source_refs import SourceRef, SourceRefType


def utcnow() -> datetime:
    return datetime.now(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class Domain(Timestamps, Base):
    __tablename__ = "domains"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(50), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    # Where candidates and photos come from: "wikidata" or "folder" (source_path = the folder).
    source: Mapped[str] = mapped_column(String(20), default="wikidata")
    source_path: Mapped[str | None] = mapped_column(Text)
    countries: Mapped[list[str]] = mapped_column(JSON, default=list)
    occupations: Mapped[list[str]] = mapped_column(JSON, default=list)
    local_language: Mapped[str | None] = mapped_column(String(20))
    min_sitelinks: Mapped[int] = mapped_column(Integer, default=10)
    max_people: Mapped[int] = mapped_column(Integer, default=500)
    images_per_person: Mapped[int] = mapped_column(Integer, default=10)
    serp_budget: Mapped[float] = mapped_column(Float, default=0.0)
    refresh_cron: Mapped[str] = mapped_column(String(100), default="0 3 * * 1")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Automation and the checks that gate promotion.
    retrain_min_new_faces: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    min_faces_per_person: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    min_loo_accuracy: Mapped[float] = mapped_column(Float, default=0.8, server_default="0.8")
    max_gallery_shrink: Mapped[float] = mapped_column(Float, default=0.3, server_default="0.3")
    # Open-set recognition: the false-accept rate each version is calibrated for, and how far a
    # new version's expected DIR may fall below the serving one's before it is stopped.
    target_far: Mapped[float] = mapped_column(Float, default=0.01, server_default="0.01")
    max_quality_drop: Mapped[float] = mapped_column(Float, default=0.05, server_default="0.05")
    # The face model of the domain's galleries (core/face_models.py). Domains older than the
    # setting keep `dlib`, what they were built with (migration 0012).
    face_model: Mapped[str] = mapped_column(String(40), default="sface", server_default="sface")
    # Set by a rollback: this version serves until an operator unpins it or a version built
    # after `pinned_at` (from new content) passes its checks.
    pinned_version: Mapped[int | None] = mapped_column(Integer)
    pinned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DomainDataset(Base):
    """Ordered inheritance: `domain` also searches `inherits` (lower priority number first)."""

    __tablename__ = "domain_datasets"
    __table_args__ = (UniqueConstraint("domain", "inherits"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(ForeignKey("domains.code", ondelete="CASCADE"))
    inherits: Mapped[str] = mapped_column(ForeignKey("domains.code"))
    priority: Mapped[int] = mapped_column(Integer)


class Person(Timestamps, Base):
    __tablename__ = "people"
    __table_args__ = (
        UniqueConstraint("domain", "normalized_name"),
        UniqueConstraint("domain", "person_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(ForeignKey("domains.code"), index=True)
    # Stable key within the domain: "wikidata:Q42" or "folder:<folder name>".
    person_key: Mapped[str] = mapped_column(String(300))
    full_name: Mapped[str] = mapped_column(String(300))
    normalized_name: Mapped[str] = mapped_column(String(300))
    wikidata_id: Mapped[str | None] = mapped_column(String(20))
    description: Mapped[str | None] = mapped_column(Text)
    occupation: Mapped[str | None] = mapped_column(String(200))
    country: Mapped[str | None] = mapped_column(String(200))
    sitelinks: Mapped[int | None] = mapped_column(Integer)
    primary_image_url: Mapped[str | None] = mapped_column(Text)
    commons_category: Mapped[str | None] = mapped_column(String(300))
    # Where the source keeps this person's photos: FolderRef or CommonsRef (db/source_refs.py).
    source_ref: Mapped[SourceRef | None] = mapped_column(SourceRefType)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    # Set when the person is no longer offered by the source; the row and its history stay.
    removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Image(Timestamps, Base):
    """One photo of one person as the source offered it. `status` is about acquisition
    (readable, licence acceptable); face validation outcomes live in `faces`."""

    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("domain", "person_id", "source_url"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(ForeignKey("domains.code"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    perceptual_hash: Mapped[str | None] = mapped_column(String(16))
    file_path: Mapped[str | None] = mapped_column(Text)
    file_size: Mapped[int | None] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    mime: Mapped[str | None] = mapped_column(String(50))
    source: Mapped[str] = mapped_column(String(30))
    source_url: Mapped[str] = mapped_column(Text)
    description_url: Mapped[str | None] = mapped_column(Text)
    page_id: Mapped[int | None] = mapped_column(Integer)
    source_sha1: Mapped[str | None] = mapped_column(String(40))
    license_short_name: Mapped[str | None] = mapped_column(String(200))
    license_url: Mapped[str | None] = mapped_column(Text)
    usage_terms: Mapped[str | None] = mapped_column(Text)
    artist_html: Mapped[str | None] = mapped_column(Text)
    artist: Mapped[str | None] = mapped_column(Text)
    credit: Mapped[str | None] = mapped_column(Text)
    attribution: Mapped[str | None] = mapped_column(Text)
    attribution_required: Mapped[bool | None] = mapped_column(Boolean)
    copyrighted: Mapped[bool | None] = mapped_column(Boolean)
    restrictions: Mapped[str | None] = mapped_column(Text)
    retrieved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    rejection_reason: Mapped[str | None] = mapped_column(String(50))
    removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Face(Timestamps, Base):
    """The validation outcome of one image under one detector configuration: the accepted face
    (box, quality figures, aligned crop) or the rejection reason."""

    __tablename__ = "faces"
    __table_args__ = (UniqueConstraint("image_id", "detector_config"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    domain: Mapped[str] = mapped_column(ForeignKey("domains.code"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    image_sha256: Mapped[str] = mapped_column(String(64), index=True)
    detector_config: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))  # accepted | rejected
    rejection_reason: Mapped[str | None] = mapped_column(String(50))
    rejection_detail: Mapped[str | None] = mapped_column(Text)
    faces_found: Mapped[int] = mapped_column(Integer, default=0)
    background_faces: Mapped[int] = mapped_column(Integer, default=0)
    box_x: Mapped[int | None] = mapped_column(Integer)
    box_y: Mapped[int | None] = mapped_column(Integer)
    box_w: Mapped[int | None] = mapped_column(Integer)
    box_h: Mapped[int | None] = mapped_column(Integer)
    confidence: Mapped[float | None] = mapped_column(Float)
    blur_score: Mapped[float | None] = mapped_column(Float)
    face_size: Mapped[int | None] = mapped_column(Integer)
    crop_path: Mapped[str | None] = mapped_column(Text)
    crop_sha256: Mapped[str | None] = mapped_column(String(64))


class FaceEmbedding(Base):
    """Content-addressed: one embedding per (image sha256, model configuration), shared by every
    domain that holds the same photo. Never mixes model configurations."""

    __tablename__ = "face_embeddings"
    __table_args__ = (UniqueConstraint("image_sha256", "model_config"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    image_sha256: Mapped[str] = mapped_column(String(64), index=True)
    model_config: Mapped[str] = mapped_column(String(200))
    model_name: Mapped[str] = mapped_column(String(50))
    detector_backend: Mapped[str] = mapped_column(String(50))
    normalization: Mapped[str] = mapped_column(String(50))
    library_version: Mapped[str] = mapped_column(String(50))
    dim: Mapped[int] = mapped_column(Integer)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)  # float32, little endian
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


PRODUCTION = "production"


class Gallery(Base):
    __tablename__ = "galleries"
    __table_args__ = (
        UniqueConstraint("domain", "version"),
        # The database is the one truth of what serves: at most one production row per domain.
        Index(
            "one_production_version_per_domain",
            "domain",
            unique=True,
            sqlite_where=text(f"status = '{PRODUCTION}'"),
            postgresql_where=text(f"status = '{PRODUCTION}'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(ForeignKey("domains.code"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    content_sha256: Mapped[str] = mapped_column(String(64))
    model_config: Mapped[str] = mapped_column(String(200))
    dim: Mapped[int] = mapped_column(Integer)
    batch_paths: Mapped[list[str]] = mapped_column(JSON, default=list)
    person_count: Mapped[int] = mapped_column(Integer)
    face_count: Mapped[int] = mapped_column(Integer)
    quarantined_count: Mapped[int] = mapped_column(Integer, default=0)
    evaluation: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    run_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # candidate (built; its checks not run or passed) | rejected (a blocking check failed) |
    # production (serves now; one per domain) | published (served before; a rollback target).
    # The pointer file recognized_faces_prod/{domain}/gallery.json is written from this.
    status: Mapped[str] = mapped_column(String(20), default="candidate", server_default="candidate")
    checks: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    # The open-set decision rule calibrated on this version (recognition/open_set.py).
    operating_point: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # sha256 of every file the version serves, by path relative to the storage root; checked
    # before the version is loaded to serve, promoted or rolled back to (None: built before 0005).
    file_checksums: Mapped[dict[str, str] | None] = mapped_column(JSON)

    @hybrid_property
    def is_prod(self) -> bool:
        """Serves production now (read from `status`, the one record of it)."""
        return self.status == PRODUCTION

    @is_prod.inplace.expression
    @classmethod
    def _is_prod_expression(cls):
        return cls.status == PRODUCTION


class GalleryFace(Base):
    """Identity decision for each candidate face of a gallery version: accepted into the gallery,
    or quarantined with the reason (never deleted)."""

    __tablename__ = "gallery_faces"
    __table_args__ = (UniqueConstraint("gallery_id", "face_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    gallery_id: Mapped[int] = mapped_column(ForeignKey("galleries.id"), index=True)
    domain: Mapped[str] = mapped_column(ForeignKey("domains.code"), index=True)
    face_id: Mapped[int] = mapped_column(ForeignKey("faces.id"))
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    identity_status: Mapped[str] = mapped_column(String(20))  # accepted | quarantined
    identity_reason: Mapped[str | None] = mapped_column(String(50))
    centroid_distance: Mapped[float | None] = mapped_column(Float)


class TrainingSession(Base):
    __tablename__ = "training_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(ForeignKey("domains.code"), index=True)
    run_id: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="running")
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    rejects_by_reason: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    estimated_serp_cost: Mapped[float] = mapped_column(Float, default=0.0)
    timings: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AssetLineage(Base):
    """Written by the table IO manager with every stage output it stores."""

    __tablename__ = "asset_lineage"

    id: Mapped[int] = mapped_column(primary_key=True)
    asset_key: Mapped[str] = mapped_column(String(200), index=True)
    partition: Mapped[str | None] = mapped_column(String(50), index=True)
    run_id: Mapped[str] = mapped_column(String(64))
    code_version: Mapped[str | None] = mapped_column(String(50))
    row_count: Mapped[int] = mapped_column(Integer)
    inserted: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    removed: Mapped[int] = mapped_column(Integer, default=0)
    # [{"asset_key", "partition", "lineage_id", "run_id"}] of the inputs this output was made from.
    inputs: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SourceSkip(Base):
    """Why the source gave nothing for a person or a file: `no_photos`, `missing_file`,
    `not_an_image`, `license_not_free`, `fetch_failed`, ... The latest state per domain and person
    (a re-run replaces the rows of the people it fetched)."""

    __tablename__ = "source_skips"

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(ForeignKey("domains.code"), index=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), index=True)
    source: Mapped[str] = mapped_column(String(30))
    item: Mapped[str | None] = mapped_column(Text)  # file title or URL; None for the person
    reason: Mapped[str] = mapped_column(String(50))
    detail: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SerpCall(Base):
    """One paid image search call and its estimated cost."""

    __tablename__ = "serp_calls"

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(ForeignKey("domains.code"), index=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    run_id: Mapped[str | None] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(50))
    query: Mapped[str] = mapped_column(Text)
    result_count: Mapped[int] = mapped_column(Integer, default=0)
    estimated_cost: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class GalleryEvaluation(Base):
    """`facerec evaluate`: a gallery version scored on labelled probe photos."""

    __tablename__ = "gallery_evaluations"

    id: Mapped[int] = mapped_column(primary_key=True)
    gallery_id: Mapped[int] = mapped_column(ForeignKey("galleries.id"), index=True)
    domain: Mapped[str] = mapped_column(ForeignKey("domains.code"), index=True)
    probes_dir: Mapped[str] = mapped_column(Text)
    unknown_dir: Mapped[str | None] = mapped_column(Text)
    figures: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Client(Base):
    """A client app allowed to ask `facerec serve`, for one domain (and those it inherits). Only
    the sha256 of its token is kept; the token itself is shown once, when it is issued."""

    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    domain: Mapped[str] = mapped_column(ForeignKey("domains.code"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ErasedPerson(Base):
    """A person erased from a domain (`facerec people erase`): the source must not bring them
    back. Only the sha256 of their `person_key` is kept (db/exclusions.py), never a name."""

    __tablename__ = "erased_people"
    __table_args__ = (UniqueConstraint("domain", "person_key_sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(ForeignKey("domains.code"), index=True)
    person_key_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Erasure(Base):
    """The audit of one erasure: who, when, how much was removed and the version published
    without the person. No name, no key: `person_key_sha256` links it to its exclusion."""

    __tablename__ = "erasures"

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(ForeignKey("domains.code"), index=True)
    person_key_sha256: Mapped[str] = mapped_column(String(64))
    operator: Mapped[str] = mapped_column(String(200))
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    new_gallery_version: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Artifact(Base):
    """One file the pipeline wrote under the storage root (core/artifacts/store.py): which stage
    made it from which photo (content sha256; None for a gallery's files) with which parameters
    (canonical JSON), and what it holds (sha256, size, dimensions, a blurhash for previews)."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("domain", "image_sha256", "stage", "parameters"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(ForeignKey("domains.code"), index=True)
    image_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    stage: Mapped[str] = mapped_column(String(30))
    path: Mapped[str] = mapped_column(Text, unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    parameters: Mapped[str] = mapped_column(Text, default="{}")
    gallery_version: Mapped[int | None] = mapped_column(Integer)
    blurhash: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ProcessingFailure(Base):
    """A photo a stage could not process (a crop that could not be written, a preview of a
    broken file): the error and how often it was tried. Tried again on the next run until
    MAX_ATTEMPTS (core/artifacts/failures.py); removed once it succeeds."""

    __tablename__ = "processing_failures"
    __table_args__ = (UniqueConstraint("domain", "image_sha256", "stage"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(ForeignKey("domains.code"), index=True)
    image_sha256: Mapped[str] = mapped_column(String(64))
    person_id: Mapped[int | None] = mapped_column(Integer)
    stage: Mapped[str] = mapped_column(String(30))
    item: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    run_id: Mapped[str | None] = mapped_column(String(64))
    first_failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
