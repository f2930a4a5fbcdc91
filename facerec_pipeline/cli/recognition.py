"""`facerec recognize` and `evaluate`: the production recognizer on photos, and how the CLI
builds it (`_recognizer`: the search order, the face engine configuration)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from facerec_pipeline.app.domains import list_domains, search_order
from facerec_pipeline.cli.common import echo_json, settings_ready, user_errors
from facerec_pipeline.cli.formatting import evaluation_tables, faces_table
from facerec_pipeline.db.engine import session_scope
from facerec_pipeline.settings import Settings


@click.command("recognize")
@click.option("--domain", "code", required=True)
@click.option("--top-k", default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.argument("images", nargs=-1, required=True, type=click.Path())
@user_errors
def recognize(code: str, top_k: int, as_json: bool, images: tuple[str, ...]) -> None:
    """Name the faces in IMAGES using the domain's production gallery (then inherited ones)."""
    from facerec_pipeline.core.images.image_files import ImageRejected

    settings = settings_ready(create=False)
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
            table = faces_table(result)
            if table:
                click.echo(table)
    if failed:
        sys.exit(1)


@click.command("evaluate")
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
    from facerec_pipeline.app.evaluation import record_evaluation
    from facerec_pipeline.core.evaluation.probe_evaluation import evaluate_probes, photos_in
    from facerec_pipeline.defs.gallery.observations import observe_evaluation

    settings = settings_ready(create=False)
    probes = photos_in(Path(probes_dir))
    unknown = photos_in(Path(unknown_dir)) if unknown_dir else []
    recognizer = _recognizer(settings, code, top_k=5)

    def progress(done: int, total: int) -> None:
        if done % 200 == 0 or done == total:
            click.echo(f"evaluated {done}/{total} photos", err=True)

    figures, _ = evaluate_probes(recognizer, probes, unknown, progress)
    record = record_evaluation(settings, recognizer.galleries[0], figures, probes_dir, unknown_dir)
    observe_evaluation(settings, record)
    figures = record.figures
    if as_json:
        echo_json(figures)
        return
    for table in evaluation_tables(figures):
        click.echo(table)


def _recognizer(settings: Settings, code: str, top_k: int):
    from facerec_pipeline.core.recognition.recognizer import Recognizer

    with session_scope(settings.database_url) as session:
        order = search_order(session, code)
        inactive = [domain.code for domain in list_domains(session) if not domain.is_active]
    for each in (each for each in order if each in inactive):
        click.echo(
            f"note: domain {each!r} is inactive: its gallery is no longer rebuilt and may "
            f"be stale (`facerec domains activate {each}` to build it again)",
            err=True,
        )
    # Queries are embedded as each gallery's faces were (its batches record how), by the model
    # of the gallery they search.
    recognizer = Recognizer.for_domains(settings, order, top_k=top_k)
    for reason in recognizer.skipped:
        click.echo(f"note: an inherited domain is not searched: {reason}", err=True)
    return recognizer
