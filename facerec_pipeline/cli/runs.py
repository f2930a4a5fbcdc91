"""`facerec run`, `backfill` and `history`: building domains through Dagster, and their runs."""

from __future__ import annotations

import sys

import click

from facerec_pipeline.app.domains import DomainError, get_domain
from facerec_pipeline.cli.common import (
    echo_json,
    read_db,
    settings_ready,
    user_errors,
)
from facerec_pipeline.cli.formatting import backfill_table, history_table
from facerec_pipeline.db.engine import session_scope

EXECUTOR_OPTION = click.option(
    "--executor",
    type=click.Choice(["in_process", "celery"]),
    default=None,
    help="Where the steps execute: this process, or the Celery workers (`facerec worker`). "
    "Default: FACEREC_EXECUTOR, else in_process.",
)


@click.command("run")
@click.option("--domain", "code", required=True)
@EXECUTOR_OPTION
@user_errors
def run(code: str, executor: str | None) -> None:
    """Build one domain end to end through the Dagster instance (the run shows in the UI)."""
    from facerec_pipeline.defs.instance import register_partition
    from facerec_pipeline.defs.launch import run_domain

    settings = settings_ready()
    with session_scope(settings.database_url) as session:
        domain = get_domain(session, code)
        if not domain.is_active:
            raise DomainError(f"domain {code!r} is inactive: `facerec domains activate {code}`")
    register_partition(settings, code)
    outcome = run_domain(settings, code, echo=click.echo, executor=executor)
    if not outcome.success:
        click.echo(f"run {outcome.run_id} FAILED for domain {code!r}", err=True)
        for failure in outcome.failures:
            click.echo(f"  {failure}", err=True)
        sys.exit(1)
    click.echo(f"run {outcome.run_id} succeeded for domain {code!r}")


@click.command("backfill")
@click.option("--domains", "codes", required=True, help="Comma-separated domain codes: a,b")
@EXECUTOR_OPTION
@user_errors
def backfill(codes: str, executor: str | None) -> None:
    """Run several domains one after another and report each one's outcome."""
    from facerec_pipeline.defs.instance import register_partition
    from facerec_pipeline.defs.launch import run_domain

    settings = settings_ready()
    wanted = [code.strip() for code in codes.split(",") if code.strip()]
    with session_scope(settings.database_url) as session:
        for code in wanted:
            get_domain(session, code)
    outcomes = []
    for code in wanted:
        register_partition(settings, code)
        click.echo(f"== {code}")
        outcome = run_domain(settings, code, echo=click.echo, executor=executor)
        outcomes.append(
            [
                code,
                "ok" if outcome.success else "FAILED",
                outcome.run_id,
                "; ".join(outcome.failures)[:120],
            ]
        )
    click.echo(backfill_table(outcomes))
    if any(row[1] != "ok" for row in outcomes):
        sys.exit(1)


@click.command("history")
@click.option("--domain", "code", required=True)
@click.option("--limit", default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@user_errors
def history(code: str, limit: int, as_json: bool) -> None:
    """The domain's recent runs: status, counts per stage, rejections, cost, durations. Runs
    whose process died are marked failed first (their pool slots freed)."""
    from facerec_pipeline.app.run_history import recent_sessions
    from facerec_pipeline.defs.instance import dagster_instance, run_seconds
    from facerec_pipeline.defs.runs.recovery import recover_dead_runs

    settings = settings_ready()
    instance = dagster_instance(settings)
    for line in recover_dead_runs(instance, settings):
        click.echo(f"recovered: {line}", err=True)
    rows = read_db(
        lambda session: get_domain(session, code) and recent_sessions(session, code, limit)
    )
    for row in rows:  # the whole run, as Dagster timed it; stages alone miss its set-up
        row["seconds"] = run_seconds(instance, row["run_id"])
    if as_json:
        echo_json(rows)
        return
    click.echo(history_table(rows, code))
