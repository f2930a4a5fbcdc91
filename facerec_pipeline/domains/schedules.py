"""One refresh schedule per domain, on the domain's own cron, built from the registry when the
code location loads (reload it in the UI after adding a domain). A deactivated domain's schedule
skips its ticks."""

import logging
from pathlib import Path

import dagster as dg
from dagster._utils.schedules import is_valid_cron_string
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from facerec_pipeline.db.engine import get_engine, session_scope
from facerec_pipeline.domains.registry import get_domain, list_domains
from facerec_pipeline.jobs import domain_pipeline_job
from facerec_pipeline.resources import FacerecStorage
from facerec_pipeline.settings import Settings

log = logging.getLogger(__name__)


def registered_domains(settings: Settings) -> list[tuple[str, str]]:
    """(code, cron) of every domain, without creating a database that does not exist yet."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").exists():
        return []
    if not inspect(get_engine(settings.database_url)).has_table("domains"):
        return []
    with session_scope(settings.database_url) as session:
        return [(domain.code, domain.refresh_cron) for domain in list_domains(session)]


def refresh_schedule(code: str, cron: str) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=f"refresh_{code}",
        cron_schedule=cron,
        job=domain_pipeline_job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Refreshes domain {code!r}: candidates and everything downstream.",
    )
    def _refresh(context: dg.ScheduleEvaluationContext, facerec: FacerecStorage):
        with facerec.session() as session:
            if not get_domain(session, code).is_active:
                return dg.SkipReason(f"domain {code!r} is inactive")
        return dg.RunRequest(partition_key=code, tags={"facerec/trigger": "schedule"})

    return _refresh


def refresh_schedules(settings: Settings) -> list[dg.ScheduleDefinition]:
    schedules = []
    for code, cron in registered_domains(settings):
        if is_valid_cron_string(cron):
            schedules.append(refresh_schedule(code, cron))
        else:
            log.warning("domain %s has an invalid refresh cron %r: no schedule", code, cron)
    return schedules
