"""Each domain refreshes on its own cron, read from the registry at every tick of one sensor: a new
domain or a changed cron takes effect at the next tick, without reloading the code location, and
loading the code never touches the database. Times are UTC."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg
from croniter import croniter

from facerec_pipeline.app.domains import list_domains, valid_cron
from facerec_pipeline.defs.jobs import domain_pipeline_job
from facerec_pipeline.defs.partitions import domain_partitions
from facerec_pipeline.defs.resources import FacerecStorage

log = logging.getLogger(__name__)


def latest_tick(cron: str, now: datetime) -> datetime:
    """The last time at or before `now` that `cron` names."""
    return croniter(cron, now + timedelta(seconds=1)).get_prev(datetime)


@dataclass(frozen=True)
class DueDomain:
    code: str
    cron: str
    tick: datetime


def due_refreshes(
    domains: list[tuple[str, str, bool]], cursor: dict[str, dict], now: datetime
) -> tuple[list[DueDomain], dict[str, dict]]:
    """(code, cron, active) of every domain and the ticks handled so far -> the domains whose
    latest tick has not been handled, and the new cursor. A domain seen for the first time, or
    whose cron changed, starts from its latest tick without a run (as a new schedule would: its
    first run comes from the registry sensor). Ticks missed while the daemon was down give one
    run, not one per tick. An inactive domain's ticks pass without a run."""
    due, seen = [], {}
    for code, cron, active in domains:
        if not valid_cron(cron):
            log.warning("domain %s has an invalid refresh cron %r: not refreshed", code, cron)
            continue
        tick = latest_tick(cron, now)
        seen[code] = {"cron": cron, "tick": tick.isoformat()}
        handled = cursor.get(code)
        if handled is None or handled.get("cron") != cron:
            continue
        if active and tick > datetime.fromisoformat(handled["tick"]):
            due.append(DueDomain(code, cron, tick))
    return due, seen


@dg.sensor(
    job=domain_pipeline_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Refreshes each active domain (candidates and everything downstream) on the "
    "domain's own `refresh_cron` (UTC), read from the registry at every tick: a new domain or "
    "a changed cron needs no reload.",
)
def domain_refresh_sensor(
    context: dg.SensorEvaluationContext, facerec: FacerecStorage
) -> dg.SensorResult | dg.SkipReason:
    with facerec.session() as session:
        domains = [(d.code, d.refresh_cron, d.is_active) for d in list_domains(session)]
    cursor = json.loads(context.cursor) if context.cursor else {}
    due, seen = due_refreshes(domains, cursor, datetime.now(UTC))
    # A domain just (re)activated may not be a partition yet (domain_registry_sensor adds it
    # within 30 s): its tick waits for the next evaluation.
    registered = set(context.instance.get_dynamic_partitions(domain_partitions.name))
    for waiting in (each for each in due if each.code not in registered):
        seen[waiting.code] = cursor[waiting.code]
    requests = [
        dg.RunRequest(
            partition_key=each.code,
            run_key=f"refresh:{each.code}:{each.tick.isoformat()}",
            tags={"facerec/trigger": "schedule", "facerec/cron": each.cron},
        )
        for each in due
        if each.code in registered
    ]
    if not requests:
        context.update_cursor(json.dumps(seen, sort_keys=True))
        return dg.SkipReason(f"no refresh due among {len(domains)} domains")
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True))
