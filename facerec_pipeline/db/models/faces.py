"""Faces: the validation outcome of each photo, and the embeddings of accepted faces."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from facerec_pipeline.db.models.base import Base, Timestamps, utcnow


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
