"""The IO manager for stage tables: each stage's DataFrame goes to its SQLite (or any SQLAlchemy)
table for the domain partition, in one transaction with a lineage row naming the run, the code
version, the row counts and the input materializations it was made from."""

from typing import Any

import dagster as dg
import pandas as pd
from pydantic import PrivateAttr
from sqlalchemy import select

from facerec_pipeline.app.stage_tables import (
    STAGE_TABLES,
    StageTable,
    load_stage_output,
    write_stage_output,
)
from facerec_pipeline.db.engine import session_scope
from facerec_pipeline.db.models import AssetLineage
from facerec_pipeline.defs.dagster_internals import reading_step, stored_code_version

PREVIEW_ROWS = 10
PREVIEW_HIDDEN = {"embedding"}


def _stage(asset_key: dg.AssetKey) -> StageTable:
    name = asset_key.path[-1]
    if name not in STAGE_TABLES:
        raise dg.Failure(f"no stage table is declared for asset {asset_key.to_user_string()}")
    return STAGE_TABLES[name]


def preview_markdown(frame: pd.DataFrame) -> str:
    shown = frame.drop(columns=[c for c in frame.columns if c in PREVIEW_HIDDEN]).head(PREVIEW_ROWS)
    return shown.to_markdown(index=False) if len(shown) else "_no rows_"


class StageTableIOManager(dg.ConfigurableIOManager):
    """Stores pandas DataFrames in the stage tables of `database_url`."""

    database_url: str
    _inputs_read: dict[tuple[str, str], list[dict[str, Any]]] = PrivateAttr(default_factory=dict)

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if not isinstance(obj, pd.DataFrame):
            raise dg.Failure(f"{context.asset_key.to_user_string()} must return a DataFrame")
        spec = _stage(context.asset_key)
        partition = context.partition_key if context.has_partition_key else None
        inputs = self._inputs_read.pop((context.run_id, context.step_key), [])
        with session_scope(self.database_url) as session:
            counts = write_stage_output(session, spec, obj, partition)
            lineage = AssetLineage(
                asset_key=context.asset_key.to_user_string(),
                partition=partition,
                run_id=context.run_id,
                code_version=stored_code_version(context),
                row_count=counts.rows,
                inserted=counts.inserted,
                updated=counts.updated,
                removed=counts.removed,
                inputs=inputs,
            )
            session.add(lineage)
            session.flush()
            lineage_id = lineage.id
        context.add_output_metadata(
            {
                "table": spec.name,
                "dagster/row_count": counts.rows,
                "rows_inserted": counts.inserted,
                "rows_updated": counts.updated,
                "rows_unchanged": counts.unchanged,
                "rows_marked_removed": counts.removed,
                "lineage_id": lineage_id,
                "preview": dg.MetadataValue.md(preview_markdown(obj)),
            }
        )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        spec = _stage(context.asset_key)
        partition = context.asset_partition_key
        asset = context.asset_key.to_user_string()
        with session_scope(self.database_url) as session:
            frame = load_stage_output(session, spec, partition)
            latest = session.execute(
                select(AssetLineage.id, AssetLineage.run_id)
                .where(AssetLineage.asset_key == asset, AssetLineage.partition == partition)
                .order_by(AssetLineage.id.desc())
                .limit(1)
            ).first()
        record = {
            "asset_key": asset,
            "partition": partition,
            "lineage_id": latest.id if latest else None,
            "run_id": latest.run_id if latest else None,
            "rows": len(frame),
        }
        self._inputs_read.setdefault(reading_step(context), []).append(record)
        return frame
