import json

import pytest

from facerec_pipeline.app.stages.candidates import assign_normalized_names
from facerec_pipeline.core.names import (
    display_name_from_folder,
    normalize_name,
    unique_normalized_name,
)
from facerec_pipeline.sources.folder import FolderSourceError, scan_folder


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Novak Đoković", "novak_djokovic"),
        ("Новак Ђоковић", "novak_djokovic"),
        ("  Ana   Ivanović ", "ana_ivanovic"),
        ("Zoë Saldaña-Perez", "zoe_saldana_perez"),
        ("!!!", "unnamed"),
        ("Γιάννης Αντετοκούνμπο", "giannis_antetokounmpo"),
        ("ΓΙΆΝΝΗΣ ΑΝΤΕΤΟΚΟΎΝΜΠΟ", "giannis_antetokounmpo"),
        ("Михаил Горбачёв", "mikhail_gorbachev"),
        ("Пётр Ильич Чайковский", "petr_ilich_chaykovskiy"),
        ("Димитър Бербатов", "dimitar_berbatov"),
        ("Жељко Обрадовић", "zeljko_obradovic"),
        ("Željko Obradović", "zeljko_obradovic"),
        ("René Müller-Søgaard Gößmann", "rene_muller_sogaard_gossmann"),
        ("Sinéad O’Connor", "sinead_o_connor"),
        ("😀🎉", "unnamed"),
        ("Ana 😀", "ana"),
    ],
)
def test_normalize_name(name, expected):
    assert normalize_name(name) == expected


def test_people_keep_their_name_as_written_beside_the_transliterated_one(tmp_path):
    (tmp_path / "giannis").mkdir()
    (tmp_path / "name_mapping.json").write_text(
        json.dumps({"giannis": "Γιάννης Αντετοκούνμπο"}), encoding="utf-8"
    )
    found = scan_folder(tmp_path)[0]
    people = [{"person_key": found.person_key, "full_name": found.full_name}]
    named = assign_normalized_names(people, {}, set())[0]
    assert named["full_name"] == "Γιάννης Αντετοκούνμπο"
    assert named["normalized_name"] == "giannis_antetokounmpo"


def test_display_names_and_uniqueness():
    assert display_name_from_folder("novak_djokovic") == "Novak Djokovic"
    assert display_name_from_folder("Ana Ivanović") == "Ana Ivanović"
    assert display_name_from_folder("Jean-Claude_Juncker") == "Jean-Claude Juncker"
    assert display_name_from_folder("jean-claude_juncker") == "Jean-Claude Juncker"
    assert display_name_from_folder("Carrie-Anne_Moss") == "Carrie-Anne Moss"
    assert display_name_from_folder("Kim_Dae-jung") == "Kim Dae-jung"
    assert display_name_from_folder("Sinead_O'Connor") == "Sinead O'Connor"
    assert display_name_from_folder("  ") == "(unnamed folder '  ')"
    assert unique_normalized_name("john_smith", set(), "Q1") == "john_smith"
    assert unique_normalized_name("john_smith", {"john_smith"}, "Q2") == "john_smith_q2"
    assert unique_normalized_name("john_smith", {"john_smith"}, None) == "john_smith_2"


def test_two_people_with_one_name_get_distinct_normalized_names():
    people = [
        {"person_key": "folder:john_smith_actor", "full_name": "John Smith", "wikidata_id": "Q7"},
        {"person_key": "folder:john_smith_singer", "full_name": "John Smith", "wikidata_id": None},
        {"person_key": "folder:known", "full_name": "Renamed Person", "wikidata_id": None},
    ]
    named = assign_normalized_names(people, {"folder:known": "kept_name"}, {"kept_name"})
    assert [p["normalized_name"] for p in named] == ["john_smith", "john_smith_2", "kept_name"]


def test_scan_folder_reads_mapping_and_skips_non_photos(tmp_path):
    (tmp_path / "novak_djokovic").mkdir()
    (tmp_path / "novak_djokovic" / "a.jpg").write_bytes(b"x")
    (tmp_path / "novak_djokovic" / "B.PNG").write_bytes(b"x")
    (tmp_path / "novak_djokovic" / "notes.txt").write_text("not a photo")
    (tmp_path / "novak_djokovic" / ".hidden.jpg").write_bytes(b"x")
    (tmp_path / "ana_ivanovic").mkdir()
    (tmp_path / ".git").mkdir()
    (tmp_path / "name_mapping.json").write_text(
        json.dumps({"novak_djokovic": {"full_name": "Novak Đoković", "wikidata_id": "Q5812"}})
    )
    people = scan_folder(tmp_path)
    assert [p.folder for p in people] == ["ana_ivanovic", "novak_djokovic"]
    novak = people[1]
    assert (novak.full_name, novak.wikidata_id, novak.person_key) == (
        "Novak Đoković",
        "Q5812",
        "folder:novak_djokovic",
    )
    assert [p.name for p in novak.photos] == ["B.PNG", "a.jpg"]
    assert people[0].full_name == "Ana Ivanovic" and people[0].photos == ()


def test_bad_mapping_and_missing_folder(tmp_path):
    with pytest.raises(FolderSourceError, match="does not exist"):
        scan_folder(tmp_path / "missing")
    (tmp_path / "name_mapping.json").write_text("{not json")
    with pytest.raises(FolderSourceError, match="not valid JSON"):
        scan_folder(tmp_path)
    (tmp_path / "name_mapping.json").write_text(json.dumps({"a": 5}))
    with pytest.raises(FolderSourceError, match="must be a name"):
        scan_folder(tmp_path)
