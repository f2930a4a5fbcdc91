"""A Wikidata-sourced domain built end to end by the real pipeline against a local HTTP server
that answers like WDQS, the Commons API and the upload host (recorded shapes), faults included."""

import json
from collections import Counter
from dataclasses import replace

import dagster as dg
import pytest
from sqlalchemy import text
from werkzeug import Response

from facerec_pipeline.app.domains import DomainSpec, add_domain, get_domain
from facerec_pipeline.app.retraining import retrain_request
from facerec_pipeline.app.stats import domain_stats
from facerec_pipeline.core.face_models import SFACE_MODEL
from facerec_pipeline.core.faces.engine import FaceEngine
from facerec_pipeline.core.recognition.recognizer import Recognizer, load_prod_gallery
from facerec_pipeline.db.engine import session_scope
from facerec_pipeline.defs.assembly import build_resources
from facerec_pipeline.settings import WebSettings
from facerec_pipeline_tests.test_pipeline import materialize, query
from facerec_pipeline_tests.wikimedia_fixtures import fixture_json, fixture_text

AGENT = "facerec-e2e/1.0 (https://example.org/contact; ops@example.org)"
UPLOADS = {
    "obama.jpg": "obama.jpg",
    "obama2.jpg": "obama2.jpg",
    "obama_partial.jpg": "obama_partial_face.jpg",
    "obama_partial2.jpg": "obama_partial_face2.jpg",
    "biden.jpg": "biden.jpg",
    "nonfree.jpg": "obama3.jpg",
}


class StandIn:
    """The three services, with a 429 first on WDQS and a maxlag first on Commons."""

    def __init__(self, base: str, photos):
        self.base = base
        self.photos = photos
        self.calls: Counter = Counter()
        self.agents: set[str] = set()
        self.dropped: set[str] = set()

    def sparql(self, request):
        self.calls["sparql"] += 1
        self.agents.add(request.headers.get("User-Agent", ""))
        if self.calls["sparql"] == 1:
            return Response("Too Many Requests", status=429, headers={"Retry-After": "1"})
        if "P279*" in request.args["query"]:
            payload = fixture_json("sparql_subclasses.json")
        else:
            payload = fixture_json("sparql_candidates.json")
            payload["results"]["bindings"] = [
                row
                for row in payload["results"]["bindings"]
                if row["person"]["value"].rsplit("/", 1)[-1] not in self.dropped
            ]
        return Response(json.dumps(payload), content_type="application/sparql-results+json")

    def commons(self, request):
        self.calls["commons"] += 1
        self.agents.add(request.headers.get("User-Agent", ""))
        if self.calls["commons"] == 1:
            return Response(
                fixture_text("commons_maxlag.json"),
                headers={"Retry-After": "1"},
                content_type="application/json; charset=utf-8",
            )
        args = request.args
        if args.get("generator") == "categorymembers":
            page = 2 if "gcmcontinue" in args else 1
            body = fixture_text(f"commons_category_page{page}.json", self.base)
        else:
            wanted = {t.replace("_", " ") for t in args["titles"].split("|")}
            payload = fixture_json("commons_imageinfo.json", self.base)
            payload["query"]["pages"] = [
                p for p in payload["query"]["pages"] if p["title"] in wanted
            ]
            body = json.dumps(payload)
        return Response(body, content_type="application/json; charset=utf-8")

    def upload(self, request):
        self.calls["upload"] += 1
        self.agents.add(request.headers.get("User-Agent", ""))
        name = request.path.rsplit("/", 1)[-1]
        if name in UPLOADS:
            data = (self.photos / UPLOADS[name]).read_bytes()
            return Response(data, content_type="image/jpeg")
        return Response("<html><body>File not found</body></html>", content_type="text/html")


@pytest.fixture
def stand_in(httpserver, photos):
    base = httpserver.url_for("").rstrip("/")
    service = StandIn(base, photos)
    httpserver.expect_request("/sparql").respond_with_handler(service.sparql)
    httpserver.expect_request("/w/api.php").respond_with_handler(service.commons)
    httpserver.expect_request("/upload/thumb/html_trap.jpg").respond_with_handler(service.upload)
    for name in UPLOADS:
        httpserver.expect_request(f"/upload/thumb/{name}").respond_with_handler(service.upload)
    # What FACEREC_WIKIDATA_SPARQL_URL, FACEREC_COMMONS_API_URL and FACEREC_USER_AGENT give.
    service.web = WebSettings.from_env(
        {
            "FACEREC_WIKIDATA_SPARQL_URL": f"{base}/sparql",
            "FACEREC_COMMONS_API_URL": f"{base}/w/api.php",
            "FACEREC_USER_AGENT": AGENT,
        }
    )
    return service


