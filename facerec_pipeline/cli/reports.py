"""`facerec stats` and `skips`: what each domain holds, and what was left out of it."""

from __future__ import annotations

import click

from facerec_pipeline.app.domains import list_domains
from facerec_pipeline.cli.common import (
    NoDatabase,
    echo_json,
    read_db,
    user_errors,
)
from facerec_pipeline.cli.formatting import skips_table, stats_table
from facerec_pipeline.settings import Settings


@click.command("stats")
@click.option("--domain", "code", default=None)
@click.option("--json", "as_json", is_flag=True)
@user_errors
def stats(code: str | None, as_json: bool) -> None:
    """Counts, rejections by reason and the production gallery, per domain."""
    from facerec_pipeline.app.stats import domain_stats

    # The settings' price only: read_db loads (and announces) the settings for the database.
    cost = Settings.from_env().web.serp_cost_per_call

    def figures_of(session):
        codes = [code] if code is not None else [domain.code for domain in list_domains(session)]
        return [domain_stats(session, each, cost) for each in codes]

    figures = read_db(figures_of, missing=[] if code is None else NoDatabase)
    if as_json:
        echo_json(figures if code is None else figures[0])
        return
    for item in figures:
        click.echo(f"== {item['domain']} ({item['name']})")
        click.echo(stats_table(item))


@click.command("skips")
@click.option("--domain", "code", required=True)
@click.option("--json", "as_json", is_flag=True)
@user_errors
def skips(code: str, as_json: bool) -> None:
    """What was left out of the domain's gallery, and why (source, validation, identity)."""
    from facerec_pipeline.app.stats import domain_skips

    rows = read_db(domain_skips, code)
    if as_json:
        echo_json(rows)
    elif not rows:
        click.echo(f"nothing was skipped in domain {code!r}")
    else:
        click.echo(skips_table(rows))
