"""Schedules, the retraining sensor, promotion gates, rollback, backfill, run history and
backups, on real runs of small folder domains."""

import json
import shutil
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from click.testing import CliRunner

from facerec_pipeline.app.backups import (
    BackupError,
    backup_database,
    backups_to_keep,
    list_backups,
    prune_backups,
)
from facerec_pipeline.app.domains import get_domain, list_domains, set_active
from facerec_pipeline.app.promotion import (
    GalleryError,
    failed_checks_message,
    latest_version,
    list_versions,
    promote,
    rollback,
    run_checks,
)
from facerec_pipeline.app.restore import restore_database
from facerec_pipeline.app.run_history import recent_sessions
from facerec_pipeline.cli.main import cli
from facerec_pipeline.core.faces.engine import EngineConfig
from facerec_pipeline.core.recognition.recognizer import (
    NoGallery,
    Recognizer,
    load_prod_gallery,
    stored_engine_config,
)
from facerec_pipeline.db.engine import session_scope
from facerec_pipeline.defs.assembly import ASSET_CHECKS, ASSETS, build_definitions, build_resources
from facerec_pipeline.defs.domains.refresh import domain_refresh_sensor, due_refreshes
from facerec_pipeline.defs.gallery.sensors import retraining_sensor
from facerec_pipeline.defs.launch import run_domain
from facerec_pipeline.defs.partitions import domain_partitions
from facerec_pipeline.defs.resources import FaceEngineResource
from facerec_pipeline.settings import Settings
from facerec_pipeline_tests.conftest import add_folder_domain, build_folder


def run(settings, instance, code, raise_on_error=True):
    if not instance.has_dynamic_partition(domain_partitions.name, code):
        instance.add_dynamic_partitions(domain_partitions.name, [code])
    return dg.materialize(
        [*ASSETS, *ASSET_CHECKS],
        partition_key=code,
        instance=instance,
        resources=build_resources(settings),
        raise_on_error=raise_on_error,
    )


def sensor_result(settings, instance):
    built = build_resources(settings)
    resources = {"facerec": built["facerec"], "sources": built["sources"]}
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        return retraining_sensor(context)


@pytest.fixture
def two_domains(settings, tmp_path, photos, composed):
    """Domains `alpha` (Obama, Eileen Collins, Biden) and `beta` (Biden, Collins), built."""
    alpha = build_folder(
        tmp_path / "alpha",
        {
            "barack_obama": [photos / "obama.jpg", photos / "obama2.jpg"],
            "eileen_collins": [composed["astronaut.png"]],
            "joe_biden": [photos / "biden.jpg"],
        },
    )
    beta = build_folder(
        tmp_path / "beta",
        {"joe_biden": [photos / "biden.jpg"], "eileen_collins": [composed["astronaut.png"]]},
    )
    add_folder_domain(settings, "alpha", alpha)
    add_folder_domain(settings, "beta", beta)
    with dg.instance_for_test() as instance:
        assert run(settings, instance, "alpha").success
        assert run(settings, instance, "beta").success
        yield {"instance": instance, "alpha": alpha, "beta": beta}


def test_each_domain_refreshes_on_its_own_cron_read_at_each_tick():
    monday_3 = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
    domains = [
        ("alpha", "0 3 * * 1", True),
        ("beta", "15 4 * * *", True),
        ("off", "0 * * * *", False),
    ]
    due, cursor = due_refreshes(domains, {}, monday_3)
    assert due == []  # first sight: nothing from the past
    assert cursor["alpha"]["tick"] == monday_3.isoformat()
    assert cursor["beta"]["tick"] == datetime(2026, 11, 22, 4, 15, tzinfo=UTC).isoformat()
    later = monday_3 + timedelta(hours=1, minutes=20)  # 04:20: beta's and off's ticks passed
    due, cursor = due_refreshes(domains, cursor, later)
    assert [(d.code, d.tick.hour, d.tick.minute) for d in due] == [("beta", 4, 15)]
    assert due_refreshes(domains, cursor, later + timedelta(minutes=5))[0] == []  # handled
    # Three days with the daemon down: one run, not three.
    due, cursor = due_refreshes(domains, cursor, later + timedelta(days=3))
    assert [d.code for d in due] == ["beta"]
    # A changed cron starts from its own latest tick; an invalid one is left out, loudly.
    changed = [("alpha", "0 5 * * *", True), ("beta", "not a cron", True)]
    due, moved = due_refreshes(changed, cursor, later + timedelta(days=3, hours=2))
    assert due == [] and moved["alpha"]["cron"] == "0 5 * * *" and "beta" not in moved


