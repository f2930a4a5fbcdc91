"""Run history: one `training_sessions` row per domain run, written from the run's own events
(defs/runs/events.py reads them; `write_run` is the only writer). No Dagster here."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from facerec_pipeline.db.models import Domain, TrainingSession

# Metadata of a stage's materialization that counts rejects by reason, and the prefix each
# reason takes in the run's `rejects_by_reason`.
REJECT_COUNTS = {
    "rejected_at_ingest": "ingest:",
    "skips_by_reason": "source:",
    "rejections_by_reason": "",
    "quarantined_by_reason": "",
}
RUN_STATUS = {"SUCCESS": "succeeded", "FAILURE": "failed", "CANCELED": "failed"}


NOT_FIGURES = {"lineage_id"}  # a row id of asset_lineage, not a count
VERSION_LABEL = re.compile(r"^\S+ v(\d+)$")


def stage_figures(metadata: dict[str, Any]) -> dict[str, int | float]:
    """The figures of one stage: the numbers its materialization reported, the stage's own and
    the stage table's rows inserted/updated/unchanged/removed (Dagster's `dagster/...` entries,
    flags and ids left out)."""
    figures = {
        key: value
        for key, value in metadata.items()
        if isinstance(value, int | float)
        and not isinstance(value, bool)
        and "/" not in key
        and key not in NOT_FIGURES
    }
    label = VERSION_LABEL.match(str(metadata.get("gallery_version", "")))
    if label:  # the UI's label of a version ("serbia v3"): the number
        figures["gallery_version"] = int(label.group(1))
    return figures


def stage_rejects(metadata: dict[str, Any]) -> dict[str, int]:
    return {
        f"{prefix}{reason}": int(count)
        for key, prefix in REJECT_COUNTS.items()
        for reason, count in (metadata.get(key) or {}).items()
    }


@dataclass(frozen=True)
class RunFacts:
    """What a domain run's own events say: its status, error, start and end, and per stage the
    metadata it reported and the seconds its step took."""

    domain: str
    run_id: str
    status: str  # a Dagster run status name: STARTED, SUCCESS, FAILURE, CANCELED...
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    # None: the events are gone (the run was deleted from Dagster); the row keeps its figures.
    stage_metadata: dict[str, dict[str, Any]] | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)


def write_run(session: Session, facts: RunFacts) -> TrainingSession | None:
    """The one writer of `training_sessions`: the row of a run, written (again) from its facts.
    Idempotent; None when the domain is no longer in the database."""
    if session.scalar(select(Domain.id).where(Domain.code == facts.domain)) is None:
        return None
    row = session.scalar(select(TrainingSession).where(TrainingSession.run_id == facts.run_id))
    if row is None:
        row = TrainingSession(domain=facts.domain, run_id=facts.run_id)
        session.add(row)
    row.status = RUN_STATUS.get(facts.status, "running")
    row.error = facts.error if row.status == "failed" else None
    if facts.stage_metadata is not None:
        stages = facts.stage_metadata
        row.counts = {stage: stage_figures(meta) for stage, meta in stages.items()}
        row.timings = {stage: round(seconds, 3) for stage, seconds in facts.stage_seconds.items()}
        row.rejects_by_reason = {
            reason: count
            for meta in stages.values()
            for reason, count in stage_rejects(meta).items()
        }
        row.estimated_serp_cost = float(stages.get("raw_images", {}).get("serp_cost", 0))
    row.started_at = facts.started_at or row.started_at or datetime.now(UTC)
    row.finished_at = facts.finished_at if row.status != "running" else None
    return row


# What each stage's row in the history counts first (its other figures stay in the JSON).
HEADLINE = {
    "candidates": "people",
    "raw_images": "photos",
    "detected_faces": "accepted",
    "face_embeddings": "faces",
    "gallery": "faces",
    "production_gallery": "gallery_version",
}


def stage_summary(counts: dict[str, dict[str, Any]]) -> str:
    """'candidates 2 people, raw_images 3 photos, ...': one figure per stage, never a sum of
    unlike counters."""
    return ", ".join(
        f"{stage} {figures[HEADLINE[stage]]} {HEADLINE[stage].replace('_', ' ')}"
        if HEADLINE.get(stage) in figures
        else stage
        for stage, figures in counts.items()
    )


def recent_sessions(session: Session, domain: str, limit: int = 10) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(TrainingSession)
        .where(TrainingSession.domain == domain)
        .order_by(TrainingSession.id.desc())
        .limit(limit)
    )
    return [
        {
            "run_id": row.run_id,
            "status": row.status,
            "started_at": row.started_at.isoformat() if row.started_at else None,
            "finished_at": row.finished_at.isoformat() if row.finished_at else None,
            "counts": row.counts,
            "rejects_by_reason": row.rejects_by_reason,
            "estimated_serp_cost": row.estimated_serp_cost,
            "timings": row.timings,
            "error": row.error,
        }
        for row in rows
    ]