def test_wikidata_domain_builds_a_gallery_and_records_every_skip(
    stand_in, settings, photos, models_dir
):
    settings = replace(settings, web=stand_in.web)
    with session_scope(settings.database_url) as session:
        add_domain(
            session,
            DomainSpec(
                code="presidents",
                display_name="Presidents",
                source="wikidata",
                countries=["Q30"],
                occupations=["Q82955"],
                local_language="sr",
                images_per_person=4,
            ),
        )
    with dg.instance_for_test() as instance:
        result = materialize(settings, instance, "presidents")

        # Etiquette: the configured agent everywhere; the 429 and the maxlag were waited out.
        assert {agent.split(" python-requests/")[0] for agent in stand_in.agents} == {AGENT}
        assert stand_in.calls["sparql"] == 3  # 429, subclasses, candidates

        people = query(settings, "SELECT * FROM people ORDER BY sitelinks DESC")
        assert list(people["wikidata_id"]) == ["Q76", "Q6279", "Q555001", "Q555002", "Q555003"]
        assert people["normalized_name"][1] == "dzo_bajden"  # label from the local language
        assert list(people["sitelinks"][:2]) == [344, 250]

        images = query(settings, "SELECT * FROM images ORDER BY id")
        obama = images[images["person_id"] == people["id"][0]]
        assert sorted(Counter(obama["source"]).items()) == [
            ("wikimedia_category", 2),
            ("wikimedia_p18", 2),
        ]
        first = obama.iloc[0]
        assert (first["license_short_name"], first["page_id"], first["artist"]) == (
            "Public domain",
            10001,
            "Pete Souza",
        )
        assert first["description_url"].endswith("File:Obama_portrait_crop.jpg")
        assert first["source_url"].endswith("/upload/thumb/obama.jpg")
        assert first["restrictions"] == "personality" and first["retrieved_at"] is not None

        skips = query(
            settings,
            "SELECT p.wikidata_id, s.reason, s.item FROM source_skips s "
            "JOIN people p ON p.id = s.person_id",
        )
        recorded = {
            (row.wikidata_id, row.reason, row.item if isinstance(row.item, str) else None)
            for row in skips.itertuples()
        }
        assert recorded == {
            ("Q76", "not_an_image", "File:Obama signature.pdf"),
            ("Q76", "license_not_free", "File:Obama press photo.jpg"),
            ("Q555001", "missing_file", "File:Deleted long ago.jpg"),
            ("Q555001", "no_usable_photos", None),
            ("Q555002", "not_an_image", f"{stand_in.base}/upload/thumb/html_trap.jpg"),
            ("Q555002", "no_usable_photos", None),
            ("Q555003", "no_photos", None),
        }
        with session_scope(settings.database_url) as session:
            stats = domain_stats(session, "presidents")
        assert stats["images_by_source"] == {"wikimedia_category": 2, "wikimedia_p18": 3}
        assert stats["free_image_share"] == 1.0 and stats["people_below_target"] == 4
        assert stats["source_skips_by_reason"]["no_photos"] == 1
        assert stats["serp_cost_by_month"] == {} and stats["duplicate_wikidata_ids"] == []
        with session_scope(settings.database_url) as session:
            domain = get_domain(session, "presidents")
            source = build_resources(settings)["sources"].for_domain(domain, settings)
            wanted = retrain_request(session, domain, "2026-11-23", source)
        assert (wanted.kind, wanted.pending, wanted.run_key) == (
            "redownload",
            4,
            "redownload:presidents:2026-11-23",
        )
        meta = result.asset_materializations_for_node("raw_images")[0].metadata
        assert meta["people_below_target"].value == 4 and meta["serp_calls"].value == 0

        gallery = load_prod_gallery(settings, "presidents")
        rows = range(len(gallery.person_rows))
        assert Counter(gallery.person_at(r)["wikidata_id"] for r in rows) == {"Q76": 4, "Q6279": 1}
        recognizer = Recognizer([gallery], FaceEngine(SFACE_MODEL.engine, models_dir))
        (face,) = recognizer.recognize_image(photos / "obama3.jpg")["faces"]
        assert face["identity"]["wikidata_id"] == "Q76"

        # A second run downloads nothing again and keeps the person who left the query.
        stand_in.dropped = {"Q555003"}
        uploads = stand_in.calls["upload"]
        materialize(settings, instance, "presidents")
        assert stand_in.calls["upload"] == uploads + 1  # only the html trap is asked again
        assert len(query(settings, "SELECT id FROM images")) == len(images)
        kept = query(settings, "SELECT removed_at FROM people WHERE wikidata_id = 'Q555003'")
        assert len(kept) == 1 and kept["removed_at"].isna().all()


