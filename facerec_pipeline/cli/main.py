"""`facerec`: the project's command line. The root group assembles the commands, which live by
group: database.py (db), weights.py (models), domains.py (domains, sample), runs.py (run,
backfill, history), gallery.py (gallery), recognition.py (recognize, evaluate, and how the CLI
builds the recognizer), reports.py (stats, skips), people.py (people erase), clients.py (client
tokens), serving.py (serve); common.py holds what they share and formatting.py every table they
print."""

from __future__ import annotations

import click

from facerec_pipeline.cli.artifacts import artifacts
from facerec_pipeline.cli.clients import clients
from facerec_pipeline.cli.database import db
from facerec_pipeline.cli.domains import domains, sample
from facerec_pipeline.cli.gallery import gallery
from facerec_pipeline.cli.people import people
from facerec_pipeline.cli.recognition import evaluate, recognize
from facerec_pipeline.cli.reports import skips, stats
from facerec_pipeline.cli.runs import backfill, history, run
from facerec_pipeline.cli.serving import serve
from facerec_pipeline.cli.weights import models


@click.group()
def cli() -> None:
    """Build and search per-domain face galleries."""


for command in (
    db,
    models,
    domains,
    run,
    backfill,
    gallery,
    history,
    recognize,
    evaluate,
    stats,
    skips,
    sample,
    clients,
    serve,
    artifacts,
):
    cli.add_command(command)
cli.add_command(people)


if __name__ == "__main__":
    cli()
