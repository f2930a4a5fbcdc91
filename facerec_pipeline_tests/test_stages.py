"""The stages' application functions (app/stages/) called directly, with no Dagster: a real
SQLite file, real photos and the real SFace engine, the stage tables stored and read back as the
IO manager does. And the thin assets through Dagster's own test entry points: an asset called
with `build_asset_context`, and `materialize` of the first two stages."""

import os
import socket
from collections import Counter

import dagster as dg
import pytest

from facerec_pipeline.app.domain_sources import source_of
from facerec_pipeline.app.stage_tables import STAGE_TABLES, load_stage_output, write_stage_output
from facerec_pipeline.app.stages.candidates import build_candidates
from facerec_pipeline.app.stages.detected_faces import build_detected_faces
from facerec_pipeline.app.stages.face_embeddings import build_face_embeddings
from facerec_pipeline.app.stages.gallery import build_gallery
from facerec_pipeline.app.stages.previews import build_previews
from facerec_pipeline.app.stages.production_gallery import build_production_gallery
from facerec_pipeline.app.stages.raw_images import build_raw_images
from facerec_pipeline.app.stages.stage_run import (
    Markdown,
    RunEngines,
    StageFailed,
    StageRun,
)
from facerec_pipeline.core.face_models import SFACE_MODEL
from facerec_pipeline.core.recognition.recognizer import load_prod_gallery
from facerec_pipeline.db.engine import session_scope
from facerec_pipeline.defs.assembly import build_resources
from facerec_pipeline.defs.candidates.assets import candidates as candidates_asset
from facerec_pipeline.defs.partitions import domain_partitions
from facerec_pipeline.defs.raw_images.assets import raw_images as raw_images_asset
from facerec_pipeline.settings import WebSettings
from facerec_pipeline.sources.web import WebSources, web_config
from facerec_pipeline_tests.conftest import add_folder_domain, build_folder


class Lines:
    """A stage's log, kept."""

    def __init__(self):
        self.lines: list[tuple[str, str]] = []

    def info(self, message: str) -> None:
        self.lines.append(("info", message))

    def warning(self, message: str) -> None:
        self.lines.append(("warning", message))


def stored(run: StageRun, stage: str, result) -> object:
    """What the IO manager does with a stage table: write it, and the next stage reads it."""
    with session_scope(run.settings.database_url) as session:
        write_stage_output(session, STAGE_TABLES[stage], result.table, run.domain)
    with session_scope(run.settings.database_url) as session:
        return load_stage_output(session, STAGE_TABLES[stage], run.domain)


class WebDomainSources:
    """The domains' sources on the default web settings, with no Dagster (what the pipeline's
    SourcesResource gives the stages)."""

    web = WebSources(**web_config(WebSettings()))
    serp_cost_per_call = web.serp_cost_per_call

    def for_domain(self, domain, settings):
        return source_of(domain, settings, self.web)


@pytest.fixture
def sources() -> WebDomainSources:
    return WebDomainSources()


@pytest.fixture
def demo(settings, photos, tmp_path):
    folder = build_folder(
        tmp_path / "photos",
        {
            "barack_obama": [photos / n for n in ("obama.jpg", "obama2.jpg", "obama3.jpg")],
            "joe_biden": [photos / "biden.jpg"],
        },
    )
    add_folder_domain(settings, "demo", folder)
    return StageRun(settings, "demo", "run-1", Lines())