def test_a_storage_built_with_the_old_layout_keeps_working(stand_in, settings, photos):
    """Before one layout served every photo, downloads lay flat in training/{domain}/ and a
    person's source_ref was an untyped JSON list. A storage left that way (made here: the
    photos moved back to where the old code put them, the database taken back to 0006, whose
    downgrade writes the old values, then upgraded as every run does) keeps working: the next
    run reads each photo where its row says it is, downloads nothing again, adds no row and
    no second copy, and builds the gallery from those photos."""
    from alembic import command

    from facerec_pipeline.db.engine import get_engine
    from facerec_pipeline.db.migrate import alembic_config
    from facerec_pipeline.defs.candidates.assets import candidates
    from facerec_pipeline.defs.raw_images.assets import raw_images

    settings = replace(settings, web=stand_in.web)
    with session_scope(settings.database_url) as session:
        add_domain(
            session,
            DomainSpec(
                code="presidents",
                display_name="Presidents",
                countries=["Q30"],
                occupations=["Q82955"],
                images_per_person=4,
            ),
        )
    training = settings.training_dir("presidents")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("domain", ["presidents"])
        fetched = dg.materialize(
            [candidates, raw_images],
            partition_key="presidents",
            resources=build_resources(settings),
            instance=instance,
        )
        assert fetched.success
        with session_scope(settings.database_url) as session:
            rows = session.execute(text("SELECT id, file_path FROM images")).all()
            for image_id, file_path in rows:  # where the old code stored downloads
                stored = settings.absolute(file_path)
                assert stored.parent.parent == training  # the new layout: {sha[:2]}/
                stored.replace(training / stored.name)
                flat = settings.relative(training / stored.name)
                session.execute(
                    text("UPDATE images SET file_path = :p WHERE id = :i"),
                    {"p": flat, "i": image_id},
                )
        config = alembic_config(settings.database_url)
        with get_engine(settings.database_url).begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0006")
        old = query(settings, "SELECT source_ref FROM people WHERE wikidata_id = 'Q76'")
        assert json.loads(old["source_ref"][0])[0] == "Obama portrait crop.jpg"  # a bare list
        flat_paths = query(settings, "SELECT id, file_path FROM images ORDER BY id")
        uploads = stand_in.calls["upload"]

        materialize(settings, instance, "presidents")

        assert stand_in.calls["upload"] == uploads + 1  # only the html trap is asked again
        images = query(settings, "SELECT id, file_path, status FROM images ORDER BY id")
        assert images[["id", "file_path"]].equals(flat_paths)  # same rows, same paths
        on_disk = sorted(p.name for p in training.rglob("*") if p.is_file())
        assert on_disk == sorted(p.rsplit("/", 1)[-1] for p in flat_paths["file_path"])
        judged = query(settings, "SELECT DISTINCT image_id FROM faces")
        approved = images[images["status"] == "approved"]
        assert set(judged["image_id"]) == set(approved["id"])  # each read where it lies
        typed = query(settings, "SELECT source_ref FROM people WHERE wikidata_id = 'Q76'")
        assert json.loads(typed["source_ref"][0])["kind"] == "commons"
        gallery = load_prod_gallery(settings, "presidents")
        rows = range(len(gallery.person_rows))
        assert Counter(gallery.person_at(r)["wikidata_id"] for r in rows) == {"Q76": 4, "Q6279": 1}
