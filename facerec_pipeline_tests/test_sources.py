"""The sources behind their interfaces: typed source references (one reader, clear refusals),
the one place a domain's source is chosen, and a folder source asked as the assets ask it."""

import pytest

from facerec_pipeline.app.domains import DomainSpec, add_domain, get_domain
from facerec_pipeline.core.artifacts.store import ArtifactStore
from facerec_pipeline.core.images.photo_store import photo_path
from facerec_pipeline.db.engine import session_scope
from facerec_pipeline.db.source_refs import (
    CommonsRef,
    FolderRef,
    SourceRefError,
    SourceRefType,
    dump_source_ref,
    parse_source_ref,
)
from facerec_pipeline.defs.assembly import build_resources
from facerec_pipeline.sources.folder import FolderSource
from facerec_pipeline.sources.interfaces import PersonPhotos, PhotoRequest, SourceError
from facerec_pipeline.sources.wikimedia import WikimediaSource
from facerec_pipeline_tests.conftest import add_folder_domain, build_folder


@pytest.mark.parametrize(
    "ref",
    [
        FolderRef("ana_ivanovic"),
        FolderRef("Đoković"),
        CommonsRef(("A b.jpg", "Ć.png")),
        CommonsRef(),
    ],
)
def test_a_reference_reads_back_as_written(ref):
    assert parse_source_ref(dump_source_ref(ref)) == ref


@pytest.mark.parametrize(
    ("stored", "why"),
    [
        ("ana_ivanovic", "not JSON"),  # the untyped folder form of before 0007
        ('["A.jpg"]', "not a JSON object"),  # the untyped Commons form of before 0007
        ('{"kind": "serp"}', "unknown kind 'serp'"),
        ('{"folder": "ana"}', "unknown kind None"),
        ('{"kind": "folder", "folder": "ana", "files": []}', "exactly the keys"),
        ('{"kind": "folder", "folder": "../etc"}', "not a folder name"),
        ('{"kind": "folder", "folder": ""}', "not a folder name"),
        ('{"kind": "commons", "files": "A.jpg"}', "`files` is not a list"),
        ('{"kind": "commons", "files": ["A.jpg", 3]}', "not a tuple of file names"),
    ],
)
def test_a_malformed_reference_is_refused_with_the_value_and_the_forms(stored, why):
    with pytest.raises(SourceRefError) as refused:
        parse_source_ref(stored)
    message = str(refused.value)
    assert repr(stored) in message and why in message and '{"kind": "folder"' in message


def test_the_column_stores_only_references():
    column = SourceRefType()
    assert column.process_bind_param(None, None) is None
    with pytest.raises(TypeError, match="not a source reference"):
        column.process_bind_param("ana_ivanovic", None)
    with pytest.raises(SourceRefError):
        CommonsRef(["A.jpg"])  # a list is not the tuple a frozen reference holds


def test_each_domain_gets_its_source_from_one_place(settings, tmp_path):
    add_folder_domain(settings, "photos", tmp_path)
    with session_scope(settings.database_url) as session:
        add_domain(
            session, DomainSpec("serbia", "Serbia", countries=["Q403"], occupations=["Q33999"])
        )
    sources = build_resources(settings)["sources"]
    with session_scope(settings.database_url) as session:
        folder = sources.for_domain(get_domain(session, "photos"), settings)
        wikimedia = sources.for_domain(get_domain(session, "serbia"), settings)
        odd = get_domain(session, "serbia")
        odd.source = "ftp"
        with pytest.raises(SourceError, match="unknown source 'ftp'") as unknown:
            sources.for_domain(odd, settings)
        session.rollback()
    assert isinstance(folder, FolderSource) and isinstance(wikimedia, WikimediaSource)
    assert unknown.value.retryable is False
    assert (folder.refetches_below_target, wikimedia.refetches_below_target) == (False, True)
    assert wikimedia.offered_photos() is None  # the web is not polled by the retraining sensor
    assert folder.photos_dir == wikimedia.photos_dir.parent / "photos"


def test_the_folder_source_answers_the_interface(settings, tmp_path, photos):
    root = build_folder(
        tmp_path / "photos", {"ana": [photos / "obama.jpg"], "bob": [photos / "biden.jpg"]}
    )
    (root / "stray.jpg").write_bytes(b"x")
    add_folder_domain(settings, "photos", root)
    store = ArtifactStore(settings)
    source = FolderSource(
        root, settings.training_dir("photos"), settings.relative, tmp_path / "scan.json", store
    )
    found = source.people([])
    assert [(p.person_key, p.ref) for p in found.people] == [
        ("folder:ana", FolderRef("ana")),
        ("folder:bob", FolderRef("bob")),
    ]
    people = [PersonPhotos(1, "Ana", FolderRef("ana")), PersonPhotos(2, "Bob", FolderRef("bob"))]
    result = source.photos(PhotoRequest("photos", people))
    for row in result.rows:  # every photo at its photo_path, the one layout
        expected = photo_path(settings.training_dir("photos"), row["sha256"], ".jpg")
        assert settings.absolute(row["file_path"]) == expected and expected.exists()
    assert [(p, s.reason) for p, s in result.skips] == [(None, "not_in_a_person_folder")]
    assert source.offered_photos() == {
        "folder:ana/obama.jpg": "folder:ana",
        "folder:bob/biden.jpg": "folder:bob",
    }
    wrong = [PersonPhotos(3, "Cid", CommonsRef(("C.jpg",)))]
    with pytest.raises(SourceError, match="commons reference, not a folder one"):
        source.photos(PhotoRequest("photos", wrong))
    missing = FolderSource(tmp_path / "gone", tmp_path, str, tmp_path / "scan.json", store)
    with pytest.raises(SourceError, match="does not exist") as refused:
        missing.people([])
    assert refused.value.retryable is False and missing.offered_photos() is None