def test_the_refresh_sensor_reads_the_registry_without_a_reload(settings, tmp_path):
    resources = {"facerec": build_resources(settings)["facerec"]}
    with dg.instance_for_test() as instance:

        def tick(cursor=None):
            context = dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor)
            return domain_refresh_sensor(context), context

        assert isinstance(tick()[0], dg.SkipReason)  # no domain yet
        add_folder_domain(settings, "alpha", tmp_path)  # added after the code loaded
        add_folder_domain(settings, "beta", tmp_path)
        with session_scope(settings.database_url) as session:
            get_domain(session, "alpha").refresh_cron = "* * * * *"
            get_domain(session, "beta").refresh_cron = "* * * * *"
            set_active(session, "beta", False)
        result, context = tick()
        assert isinstance(result, dg.SkipReason)  # first sight: no run for past ticks
        cursor = json.loads(context.cursor)
        assert sorted(cursor) == ["alpha", "beta"]
        a_minute_ago = {
            code: {
                **handled,
                "tick": (
                    datetime.fromisoformat(handled["tick"]) - timedelta(minutes=1)
                ).isoformat(),
            }
            for code, handled in cursor.items()
        }
        # alpha is not a partition yet (the registry sensor adds it): its tick waits.
        result, context = tick(json.dumps(a_minute_ago))
        assert isinstance(result, dg.SkipReason)
        assert json.loads(context.cursor)["alpha"] == a_minute_ago["alpha"]
        instance.add_dynamic_partitions(domain_partitions.name, ["alpha", "beta"])
        result, _ = tick(json.dumps(a_minute_ago))
        (request,) = result.run_requests  # beta is inactive
        assert request.partition_key == "alpha" and request.tags["facerec/trigger"] == "schedule"
        assert request.run_key.startswith("refresh:alpha:")


def test_definitions_load_without_touching_the_database(tmp_path):
    unreachable = Settings(tmp_path / "storage", "postgresql://u:p@127.0.0.1:9/facerec")
    definitions = build_definitions(unreachable)
    dg.Definitions.validate_loadable(definitions)
    assert "domain_refresh_sensor" in {sensor.name for sensor in definitions.sensors}
    assert not (tmp_path / "storage").exists()


def test_new_photos_make_the_sensor_ask_for_that_domain_only(settings, two_domains, photos):
    instance = two_domains["instance"]
    assert isinstance(sensor_result(settings, instance), dg.SkipReason)
    shutil.copyfile(photos / "obama3.jpg", two_domains["beta"] / "joe_biden" / "new.jpg")
    (request,) = sensor_result(settings, instance).run_requests
    assert request.partition_key == "beta"
    assert request.run_key.startswith("retrain:beta:v1:files:")
    assert dg.AssetKey("candidates") in request.asset_selection
    assert sensor_result(settings, instance).run_requests[0].run_key == request.run_key
    shutil.copyfile(photos / "obama2.jpg", two_domains["beta"] / "joe_biden" / "newer.jpg")
    assert sensor_result(settings, instance).run_requests[0].run_key != request.run_key
    with session_scope(settings.database_url) as session:
        set_active(session, "beta", False)
    assert isinstance(sensor_result(settings, instance), dg.SkipReason)  # history kept
    with session_scope(settings.database_url) as session:
        assert [d.code for d in list_domains(session)] == ["alpha", "beta"]


