"""The policies every stage asset shares, decided here and nowhere else: the domain partition,
the stage-table IO manager, the pools, the kinds the UI shows, the retry policy of the stages
that reach the network, and how an asset calls its stage's application function (the face
stages' steps too: batched_stages.py)."""

import os
import socket
from collections.abc import Callable
from typing import Any

import dagster as dg

from facerec_pipeline.app.stages.stage_run import (
    FilePath,
    Markdown,
    StageFailed,
    StageResult,
    StageRun,
)
from facerec_pipeline.defs.partitions import domain_partitions
from facerec_pipeline.settings import Settings

# Assets that write the database share this pool, so SQLite sees one writer at a time even under
# the multiprocess executor (the limit is set in dagster.yaml).
DATABASE_POOL = "facerec_db"
# The batches of the face stages (detection, previews, embeddings: CPU for minutes) share this
# one instead, sized to the face workers (`dagster instance concurrency set facerec_faces N`):
# two batches (of one domain or two) run at once while another domain's other stages go on.
FACES_POOL = "facerec_faces"
# Every pool a stage waits in, with what it guards (as a waiting run says it).
STAGE_POOLS = {DATABASE_POOL: "database", FACES_POOL: "face"}

# Wikidata, Commons and the paid search: a stage that failed on the network is tried again.
NETWORK_RETRY = dg.RetryPolicy(
    max_retries=2, delay=15, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


def stage_asset(
    *,
    reaches_network: bool = False,
    stores_table: bool = True,
    **asset_kwargs,
):
    """The decorator of every stage asset but the face stages (batched_stage_asset):
    partitioned by domain, in the database pool; a stage table (a DataFrame) stored by the
    stage-table IO manager, and the network retry policy on the stages that download."""
    policy: dict = {
        "partitions_def": domain_partitions,
        "pool": DATABASE_POOL,
        "kinds": {"python", "sqlite"} if stores_table else {"python"},
    }
    if stores_table:
        policy["io_manager_key"] = "stage_tables"
    if reaches_network:
        policy["retry_policy"] = NETWORK_RETRY
    return dg.asset(**policy, **asset_kwargs)


def as_metadata(figures: dict[str, Any]) -> dict[str, Any]:
    """A stage's figures as Dagster metadata: markdown and paths marked for the UI; numbers,
    text, dicts and lists as they are (Dagster shows dicts and lists as JSON)."""
    shown: dict[str, Any] = {}
    for key, value in figures.items():
        if isinstance(value, Markdown):
            value = dg.MetadataValue.md(str(value))
        elif isinstance(value, FilePath):
            value = dg.MetadataValue.path(str(value))
        shown[key] = value
    return shown


def run_stage(
    context: dg.AssetExecutionContext, settings: Settings, build: Callable[[StageRun], StageResult]
) -> Any:
    """Call a stage's application function for the run's partition: its figures become the
    output's metadata with the host and process that executed the step (a Celery worker's on
    the celery executor), StageFailed a Dagster failure (retried only when retrying can help).
    Returns the stage table, or a MaterializeResult for a stage that keeps none."""
    result = call_stage_part(context, settings, build)
    figures = as_metadata(with_executor(result.figures))
    if result.table is None:
        return dg.MaterializeResult(metadata=figures)
    context.add_output_metadata(figures)
    return result.table


def call_stage_part(context, settings: Settings, part: Callable[[StageRun], Any]) -> Any:
    """`part` (a stage, or a part of one) called for the step's partition; StageFailed becomes
    a Dagster failure, retried only when retrying can help."""
    run = StageRun(settings, context.partition_key, context.run_id, context.log)
    try:
        return part(run)
    except StageFailed as error:
        # Caused by what caused the stage to fail (a SourceError, say), as when the asset raised
        # the failure itself: the run history names that cause once, not StageFailed too.
        raise dg.Failure(str(error), allow_retries=error.retryable) from error.__cause__


def with_executor(figures: dict[str, Any]) -> dict[str, Any]:
    # Text, not numbers: the run history counts a stage's numeric figures.
    return {**figures, "executed_by": f"{socket.gethostname()} pid {os.getpid()}"}
