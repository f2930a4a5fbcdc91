import subprocess
import sys

import dagster as dg

from facerec_pipeline.db.engine import session_scope
from facerec_pipeline.definitions import build_definitions, build_resources
from facerec_pipeline.domains.registry import set_active
from facerec_pipeline.domains.sensors import domain_registry_sensor
from facerec_pipeline_tests.conftest import REPO, add_folder_domain


def test_definitions_snapshot(settings):
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    assert sorted(key.to_user_string() for key in graph.get_all_asset_keys()) == [
        "candidates",
        "detected_faces",
        "face_embeddings",
        "gallery",
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
    assert sorted(job.name for job in defs.jobs) == ["database_backup_job", "domain_pipeline"]
    assert sorted(sensor.name for sensor in defs.sensors) == [
        "dead_run_recovery",
        "domain_refresh_sensor",
        "domain_registry_sensor",
        "domain_run_failed",
        "domain_run_succeeded",
        "retraining_sensor",
    ]
    assert [schedule.name for schedule in defs.schedules] == ["database_backup_schedule"]
    job = defs.resolve_job_def("domain_pipeline")
    assert job.partitions_def.name == "domain"
    assert sorted(defs.resources) == ["face_engine", "facerec", "stage_tables", "web_sources"]


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


def test_a_run_from_the_materialize_button_closes_its_history(settings, instance, tmp_path, photos):
    """The UI's Materialize button runs `__ASSET_JOB`, not `domain_pipeline`: the run status
    sensors watch every job, so its history row is closed too."""
    from facerec_pipeline.candidates.assets import candidates
    from facerec_pipeline.run_history import recent_sessions
    from facerec_pipeline.run_history_sensors import domain_run_succeeded
    from facerec_pipeline_tests.conftest import build_folder

    add_folder_domain(
        settings, "serbia", build_folder(tmp_path / "f", {"ana": [photos / "obama.jpg"]})
    )
    instance.add_dynamic_partitions("domain", ["serbia"])
    resources = build_resources(settings)
    result = dg.materialize(
        [candidates], partition_key="serbia", instance=instance, resources=resources
    )
    with session_scope(settings.database_url) as session:
        assert recent_sessions(session, "serbia")[0]["status"] == "running"
    context = dg.build_run_status_sensor_context(
        sensor_name="domain_run_succeeded",
        dagster_event=result.get_run_success_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"facerec": resources["facerec"]},
    )
    domain_run_succeeded(context)
    with session_scope(settings.database_url) as session:
        (row,) = recent_sessions(session, "serbia")
    assert row["status"] == "succeeded" and row["finished_at"] is not None
