"""The daily database backup as a Dagster job and schedule."""

import dagster as dg

from facerec_pipeline.app.backups import backup_and_prune
from facerec_pipeline.defs.resources import FacerecStorage


@dg.op(
    description="Online backup (SQLite: backup API; PostgreSQL: pg_dump --format=custom) into "
    "the database's own folder under storage/backups, then retention 7/4/12 among that "
    "database's backups."
)
def backup_database_op(context: dg.OpExecutionContext, facerec: FacerecStorage) -> None:
    settings = facerec.settings
    path, removed = backup_and_prune(settings.database_url, settings.backups_dir)
    context.log.info(f"backup {path}; pruned {len(removed)} old backups of this database")
    context.add_output_metadata({"backup": str(path), "pruned": len(removed)})


@dg.job(description="Back up the facerec database.")
def database_backup_job():
    backup_database_op()


database_backup_schedule = dg.ScheduleDefinition(
    name="database_backup_schedule",
    job=database_backup_job,
    cron_schedule="30 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Backs up the facerec database every day at 02:30 UTC (database_backup_job).",
)