def test_a_planted_folder_fails_a_check_and_production_keeps_serving(settings, two_domains, photos):
    instance, alpha = two_domains["instance"], two_domains["alpha"]
    # Joe Biden's folder now holds other photos of Barack Obama.
    (alpha / "joe_biden" / "biden.jpg").unlink()
    for name in ("obama_partial_face.jpg", "obama_partial_face2.jpg"):
        shutil.copyfile(photos / name, alpha / "joe_biden" / name)
    result = run(settings, instance, "alpha", raise_on_error=False)
    assert not result.success
    failed = {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}
    assert "distinct_identities" in failed
    assert not result.asset_materializations_for_node("production_gallery")
    with session_scope(settings.database_url) as session:
        versions = list_versions(session, "alpha")
    assert [(v["version"], v["status"], v["is_prod"]) for v in versions] == [
        (1, "production", True),
        (2, "rejected", False),
    ]
    assert load_prod_gallery(settings, "alpha").version == 1
    with session_scope(settings.database_url) as session:
        message = failed_checks_message(latest_version(session, "alpha"))
    assert "distinct_identities: " in message and "closest_distance=" in message
    evaluation = next(
        e for e in result.get_asset_check_evaluations() if e.check_name == "distinct_identities"
    )
    assert "closest_distance" in evaluation.description


def test_a_rejected_version_passes_on_recheck_after_its_settings_change(settings, two_domains):
    instance = two_domains["instance"]
    with session_scope(settings.database_url) as session:
        get_domain(session, "alpha").min_faces_per_person = 9
    shutil.rmtree(two_domains["alpha"] / "joe_biden")  # new content: a new version is built
    result = run(settings, instance, "alpha", raise_on_error=False)
    assert not result.success
    with session_scope(settings.database_url) as session:
        assert [
            (v["version"], v["status"], v["failed_checks"]) for v in list_versions(session, "alpha")
        ][-1] == (2, "rejected", ["min_faces_per_person"])
        get_domain(session, "alpha").min_faces_per_person = 1
    with session_scope(settings.database_url) as session:
        version, outcomes = run_checks(session, settings, "alpha")
        assert version.status == "candidate" and all(p for p, _ in outcomes.values())
        promote(session, settings, version)
    assert load_prod_gallery(settings, "alpha").version == 2


def test_a_version_built_before_open_set_recognition_is_never_served_again(settings, two_domains):
    with session_scope(settings.database_url) as session:
        latest_version(session, "alpha").operating_point = None  # as migration 0004 left it
    with (
        session_scope(settings.database_url) as session,
        pytest.raises(GalleryError, match="built before open-set recognition"),
    ):
        rollback(session, settings, "alpha", 1)
    with session_scope(settings.database_url) as session:
        assert latest_version(session, "alpha").status == "production"  # nothing changed
    with pytest.raises(NoGallery, match="no calibrated operating point"):
        load_prod_gallery(settings, "alpha")  # and the recognizer refuses it too


def test_copies_of_another_persons_photos_fail_no_person_lost(settings, two_domains, photos):
    instance, alpha = two_domains["instance"], two_domains["alpha"]
    (alpha / "joe_biden" / "biden.jpg").unlink()
    shutil.copyfile(photos / "obama.jpg", alpha / "joe_biden" / "obama.jpg")  # a duplicate
    result = run(settings, instance, "alpha", raise_on_error=False)
    failed = {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}
    assert failed == {"no_person_lost"} and load_prod_gallery(settings, "alpha").version == 1


