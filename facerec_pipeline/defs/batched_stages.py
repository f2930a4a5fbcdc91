"""The face stages as graphs of steps an executor can place on several machines: `{stage}_plan`
sorts out what earlier runs did and yields the work left in batches (FACEREC_FACE_BATCH_SIZE,
the face engine resource's `batch_size`), one `{stage}_batch[n]` step per batch (the face pool,
the face workers' queue, retried on its own by BATCH_RETRY), and `{stage}_merge` writes the
stage table from every batch's result (Dagster's dynamic outputs, mapped and collected inside a
graph-backed asset). Plan and merge take the stage's inputs (the merge for the table's lineage)
and write the stage's table, in the database pool; a batch writes only its files and their
`artifacts` rows. Steps pass their results through STEP_OUTPUTS, files under the storage root
that every worker mounts, removed once the run has ended (runs/events.py record_run)."""

from collections.abc import Sequence

import dagster as dg

from facerec_pipeline.app.stages.stage_run import BatchedStage
from facerec_pipeline.defs.executors import CELERY_QUEUE_TAG, FACES_QUEUE
from facerec_pipeline.defs.partitions import domain_partitions
from facerec_pipeline.defs.policy import (
    DATABASE_POOL,
    FACES_POOL,
    as_metadata,
    call_stage_part,
    with_executor,
)

STEP_OUTPUTS = "step_outputs"
# A batch whose step raised (a storage mount or a database connection that went away) is tried
# again on its own, the run's other batches kept.
BATCH_RETRY = dg.RetryPolicy(max_retries=2, delay=5)
RESOURCES = {"facerec", "face_engine"}


def _model(context: dg.OpExecutionContext):
    facerec = context.resources.facerec
    return context.resources.face_engine.model_of_domain(facerec, context.partition_key)


def _call(context: dg.OpExecutionContext, part):
    return call_stage_part(context, context.resources.facerec.settings, part)


def _plan_op(stage: BatchedStage, inputs: Sequence[str]) -> dg.OpDefinition:
    @dg.op(
        name=f"{stage.name}_plan",
        ins={table: dg.In() for table in inputs},
        out={
            "carry": dg.Out(io_manager_key=STEP_OUTPUTS),
            "batches": dg.DynamicOut(io_manager_key=STEP_OUTPUTS),
        },
        pool=DATABASE_POOL,
        required_resource_keys=RESOURCES,
    )
    def plan(context: dg.OpExecutionContext, **tables):
        size = context.resources.face_engine.batch_size
        planned = _call(context, lambda run: stage.plan(run, _model(context), size, **tables))
        sizes = [len(batch) for batch in planned.batches]
        figures = {"batches": len(sizes), "to_do": sum(sizes), "batch_size": size}
        yield dg.Output(planned.carry, "carry", metadata=with_executor(figures))
        for number, batch in enumerate(planned.batches, 1):
            yield dg.DynamicOutput(batch, mapping_key=f"{number:05d}", output_name="batches")

    return plan


def _batch_op(stage: BatchedStage) -> dg.OpDefinition:
    @dg.op(
        name=f"{stage.name}_batch",
        out=dg.Out(io_manager_key=STEP_OUTPUTS),
        pool=FACES_POOL,
        tags={CELERY_QUEUE_TAG: FACES_QUEUE},
        retry_policy=BATCH_RETRY,
        required_resource_keys=RESOURCES,
    )
    def batch(context: dg.OpExecutionContext, batch: list):
        engines = context.resources.face_engine
        done = _call(context, lambda run: stage.work(run, _model(context), engines, batch))
        return dg.Output(done.value, metadata=as_metadata(with_executor(done.figures)))

    return batch


def _merge_op(stage: BatchedStage, inputs: Sequence[str], stores_table: bool) -> dg.OpDefinition:
    @dg.op(
        name=f"{stage.name}_merge",
        ins={"carry": dg.In(), "results": dg.In(), **{table: dg.In() for table in inputs}},
        out=dg.Out(io_manager_key="stage_tables") if stores_table else dg.Out(dg.Nothing),
        pool=DATABASE_POOL,
        required_resource_keys=RESOURCES,
    )
    def merge(context: dg.OpExecutionContext, carry, results: list, **tables):
        merged = _call(context, lambda run: stage.merge(run, _model(context), carry, results))
        figures = as_metadata(with_executor(merged.figures))
        if merged.table is None:
            return dg.Output(None, metadata=figures)
        context.add_output_metadata(figures)
        return merged.table

    return merge


def batched_stage_asset(
    stage: BatchedStage,
    *,
    inputs: Sequence[str],
    stores_table: bool = True,
    description: str,
    **asset_kwargs,
) -> dg.AssetsDefinition:
    """The asset of a face stage: plan, a step per batch, merge (see the module docstring)."""
    plan, batch = _plan_op(stage, inputs), _batch_op(stage)
    merge = _merge_op(stage, inputs, stores_table)

    @dg.graph_asset(
        name=stage.name,
        description=description,
        partitions_def=domain_partitions,
        ins={table: dg.AssetIn(table) for table in inputs},
        kinds={"python", "sqlite"} if stores_table else {"python"},
        **asset_kwargs,
    )
    def batched(**tables):
        carry, batches = plan(**tables)
        return merge(carry, batches.map(batch).collect(), **tables)

    return batched