def test_the_stages_build_and_publish_a_gallery_without_dagster(demo, sources, models_dir):
    run = demo
    people = build_candidates(run, sources)
    assert sorted(people.table["person_key"]) == ["folder:barack_obama", "folder:joe_biden"]
    assert people.figures == {"people": 2, "new_people": 2, "source": "folder"}
    candidates = stored(run, "candidates", people)

    photos = build_raw_images(run, sources, candidates)
    assert photos.figures["photos"] == 4 and photos.figures["people_without_photos"] == 0
    raw_images = stored(run, "raw_images", photos)

    with RunEngines(run.settings.models_dir, workers=1) as engines:
        judged = build_detected_faces(run, SFACE_MODEL, engines, raw_images, candidates)
        assert Counter(judged.table["status"]) == {"accepted": 4}
        assert judged.figures["judged_this_run"] == 4
        faces = stored(run, "detected_faces", judged)

        made = build_previews(run, SFACE_MODEL, engines, raw_images, faces)
        assert made.table is None  # a stage without a table of its own
        assert made.figures["made_this_run"] == 8  # every photo and its face

        embedded = build_face_embeddings(run, SFACE_MODEL, engines, faces)
        assert embedded.figures["embedded_this_run"] == 4
        embeddings = stored(run, "face_embeddings", embedded)

    built = build_gallery(run, SFACE_MODEL, candidates, raw_images, faces, embeddings)
    assert built.figures["gallery_version"] == "demo v1" and built.figures["built_this_run"]
    assert (built.figures["people"], built.figures["faces"]) == (2, 4)
    assert isinstance(built.figures["report"], Markdown)
    assert set(built.table["identity_status"]) == {"accepted"}

    # The version is a candidate until its checks pass: production refuses it, saying why.
    with pytest.raises(StageFailed, match="is not promoted") as refused:
        build_production_gallery(run)
    assert not refused.value.retryable
    from facerec_pipeline.app.promotion import run_checks

    with session_scope(run.settings.database_url) as session:
        _, outcomes = run_checks(session, run.settings, "demo")
    assert all(passed for passed, _ in outcomes.values()), outcomes
    served = build_production_gallery(run)
    assert served.figures["published_this_run"] is True
    assert load_prod_gallery(run.settings, "demo").version == 1
    assert ("info", "production_gallery[demo]: v1 published") in run.log.lines

    # The same faces again: nothing is built.
    again = build_gallery(run, SFACE_MODEL, candidates, raw_images, faces, embeddings)
    assert again.figures["built_this_run"] is False


def test_a_stage_without_faces_fails_with_the_fix(demo, sources):
    run = demo
    candidates = stored(run, "candidates", build_candidates(run, sources))
    raw_images = stored(run, "raw_images", build_raw_images(run, sources, candidates))
    empty = raw_images.iloc[0:0]
    with RunEngines(run.settings.models_dir, workers=1) as engines:
        faces = stored(
            run,
            "detected_faces",
            build_detected_faces(run, SFACE_MODEL, engines, empty, candidates),
        )
        embeddings = stored(
            run, "face_embeddings", build_face_embeddings(run, SFACE_MODEL, engines, faces)
        )
    with pytest.raises(StageFailed, match="no accepted face.*facerec skips --domain demo"):
        build_gallery(run, SFACE_MODEL, candidates, empty, faces, embeddings)


def test_an_asset_called_with_build_asset_context(demo, sources):
    """The candidates asset called as a function: its figures become the output's metadata."""
    resources = build_resources(demo.settings)
    with dg.build_asset_context(partition_key="demo") as context:
        frame = candidates_asset(context, resources["facerec"], resources["sources"])
    assert sorted(frame["person_key"]) == ["folder:barack_obama", "folder:joe_biden"]
    assert context.get_output_metadata("result") == {
        "people": 2,
        "new_people": 2,
        "source": "folder",
        "executed_by": f"{socket.gethostname()} pid {os.getpid()}",  # this process
    }


def test_assets_materialized_with_their_resources(demo, instance):
    instance.add_dynamic_partitions(domain_partitions.name, ["demo"])
    result = dg.materialize(
        [candidates_asset, raw_images_asset],
        partition_key="demo",
        resources=build_resources(demo.settings),
        instance=instance,
    )
    assert result.success
    (photos,) = result.asset_materializations_for_node("raw_images")
    assert photos.metadata["photos"].value == 4
    assert photos.metadata["table"].value == "images"  # stored by the stage-table IO manager