def test_rollback_and_roll_forward(settings, two_domains, photos, engine):
    instance, alpha = two_domains["instance"], two_domains["alpha"]
    shutil.copyfile(photos / "obama3.jpg", alpha / "barack_obama" / "obama3.jpg")
    assert run(settings, instance, "alpha").success
    assert load_prod_gallery(settings, "alpha").version == 2
    serving = Recognizer.for_domains(settings, ["alpha", "beta"], engine)
    assert serving.refresh() == []
    with session_scope(settings.database_url) as session:
        assert rollback(session, settings, "alpha", None).version == 1
    assert load_prod_gallery(settings, "alpha").version == 1
    assert serving.refresh() == ["alpha"]  # a long-lived recognizer follows production
    assert [g.version for g in serving.galleries] == [1, 1]
    with session_scope(settings.database_url) as session:
        assert rollback(session, settings, "alpha", 2).version == 2
        with pytest.raises(GalleryError, match="never published"):
            rollback(session, settings, "alpha", 7)
    assert load_prod_gallery(settings, "alpha").version == 2


def test_report_and_run_history(settings, two_domains):
    outcome = run_domain(settings, "alpha", instance=two_domains["instance"], echo=lambda _: None)
    assert outcome.success
    with session_scope(settings.database_url) as session:
        latest = recent_sessions(session, "alpha")[0]
    assert latest["run_id"] == outcome.run_id and latest["status"] == "succeeded"
    assert set(latest["counts"]) == {
        "candidates",
        "raw_images",
        "detected_faces",
        "previews",
        "face_embeddings",
        "gallery",
        "production_gallery",
    }
    assert latest["counts"]["detected_faces"]["accepted"] == 4 and latest["finished_at"]
    # Figures and seconds from the run's own events: each stage's own count, each step's time.
    assert latest["counts"]["gallery"]["faces"] == latest["counts"]["face_embeddings"]["faces"]
    assert latest["counts"]["production_gallery"]["gallery_version"] == 1
    assert set(latest["timings"]) == set(latest["counts"])
    assert all(seconds > 0 for seconds in latest["timings"].values())
    report = settings.storage_dir / "reports" / "alpha" / "gallery_v0001"
    assert (report / "distances.png").stat().st_size > 1000
    assert (report / "contact_sheet.png").stat().st_size > 1000
    assert "leave-one-out top-1 accuracy" in (report / "report.md").read_text()


def test_backfill_command_reports_each_domain(settings, tmp_path, photos, composed):
    for code in ("gamma", "delta"):
        add_folder_domain(
            settings,
            code,
            build_folder(
                tmp_path / code,
                {
                    "barack_obama": [photos / "obama.jpg"],
                    "eileen_collins": [composed["astronaut.png"]],
                },
            ),
        )
    add_folder_domain(
        settings, "empty", build_folder(tmp_path / "empty", {"x": [composed["blank.jpg"]]})
    )
    env = {
        "FACEREC_STORAGE_DIR": str(settings.storage_dir),
        "DATABASE_URL": "",
        "DAGSTER_HOME": str(tmp_path / "dagster"),
    }
    result = CliRunner().invoke(cli, ["backfill", "--domains", "gamma,delta,empty"], env=env)
    assert result.exit_code == 1, result.output
    table = result.output.split("domain    result")[-1]
    assert "gamma     ok" in table, result.output
    assert "delta     ok" in table and "empty     FAILED" in table
    assert (
        load_prod_gallery(settings, "gamma").version
        == load_prod_gallery(settings, "delta").version
        == 1
    )
    unknown = CliRunner().invoke(cli, ["backfill", "--domains", "gamma,nope"], env=env)
    assert unknown.exit_code == 1 and "unknown domain 'nope'" in unknown.output


