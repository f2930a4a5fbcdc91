"""SQLAlchemy 2.0 models for the tables named in ARCHITECTURE.md.

Status and reason columns hold readable words ("accepted", "multiple_faces"), never numbers.
Columns that hold a domain code are foreign keys to `domains.code`, so the partition key is usable
directly in every query (always bound as a parameter).
"""

from facerec_pipeline.db.models.base import Base
from facerec_pipeline.db.models.domains import Client, Domain, DomainDataset
from facerec_pipeline.db.models.erasures import ErasedPerson, Erasure
from facerec_pipeline.db.models.faces import Face, FaceEmbedding
from facerec_pipeline.db.models.galleries import PRODUCTION, Gallery, GalleryEvaluation, GalleryFace
from facerec_pipeline.db.models.operations import (
    Artifact,
    AssetLineage,
    ProcessingFailure,
    TrainingSession,
)
from facerec_pipeline.db.models.sourcing import Image, Person, SerpCall, SourceSkip

__all__ = [
    "PRODUCTION",
    "Artifact",
    "AssetLineage",
    "Base",
    "Client",
    "Domain",
    "DomainDataset",
    "ErasedPerson",
    "Erasure",
    "Face",
    "FaceEmbedding",
    "Gallery",
    "GalleryEvaluation",
    "GalleryFace",
    "Image",
    "Person",
    "ProcessingFailure",
    "SerpCall",
    "SourceSkip",
    "TrainingSession",
]
