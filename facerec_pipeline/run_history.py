"""Run history: one `training_sessions` row per domain run, filled in stage by stage and closed
with the run's status. No Dagster here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from facerec_pipeline.db.models import TrainingSession


def _session_row(session: Session, domain: str, run_id: str) -> TrainingSession:
    row = session.scalar(select(TrainingSession).where(TrainingSession.run_id == run_id))
    if row is None:
        row = TrainingSession(
            domain=domain,
            run_id=run_id,
            status="running",
            counts={},
            rejects_by_reason={},
            timings={},
        )
        session.add(row)
    return row


def record_stage(
    session: Session,
    domain: str,
    run_id: str,
    stage: str,
    counts: dict[str, Any],
    seconds: float,
    rejects: dict[str, int] | None = None,
    serp_cost: float | None = None,
) -> None:
    row = _session_row(session, domain, run_id)
    row.counts = {**(row.counts or {}), stage: counts}
    row.timings = {**(row.timings or {}), stage: round(seconds, 3)}
    if rejects is not None:
        row.rejects_by_reason = {**(row.rejects_by_reason or {}), **rejects}
    if serp_cost is not None:
        row.estimated_serp_cost = serp_cost


def finish(session: Session, domain: str, run_id: str, succeeded: bool, error: str | None) -> None:
    row = _session_row(session, domain, run_id)
    row.status = "succeeded" if succeeded else "failed"
    row.error = error
    row.finished_at = datetime.now(UTC)


# What each stage's row in the history counts first (its other figures stay in the JSON).
HEADLINE = {
    "candidates": "people",
    "raw_images": "photos",
    "detected_faces": "accepted",
    "face_embeddings": "faces",
    "gallery": "faces",
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
