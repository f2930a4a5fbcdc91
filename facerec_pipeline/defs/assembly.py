"""The one place that assembles the project's Dagster definitions from the modules of defs/."""

import dagster as dg

from facerec_pipeline.defs.backups.jobs import database_backup_job, database_backup_schedule
from facerec_pipeline.defs.batched_stages import STEP_OUTPUTS
from facerec_pipeline.defs.candidates.assets import candidates
from facerec_pipeline.defs.detected_faces.assets import detected_faces
from facerec_pipeline.defs.domains.refresh import domain_refresh_sensor
from facerec_pipeline.defs.domains.sensors import domain_registry_sensor
from facerec_pipeline.defs.executors import executor_of
from facerec_pipeline.defs.face_embeddings.assets import face_embeddings
from facerec_pipeline.defs.gallery.assets import (
    gallery,
    gallery_promotion_checks,
    production_gallery,
)
from facerec_pipeline.defs.gallery.sensors import retraining_sensor
from facerec_pipeline.defs.jobs import domain_pipeline_job
from facerec_pipeline.defs.lineage.io_manager import StageTableIOManager
from facerec_pipeline.defs.previews.assets import previews
from facerec_pipeline.defs.raw_images.assets import raw_images
from facerec_pipeline.defs.resources import FacerecStorage, SourcesResource, face_engine_resource
from facerec_pipeline.defs.runs.sensors import dead_run_recovery, run_history_sensor
from facerec_pipeline.defs.storage_audit.jobs import artifacts_verify_job, artifacts_verify_schedule
from facerec_pipeline.settings import Settings

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
        "sources": SourcesResource.from_settings(settings.web),
        STEP_OUTPUTS: dg.FilesystemIOManager(base_dir=str(settings.step_outputs_dir)),
    }


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """Everything Dagster loads. The database is not touched here: domains, their crons and
    partitions are read by sensors at each tick. The jobs' executor is the settings' one
    (FACEREC_EXECUTOR): it places the steps of every run, the UI's, sensors' and schedules'."""
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
        executor=executor_of(settings),
    )
