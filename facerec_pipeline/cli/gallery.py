"""`facerec gallery`: gallery versions, their checks, rollback and pinning."""

from __future__ import annotations

import click

from facerec_pipeline.app.domains import get_domain
from facerec_pipeline.cli.common import echo_json, read_db, settings_ready, user_errors
from facerec_pipeline.cli.formatting import versions_table
from facerec_pipeline.db.engine import session_scope


@click.group()
def gallery() -> None:
    """Gallery versions: list, roll back."""


@gallery.command("list")
@click.option("--domain", "code", required=True)
@click.option("--json", "as_json", is_flag=True)
@user_errors
def gallery_list(code: str, as_json: bool) -> None:
    """Every version of the domain's gallery, its checks and which one serves."""
    from facerec_pipeline.app.promotion import list_versions

    versions = read_db(list_versions, code)
    if as_json:
        echo_json(versions)
        return
    click.echo(versions_table(versions, code))


@gallery.command("rollback")
@click.option("--domain", "code", required=True)
@click.option("--to", "version", type=int, default=None, help="Default: the previous version.")
@user_errors
def gallery_rollback(code: str, version: int | None) -> None:
    """Serve an earlier published version of the domain's gallery and pin it: runs keep it
    serving until `facerec gallery unpin` or a version built from new content passes its checks."""
    from facerec_pipeline.app.promotion import rollback

    settings = settings_ready()
    with session_scope(settings.database_url) as session:
        target = rollback(session, settings, code, version)
    click.echo(
        f"domain {code!r} now serves gallery v{target.version}, pinned: later runs keep "
        f"it until `facerec gallery unpin --domain {code}` or new content"
    )


@gallery.command("unpin")
@click.option("--domain", "code", required=True)
@user_errors
def gallery_unpin(code: str) -> None:
    """Let the newest version that passes its checks serve again after a rollback (at the next
    run, or now with `facerec gallery recheck`)."""
    from facerec_pipeline.app.promotion import unpin

    settings = settings_ready()
    with session_scope(settings.database_url) as session:
        pinned = unpin(session, code)
    click.echo(
        f"domain {code!r}: "
        + (
            f"v{pinned} is no longer pinned; the next run (or "
            f"`facerec gallery recheck --domain {code}`) serves the newest version that "
            "passes its checks"
            if pinned
            else "no version was pinned"
        )
    )


@gallery.command("recheck")
@click.option("--domain", "code", required=True)
@user_errors
def gallery_recheck(code: str) -> None:
    """Run the promotion checks of the newest version again with the domain's current settings;
    publish it if they all pass now."""
    from facerec_pipeline.app.promotion import (
        failed_checks_message,
        publish_passed,
        run_checks,
    )

    settings = settings_ready()
    with session_scope(settings.database_url) as session:
        version, outcomes = run_checks(session, settings, code)
        for name, (passed, _) in outcomes.items():
            click.echo(f"  check {name}: {'passed' if passed else 'FAILED'}")
        if not all(passed for passed, _ in outcomes.values()):
            serving = (
                " It still serves (`facerec gallery rollback` to stop)." if version.is_prod else ""
            )
            raise click.ClickException(
                f"gallery v{version.version} of {code!r} fails its checks: "
                f"{failed_checks_message(version)}.{serving}"
            )
        done = publish_passed(session, settings, version)
        for change in done.pointer_changes:
            click.echo(f"production pointer {change}")
        if done.pinned:
            click.echo(
                f"gallery v{version.version} of {code!r} passed every check but does not "
                f"serve: {done.pinned}"
            )
            return
        click.echo(f"gallery v{version.version} of {code!r} passed every check and serves")
        wanted = get_domain(session, code).target_far
        calibrated_for = (version.operating_point or {}).get("target_far")
        if calibrated_for != wanted:
            click.echo(
                f"note: v{version.version} is calibrated for a target FAR of "
                f"{calibrated_for}, the domain now asks for {wanted}: "
                f"`facerec run --domain {code}` builds a version for it"
            )
