"""The one place that assembles the project's Dagster definitions."""

import dagster as dg

from facerec_pipeline.backups.jobs import database_backup_job, database_backup_schedule
from facerec_pipeline.candidates.assets import candidates
from facerec_pipeline.detected_faces.assets import detected_faces
from facerec_pipeline.domains.refresh import domain_refresh_sensor
from facerec_pipeline.domains.sensors import domain_registry_sensor
from facerec_pipeline.face_embeddings.assets import face_embeddings
from facerec_pipeline.gallery.assets import gallery, gallery_promotion_checks, production_gallery
from facerec_pipeline.gallery.sensors import retraining_sensor
from facerec_pipeline.jobs import domain_pipeline_job
from facerec_pipeline.lineage.io_manager import StageTableIOManager
from facerec_pipeline.previews.assets import previews
from facerec_pipeline.raw_images.assets import raw_images
from facerec_pipeline.resources import FacerecStorage, SourcesResource, face_engine_resource
from facerec_pipeline.run_history_sensors import dead_run_recovery, run_history_sensor
from facerec_pipeline.settings import Settings
from facerec_pipeline.sources.web import env_config
from facerec_pipeline.storage_audit.jobs import artifacts_verify_job, artifacts_verify_schedule

ASSETS = [
    candidates,
    raw_images,
    detected_faces,
    previews,
    face_embeddings,
    gallery,
    production_gallery,
]
ASSET_CHECKS = [gallery_promotion_checks]


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {
        "facerec": FacerecStorage(
            storage_dir=str(settings.storage_dir), database_url=settings.database_url
        ),
        "face_engine": face_engine_resource(settings),
        "stage_tables": StageTableIOManager(database_url=settings.database_url),
        "sources": SourcesResource.from_env(env_config()),
    }


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """Everything Dagster loads. The database is not touched here: domains, their crons and
    partitions are read by sensors at each tick."""
    settings = settings or Settings.from_env()
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=ASSET_CHECKS,
        jobs=[domain_pipeline_job, database_backup_job, artifacts_verify_job],
        schedules=[database_backup_schedule, artifacts_verify_schedule],
        sensors=[
            domain_registry_sensor,
            domain_refresh_sensor,
            retraining_sensor,
            run_history_sensor,
            dead_run_recovery,
        ],
        resources=build_resources(settings),
    )


defs = build_definitions()
