"""Keep the figures of `facerec evaluate`: a row in `gallery_evaluations`, a JSON file and the
DIR/FAR plot beside the version's report; the CLI then shows them on the `gallery` asset
(defs/gallery/observations.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from facerec_pipeline.core.artifacts.store import (
    EVALUATION_REPORT,
    ArtifactKey,
    ArtifactStore,
    fill_bytes,
)
from facerec_pipeline.core.gallery.loading import LoadedGallery
from facerec_pipeline.core.gallery.report import curve_plot_png
from facerec_pipeline.db.engine import session_scope
from facerec_pipeline.db.models import Gallery, GalleryEvaluation
from facerec_pipeline.settings import Settings


@dataclass(frozen=True)
class EvaluationRecord:
    domain: str
    figures: dict[str, Any]
    plot: bytes  # the DIR-against-FAR curve, PNG


def record_evaluation(
    settings: Settings,
    gallery: LoadedGallery,
    figures: dict[str, Any],
    probes_dir: str,
    unknown_dir: str | None,
) -> EvaluationRecord:
    """Keep the figures: the JSON file and the plot beside the version's report, and a row."""
    now = datetime.now(UTC)
    point = gallery.operating_point
    figures = {
        "domain": gallery.domain,
        "gallery_version": gallery.version,
        "threshold": point.threshold if point else None,
        "target_far": point.target_far if point else None,
        "expected_dir": point.expected_dir if point else None,
        **figures,
    }
    operating = (figures["far"], figures["dir"]) if "far" in figures and "dir" in figures else None
    plot = curve_plot_png(figures.get("curve", []), operating)
    folder = settings.reports_dir(gallery.domain) / f"gallery_v{gallery.version:04d}"
    stem = f"evaluation_{now:%Y%m%dT%H%M%SZ}"
    figures["report"] = str(folder / f"{stem}.json")
    artifacts = ArtifactStore(settings)
    with artifacts.batch():
        for name, data in (
            (f"{stem}.png", plot),
            (f"{stem}.json", json.dumps(figures, indent=1).encode()),
        ):
            made = {"version": gallery.version, "file": name}
            key = ArtifactKey(gallery.domain, EVALUATION_REPORT, None, made, gallery.version)
            artifacts.put(folder / name, key, fill_bytes(data))
    with session_scope(settings.database_url) as session:
        gallery_id = session.scalar(
            select(Gallery.id).where(
                Gallery.domain == gallery.domain, Gallery.version == gallery.version
            )
        )
        if gallery_id is not None:
            session.add(
                GalleryEvaluation(
                    gallery_id=gallery_id,
                    domain=gallery.domain,
                    probes_dir=str(probes_dir),
                    unknown_dir=str(unknown_dir) if unknown_dir else None,
                    figures=figures,
                    created_at=now,
                )
            )
    return EvaluationRecord(gallery.domain, figures, plot)
