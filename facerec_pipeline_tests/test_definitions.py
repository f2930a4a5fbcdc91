import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import dagster as dg

from facerec_pipeline.app.domains import set_active
from facerec_pipeline.db.engine import session_scope
from facerec_pipeline.defs.assembly import build_definitions, build_resources
from facerec_pipeline.defs.domains.sensors import domain_registry_sensor
from facerec_pipeline_tests.conftest import REPO, add_folder_domain


def test_definitions_snapshot(settings):
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    assert sorted(key.to_user_string() for key in graph.get_all_asset_keys()) == [
        "candidates",
        "detected_faces",
        "face_embeddings",
        "gallery",
        "previews",
        "production_gallery",
        "raw_images",
    ]
    assert sorted(f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys) == [
        "gallery:coherent_model",
        "gallery:distinct_identities",
        "gallery:loo_accuracy",
        "gallery:min_faces_per_person",
        "gallery:no_person_lost",
        "gallery:no_photo_in_two_people",
        "gallery:no_quality_drop",
        "gallery:not_shrunk",
    ]
    assert sorted(job.name for job in defs.jobs) == [
        "artifacts_verify_job",
        "database_backup_job",
        "domain_pipeline",
    ]
    assert sorted(sensor.name for sensor in defs.sensors) == [
        "dead_run_recovery",
        "domain_refresh_sensor",
        "domain_registry_sensor",
        "retraining_sensor",
        "run_history_sensor",
    ]
    assert [schedule.name for schedule in defs.schedules] == [
        "database_backup_schedule",
        "artifacts_verify_schedule",
    ]
    job = defs.resolve_job_def("domain_pipeline")
    assert job.partitions_def.name == "domain"
    assert sorted(defs.resources) == [
        "face_engine",
        "facerec",
        "sources",
        "stage_tables",
        "step_outputs",
    ]


DEFINITION_TYPES = (
    dg.AssetsDefinition,
    dg.AssetChecksDefinition,
    dg.SensorDefinition,
    dg.ScheduleDefinition,
    dg.JobDefinition,
    type(dg.define_asset_job("any")),  # what define_asset_job gives
)


def test_everything_defined_under_defs_is_assembled(settings):
    """defs/assembly.py lists the definitions instead of autoloading the folder: nothing a
    module of defs/ defines may be left out of what Dagster loads."""
    import facerec_pipeline.defs as defs_package

    defined = {}
    for module in pkgutil.walk_packages(defs_package.__path__, "facerec_pipeline.defs."):
        for name, value in vars(importlib.import_module(module.name)).items():
            if isinstance(value, DEFINITION_TYPES):
                defined[id(value)] = f"{module.name}.{name}"
    assert len(defined) >= 15
    defs = build_definitions(settings)
    loaded = {
        id(value)
        for kind in ("assets", "asset_checks", "sensors", "schedules", "jobs")
        for value in getattr(defs, kind)
    }
    assert sorted(name for key, name in defined.items() if key not in loaded) == []


def test_everything_the_ui_lists_has_a_description(settings):
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    bare = [
        key.to_user_string() for key in graph.get_all_asset_keys() if not graph.get(key).description
    ]
    bare += [
        key.name for key in graph.asset_check_keys if not graph.get_check_spec(key).description
    ]
    bare += [
        each.name for each in [*defs.sensors, *defs.schedules, *defs.jobs] if not each.description
    ]
    assert bare == []


def test_dagster_cli_validates_the_code_location(settings):
    completed = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"FACEREC_STORAGE_DIR": str(settings.storage_dir), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_dg_recognises_the_project(settings, tmp_path):
    """`dg` (dagster-dg-cli) reads [tool.dg] in pyproject.toml: `dg check defs` loads and
    validates the Definitions, and `dg list defs` lists the stages."""
    dg_cli = str(Path(sys.executable).parent / "dg")
    env = {
        "FACEREC_STORAGE_DIR": str(settings.storage_dir),
        "DAGSTER_HOME": str(tmp_path),
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
    }
    checked = subprocess.run(
        [dg_cli, "check", "defs"], cwd=REPO, capture_output=True, text=True, env=env, timeout=300
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    listed = subprocess.run(
        [dg_cli, "list", "defs", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assets = {asset["asset_key"] for asset in json.loads(listed.stdout)["assets"]}
    assert {"candidates", "raw_images", "detected_faces", "face_embeddings", "gallery"} <= assets


def test_registry_sensor_adds_active_domains_as_partitions(settings, instance, tmp_path):
    add_folder_domain(settings, "serbia", tmp_path)
    add_folder_domain(settings, "greece", tmp_path)
    with session_scope(settings.database_url) as session:
        set_active(session, "greece", False)
    resources = {"facerec": build_resources(settings)["facerec"]}
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        result = domain_registry_sensor(context)
    (request,) = result.dynamic_partitions_requests
    assert request.partitions_def_name == "domain" and list(request.partition_keys) == ["serbia"]
    (first_run,) = result.run_requests  # serbia has no gallery yet: its first run
    assert (first_run.partition_key, first_run.run_key) == ("serbia", "first-run:serbia")
    instance.add_dynamic_partitions("domain", ["serbia"])
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        again = domain_registry_sensor(context)
    assert again.dynamic_partitions_requests == []
    assert [r.run_key for r in again.run_requests] == ["first-run:serbia"]  # deduplicated by key


def test_a_run_from_the_materialize_button_gets_its_history_from_its_events(
    settings, instance, tmp_path, photos
):
    """The UI's Materialize button runs `__ASSET_JOB`, not `domain_pipeline`: the run-history
    sensor watches every job and writes the row from the run's own events (the assets write
    no history themselves)."""
    from facerec_pipeline.app.run_history import recent_sessions
    from facerec_pipeline.defs.candidates.assets import candidates
    from facerec_pipeline.defs.runs.sensors import run_history_sensor
    from facerec_pipeline_tests.conftest import build_folder

    add_folder_domain(
        settings,
        "serbia",
        build_folder(
            tmp_path / "f", {"ana": [photos / "obama.jpg"], "bob": [photos / "biden.jpg"]}
        ),
    )
    instance.add_dynamic_partitions("domain", ["serbia"])
    resources = build_resources(settings)
    result = dg.materialize(
        [candidates], partition_key="serbia", instance=instance, resources=resources
    )
    with session_scope(settings.database_url) as session:
        assert recent_sessions(session, "serbia") == []
    context = dg.build_sensor_context(
        instance=instance, resources={"facerec": resources["facerec"]}
    )
    run_history_sensor(context)
    with session_scope(settings.database_url) as session:
        (row,) = recent_sessions(session, "serbia")
    assert row["run_id"] == result.run_id
    assert row["status"] == "succeeded" and row["finished_at"] is not None
    assert row["counts"] == {
        "candidates": {
            "people": 2,
            "new_people": 2,
            "rows_inserted": 2,
            "rows_updated": 0,
            "rows_unchanged": 0,
            "rows_marked_removed": 0,
        }
    }
    stats = instance.get_run_stats(result.run_id)
    assert 0 < row["timings"]["candidates"] <= stats.end_time - stats.start_time
    # The next tick reads the last minute again (a late-committed update is not lost) and
    # writes the same row: one row, unchanged.
    run_history_sensor(
        dg.build_sensor_context(
            instance=instance, cursor=context.cursor, resources={"facerec": resources["facerec"]}
        )
    )
    with session_scope(settings.database_url) as session:
        assert recent_sessions(session, "serbia") == [row]