def test_backup_restore_round_trip(settings, tmp_path):
    add_folder_domain(settings, "kept", tmp_path)
    backup = backup_database(settings.database_url, settings.backups_dir)
    add_folder_domain(settings, "later", tmp_path)
    safety = restore_database(settings.database_url, backup, settings.backups_dir)
    with session_scope(settings.database_url) as session:
        assert [d.code for d in list_domains(session)] == ["kept"]
    assert safety is not None and safety.exists()
    with pytest.raises(BackupError, match="not a readable database|damaged"):
        broken = tmp_path / "broken.db"
        broken.write_bytes(b"garbage" * 100)
        restore_database(settings.database_url, broken, settings.backups_dir)
    with session_scope(settings.database_url) as session:
        assert [d.code for d in list_domains(session)] == ["kept"]  # nothing lost
    with pytest.raises(BackupError, match="pg_dump"):
        backup_database("postgresql://db/facerec", tmp_path)


def test_retention_keeps_7_daily_4_weekly_12_monthly(tmp_path):
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    stamps = [now - timedelta(hours=12 * i) for i in range(2 * 400)]  # twice a day, 400 days
    keep = backups_to_keep(stamps, now)
    days = {s.date() for s in keep}
    assert len([d for d in days if (now.date() - d).days < 7]) == 7
    assert len({(s.year, s.month) for s in keep}) == 12
    assert len(keep) <= 7 + 4 + 12
    assert max(stamps) in keep
    for stamp in stamps[:5]:
        (tmp_path / f"facerec-{stamp.strftime('%Y%m%dT%H%M%SZ')}.db").write_bytes(b"")
    old = now - timedelta(days=500)
    (tmp_path / f"facerec-{old.strftime('%Y%m%dT%H%M%SZ')}.db").write_bytes(b"")
    removed = prune_backups(tmp_path, now)
    assert [p.name for p in removed][0].startswith("facerec-2025") and len(
        list_backups(tmp_path)
    ) == 3


def test_gallery_and_history_commands(settings, two_domains, tmp_path):
    env = {
        "FACEREC_STORAGE_DIR": str(settings.storage_dir),
        "DATABASE_URL": "",
        "DAGSTER_HOME": str(tmp_path / "dagster"),
    }
    listed = json.loads(
        CliRunner().invoke(cli, ["gallery", "list", "--domain", "alpha", "--json"], env=env).stdout
    )
    assert [(v["version"], v["is_prod"]) for v in listed] == [(1, True)]
    nothing = CliRunner().invoke(cli, ["gallery", "rollback", "--domain", "alpha"], env=env)
    assert nothing.exit_code == 1 and "no earlier published gallery" in nothing.output


def test_recognize_embeds_queries_as_the_gallery_was_built(settings, tmp_path, photos, composed):
    """A gallery built with a non-default min_confidence (run config in the UI) is served by
    `facerec recognize`, which used to fail with "does not match"."""
    folder = build_folder(
        tmp_path / "gamma",
        {
            "barack_obama": [photos / "obama.jpg", photos / "obama2.jpg"],
            "eileen_collins": [composed["astronaut.png"]],
        },
    )
    add_folder_domain(settings, "gamma", folder, model="dlib")
    resources = {
        **build_resources(settings),
        "face_engine": FaceEngineResource(models_dir=str(settings.models_dir), min_confidence=0.6),
    }
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(domain_partitions.name, ["gamma"])
        dg.materialize(
            [*ASSETS, *ASSET_CHECKS], partition_key="gamma", instance=instance, resources=resources
        )
    gallery = load_prod_gallery(settings, "gamma")
    assert stored_engine_config(gallery).coarse_min_score == 0.6
    assert gallery.model_config != EngineConfig().model_key
    env = {
        "FACEREC_STORAGE_DIR": str(settings.storage_dir),
        "DATABASE_URL": "",
        "DAGSTER_HOME": str(tmp_path / "dagster"),
    }
    answer = CliRunner().invoke(
        cli, ["recognize", "--domain", "gamma", "--json", str(photos / "obama3.jpg")], env=env
    )
    assert answer.exit_code == 0, answer.output
    (face,) = json.loads(answer.stdout)[0]["faces"]
    assert face["identity"]["normalized_name"] == "barack_obama"
