"""The Dagster instance the CLI works with: its home (the settings' DAGSTER_HOME, with the
project's dagster.yaml), the instance itself, a domain's partition, and a run's duration."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import dagster as dg

from facerec_pipeline.defs.partitions import ensure_partition
from facerec_pipeline.settings import Settings

REPO_DAGSTER_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"


def ensure_dagster_home(settings: Settings) -> Path:
    """Dagster's home folder, created with the project's instance file when missing, and named in
    DAGSTER_HOME for Dagster (a DAGSTER_HOME already set in this process is kept)."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(settings.dagster_home)))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        if REPO_DAGSTER_YAML.exists():
            shutil.copyfile(REPO_DAGSTER_YAML, home / "dagster.yaml")
        else:
            (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return home


def dagster_instance(settings: Settings) -> dg.DagsterInstance:
    """The instance in the settings' Dagster home."""
    ensure_dagster_home(settings)
    return dg.DagsterInstance.get()


def register_partition(settings: Settings, code: str) -> None:
    """Add the domain's partition when the instance does not have it yet."""
    ensure_partition(dagster_instance(settings), code)


def run_seconds(instance: dg.DagsterInstance, run_id: str) -> float | None:
    """Wall-clock seconds of a Dagster run, so far when it is still going (None when the
    instance does not know it, e.g. history restored from another machine)."""
    stats = instance.get_run_stats(run_id)
    if not stats.start_time:
        return None
    return round((stats.end_time or time.time()) - stats.start_time, 1)
