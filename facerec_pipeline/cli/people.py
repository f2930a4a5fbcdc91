"""`facerec people erase`: remove a person from a domain everywhere (app/erasure.py), then
publish a version built without them and drop what Dagster's run history holds of them."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

import click

from facerec_pipeline.cli.common import (
    settings_ready,
    user_errors,
)
from facerec_pipeline.db.engine import session_scope, sqlite_path
from facerec_pipeline.settings import Settings


@click.group()
def people() -> None:
    """The people of a domain: erase one."""


def _vacuum_all(settings: Settings, home: Path) -> None:
    from facerec_pipeline.app.erasure_files import vacuum_sqlite

    database_file = sqlite_path(settings.database_url)
    if database_file is not None:
        vacuum_sqlite(database_file)
    for file in sorted(home.rglob("*.db")):
        vacuum_sqlite(file)


@people.command("erase")
@click.option("--domain", "code", required=True)
@click.argument("person")
@click.option("--yes", is_flag=True, help="Erase without asking.")
@click.option("--by", "operator", default=None, help="Who erases (default: the login name).")
@user_errors
def erase(code: str, person: str, yes: bool, operator: str | None) -> None:
    """Erase PERSON (normalized name or person key) from a domain: rows, photos, crops, gallery
    batch rows, reports, Dagster run records; exclude them from later source refreshes; keep an
    audit row without their data; publish a version built without them."""
    from facerec_pipeline.app.domains import get_domain
    from facerec_pipeline.app.erasure import (
        erase_person,
        find_person,
        plan,
        rebuild_outcome,
        record_outcome,
    )
    from facerec_pipeline.defs.instance import dagster_instance, register_partition
    from facerec_pipeline.defs.launch import run_domain
    from facerec_pipeline.defs.runs.erasure import scrub_dagster_runs
    from facerec_pipeline.defs.runs.recovery import refuse_concurrent_run

    settings = settings_ready()
    operator = operator or getpass.getuser()
    with session_scope(settings.database_url) as session:
        found = find_person(session, code, person)
        shown = found.normalized_name
        counts = plan(session, found)
        active = get_domain(session, code).is_active
    held = counts.pop("gallery_versions_holding_them")
    click.echo(
        f"erasing {shown!r} from {code!r}: {counts['images']} photos, {counts['faces']} faces "
        f"({counts['accepted_faces']} accepted), {counts['source_skips']} skips, in gallery "
        f"versions {', '.join(f'v{v}' for v in held) or 'none'}; their crops, photos and the "
        "reports of those versions are deleted, and the source will not bring them back"
    )
    if not yes:
        click.confirm("erase them?", abort=True)
    instance = dagster_instance(settings)
    refuse_concurrent_run(instance, code)
    with session_scope(settings.database_url) as session:
        result = erase_person(session, settings, code, find_person(session, code, person), operator)
    click.echo(
        "erased: " + ", ".join(f"{key} {value}" for key, value in result.counts.items() if value)
    )
    version, outcome = None, "domain inactive: no version rebuilt"
    failed = False
    try:
        if active:
            register_partition(settings, code)
            run = run_domain(settings, code, instance=instance, echo=click.echo)
            with session_scope(settings.database_url) as session:
                version, outcome = rebuild_outcome(session, code, run.run_id)
            if not run.success:
                failed = True
                outcome = f"run {run.run_id} failed: " + "; ".join(run.failures)
    except BaseException as error:  # the rows are gone already: Dagster's records still go
        failed, outcome = True, f"the rebuild did not finish: {type(error).__name__}: {error}"
        raise
    finally:
        runs_deleted = scrub_dagster_runs(
            instance,
            code,
            result.needles,
            lambda line: click.echo(line, err=True),
            settings.step_outputs_dir,
        )
        with session_scope(settings.database_url) as session:
            record_outcome(
                session,
                result.erasure_id,
                version,
                outcome[:2000],
                dagster_runs_deleted=runs_deleted,
            )
        _vacuum_all(settings, Path(instance.root_directory))
        click.echo(f"dagster runs that named them deleted: {runs_deleted}")
    if failed:
        click.echo(
            f"{shown!r} is erased from every stored version (v{version} serves without them), "
            f"but the rebuilt version was not published: {outcome}",
            err=True,
        )
        sys.exit(1)
    click.echo(f"erasure {result.erasure_id} of domain {code!r} done: {outcome}")
