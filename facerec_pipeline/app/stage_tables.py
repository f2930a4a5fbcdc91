"""Writing and reading a stage's table output: the rows of one domain partition of one table.

A stage returns a DataFrame that is the whole current state of its table for the domain. Writing it
upserts by the table's natural key; rows of the partition the output no longer holds get
`removed_at` set (tables that have it), never deleted. Plain SQLAlchemy, no Dagster here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Integer, Select, Table, insert, select, tuple_, update
from sqlalchemy.orm import Session

from facerec_pipeline.db.models import Face, FaceEmbedding, GalleryFace, Image, Person

GENERATED_COLUMNS = {"id", "created_at", "updated_at"}


@dataclass(frozen=True)
class StageTable:
    table: Table
    key_columns: tuple[str, ...]
    partition_column: str | None = "domain"
    soft_remove_missing: bool = False
    # Custom read for the partition (defaults to every present row of the partition).
    load_query: Callable[[str], Select] | None = None

    @property
    def name(self) -> str:
        return self.table.name


@dataclass(frozen=True)
class WriteCounts:
    rows: int
    inserted: int
    updated: int
    unchanged: int
    removed: int


def _plain(value: Any) -> Any:
    """numpy/pandas scalars to Python values; NaN/NaT to None."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _same(old: Any, new: Any) -> bool:
    if isinstance(old, datetime) and isinstance(new, datetime):
        return _naive_utc(old) == _naive_utc(new)
    if isinstance(old, float) and isinstance(new, float):
        return math.isclose(old, new, rel_tol=1e-9, abs_tol=1e-12)
    return old == new


def frame_records(frame: pd.DataFrame, table: Table) -> list[dict[str, Any]]:
    """Rows as plain dicts; whole floats in integer columns (pandas' NaN-able ints) become ints."""
    columns = [c for c in frame.columns if c in table.c and c not in GENERATED_COLUMNS]
    unknown = [c for c in frame.columns if c not in table.c]
    if unknown:
        raise ValueError(f"columns not in table {table.name}: {', '.join(map(str, unknown))}")
    integer = {c for c in columns if isinstance(table.c[c].type, Integer)}
    records = []
    for row in frame[columns].itertuples(index=False, name=None):
        record = {column: _plain(value) for column, value in zip(columns, row, strict=True)}
        for column in integer & record.keys():
            if isinstance(record[column], float):
                record[column] = int(record[column])
        records.append(record)
    return records


def _existing_rows(
    session: Session, spec: StageTable, partition: str | None, keys: list[tuple]
) -> dict[tuple, dict[str, Any]]:
    table = spec.table
    key_cols = [table.c[name] for name in spec.key_columns]
    rows: list[Any] = []
    if spec.partition_column and partition is not None:
        rows = list(
            session.execute(select(table).where(table.c[spec.partition_column] == partition))
            .mappings()
            .all()
        )
    else:
        for start in range(0, len(keys), 400):
            chunk = keys[start : start + 400]
            rows.extend(
                session.execute(select(table).where(tuple_(*key_cols).in_(chunk))).mappings().all()
            )
    return {tuple(row[name] for name in spec.key_columns): dict(row) for row in rows}


def write_stage_output(
    session: Session, spec: StageTable, frame: pd.DataFrame, partition: str | None
) -> WriteCounts:
    table = spec.table
    records = frame_records(frame, table)
    if spec.partition_column and partition is not None:
        for record in records:
            if record.setdefault(spec.partition_column, partition) != partition:
                raise ValueError(
                    f"{spec.name}: a row of partition {record[spec.partition_column]!r} in the "
                    f"output for partition {partition!r}"
                )
    keys = [tuple(record[name] for name in spec.key_columns) for record in records]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{spec.name}: the output repeats a key {spec.key_columns}")
    existing = _existing_rows(session, spec, partition, keys)
    has_removed_at = "removed_at" in table.c
    now = datetime.now(UTC)
    inserts, updated, unchanged = [], 0, 0
    for key, record in zip(keys, records, strict=True):
        old = existing.get(key)
        if old is None:
            inserts.append(record)
            continue
        changes = {
            column: value for column, value in record.items() if not _same(old.get(column), value)
        }
        if has_removed_at and old.get("removed_at") is not None and "removed_at" not in record:
            changes["removed_at"] = None
        if changes:
            session.execute(update(table).where(table.c.id == old["id"]).values(**changes))
            updated += 1
        else:
            unchanged += 1
    if inserts:
        session.execute(insert(table), inserts)
    removed = 0
    if spec.soft_remove_missing and has_removed_at:
        present = set(keys)
        gone = [
            row["id"]
            for key, row in existing.items()
            if key not in present and row.get("removed_at") is None
        ]
        for start in range(0, len(gone), 400):
            session.execute(
                update(table)
                .where(table.c.id.in_(gone[start : start + 400]))
                .values(removed_at=now)
            )
        removed = len(gone)
    return WriteCounts(len(records), len(inserts), updated, unchanged, removed)


def load_stage_output(session: Session, spec: StageTable, partition: str) -> pd.DataFrame:
    if spec.load_query is not None:
        query = spec.load_query(partition)
    else:
        table = spec.table
        query = select(table).where(table.c[spec.partition_column] == partition)
        if "removed_at" in table.c:
            query = query.where(table.c.removed_at.is_(None))
        query = query.order_by(table.c.id)
    result = session.execute(query)
    return pd.DataFrame(result.mappings().all(), columns=list(result.keys()))


def _embeddings_of_domain(domain: str) -> Select:
    """The domain's accepted faces with their embeddings (any model configuration)."""
    faces = Face.__table__
    images = Image.__table__
    embeddings = FaceEmbedding.__table__
    return (
        select(
            faces.c.id.label("face_id"),
            faces.c.person_id,
            embeddings.c.id.label("embedding_id"),
            embeddings.c.image_sha256,
            embeddings.c.model_config,
            embeddings.c.dim,
            embeddings.c.embedding,
        )
        .join(images, images.c.id == faces.c.image_id)
        .join(embeddings, embeddings.c.image_sha256 == faces.c.image_sha256)
        .where(
            faces.c.domain == domain, faces.c.status == "accepted", images.c.removed_at.is_(None)
        )
        .order_by(faces.c.id)
    )


def _present_faces(domain: str) -> Select:
    faces = Face.__table__
    images = Image.__table__
    return (
        select(faces)
        .join(images, images.c.id == faces.c.image_id)
        .where(faces.c.domain == domain, images.c.removed_at.is_(None))
        .order_by(faces.c.id)
    )


STAGE_TABLES: dict[str, StageTable] = {
    "candidates": StageTable(Person.__table__, ("domain", "person_key"), soft_remove_missing=True),
    "raw_images": StageTable(
        Image.__table__, ("domain", "person_id", "source_url"), soft_remove_missing=True
    ),
    "detected_faces": StageTable(
        Face.__table__, ("image_id", "detector_config"), load_query=_present_faces
    ),
    "face_embeddings": StageTable(
        FaceEmbedding.__table__,
        ("image_sha256", "model_config"),
        partition_column=None,
        load_query=_embeddings_of_domain,
    ),
    "gallery": StageTable(GalleryFace.__table__, ("gallery_id", "face_id")),
}
