"""The figures of `facerec evaluate` on the `gallery` asset, as an observation the UI shows with
the domain's partition."""

from __future__ import annotations

from typing import Any

import dagster as dg

from facerec_pipeline.app.evaluation import EvaluationRecord
from facerec_pipeline.core.gallery.report import inline_png
from facerec_pipeline.defs.instance import dagster_instance
from facerec_pipeline.settings import Settings


def observe_evaluation(settings: Settings, record: EvaluationRecord) -> None:
    """An AssetObservation on `gallery` for the domain's partition (Dagster UI)."""
    shown = {key: value for key, value in record.figures.items() if key != "curve"}
    metadata: dict[str, Any] = {
        f"probe_{key}": value for key, value in shown.items() if isinstance(value, int | float)
    }
    metadata["probe_evaluation"] = dg.MetadataValue.json(record.figures)
    metadata["dir_far_curve"] = dg.MetadataValue.md(inline_png(record.plot, "DIR against FAR"))
    with dagster_instance(settings) as instance:
        instance.report_runless_asset_event(
            dg.AssetObservation(asset_key="gallery", partition=record.domain, metadata=metadata)
        )
