"""The Dagster records of an erased person: the domain's runs whose events or logs name them."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from facerec_pipeline.defs.dagster_internals import delete_check_executions
from facerec_pipeline.defs.runs.events import PARTITION_TAG


def scrub_dagster_runs(
    instance: dg.DagsterInstance,
    code: str,
    needles: list[str],
    warn: Callable[[str], None],
    step_outputs: Path,
) -> int:
    """Delete the domain's Dagster runs whose events or logs mention the person (names, source
    key, photo hashes: materialization previews, report images, check figures), with their
    compute logs and check executions, and what any ended run of the domain still keeps of what
    its steps passed each other (`step_outputs/{run}`: face rows, embeddings). Their
    `training_sessions` rows stay (redacted)."""
    doomed = []
    for record in instance.get_runs(filters=dg.RunsFilter(tags={PARTITION_TAG: code})):
        if record.is_finished:
            shutil.rmtree(step_outputs / record.run_id, ignore_errors=True)
        text = "\n".join(dg.serialize_value(event) for event in instance.all_logs(record.run_id))
        logs = Path(instance.root_directory) / "storage" / record.run_id
        for file in logs.rglob("*") if logs.is_dir() else []:
            if file.is_file():
                text += file.read_text(errors="replace")
        if any(needle in text for needle in needles):
            doomed.append(record.run_id)
    for run_id in doomed:
        instance.delete_run(run_id)
        try:
            instance.compute_log_manager.delete_logs(prefix=[run_id])
        except Exception as error:  # noqa: BLE001 - a log manager that cannot delete keeps them
            warn(f"warning: the compute logs of run {run_id} were kept ({error})")
        for shard in (Path(instance.root_directory) / "history" / "runs").glob(f"{run_id}.db*"):
            shard.unlink()
    if doomed:
        try:
            delete_check_executions(instance, doomed)
        except Exception as error:  # noqa: BLE001 - storages without that table keep nothing more
            warn(f"warning: Dagster's check results of those runs were kept ({error})")
    return len(doomed)
