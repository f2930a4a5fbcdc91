import pytest

from facerec_pipeline.app.domains import (
    DomainError,
    DomainSpec,
    UnknownDomain,
    add_domain,
    get_domain,
    list_domains,
    search_order,
    set_active,
)
from facerec_pipeline.db.engine import session_scope
from facerec_pipeline.settings import InvalidDomainCode, validate_domain_code


@pytest.mark.parametrize("code", ["serbia", "sports_global", "gr", "a1_b2", "x" * 50])
def test_valid_domain_codes(code):
    assert validate_domain_code(code) == code


@pytest.mark.parametrize(
    "code",
    [
        "",
        "s",
        "Serbia",
        "1serbia",
        "_serbia",
        "serbia-north",
        "../etc",
        "a b",
        "x" * 51,
        "serbia'; DROP TABLE domains; --",
        "srbija\n",
    ],
)
def test_invalid_domain_codes(code):
    with pytest.raises(InvalidDomainCode, match="invalid domain code"):
        validate_domain_code(code)


def test_storage_paths_refuse_bad_codes(settings):
    with pytest.raises(InvalidDomainCode):
        settings.training_dir("../../etc")


def test_add_list_show_and_inheritance_order(settings, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    with session_scope(settings.database_url) as session:
        for code in ("world", "balkans", "serbia"):
            inherit = {"serbia": ["balkans", "world"], "balkans": ["world"]}.get(code, [])
            add_domain(
                session, DomainSpec(code, code.title(), "folder", str(folder), inherit_from=inherit)
            )
    with session_scope(settings.database_url) as session:
        assert [d.code for d in list_domains(session)] == ["balkans", "serbia", "world"]
        assert search_order(session, "serbia") == ["serbia", "balkans", "world"]
        assert search_order(session, "world") == ["world"]
        set_active(session, "world", False)
    with session_scope(settings.database_url) as session:
        assert [d.code for d in list_domains(session, active_only=True)] == ["balkans", "serbia"]
        assert get_domain(session, "world").is_active is False


def test_domain_errors_are_clear_and_store_nothing(settings, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    bad_specs = [
        (DomainSpec("serbia", "Serbia", "folder", None), "needs --path"),
        (DomainSpec("serbia", "Serbia", "folder", str(tmp_path / "missing")), "does not exist"),
        (DomainSpec("serbia", "Serbia", "wikidata", countries=["Q403"]), "at least one"),
        (
            DomainSpec("serbia", "Serbia", "wikidata", countries=["403"], occupations=["Q33999"]),
            "not a Wikidata item id",
        ),
        (
            DomainSpec("serbia", "Serbia", "folder", str(folder), inherit_from=["nowhere"]),
            "unknown domain 'nowhere'",
        ),
        (
            DomainSpec("serbia", "Serbia", "folder", str(folder), inherit_from=["serbia"]),
            "cannot inherit from itself",
        ),
        (DomainSpec("Serbia", "Serbia", "folder", str(folder)), "invalid domain code"),
    ]
    for spec, message in bad_specs:
        with pytest.raises((DomainError, InvalidDomainCode), match=message):
            with session_scope(settings.database_url) as session:
                add_domain(session, spec)
    with session_scope(settings.database_url) as session:
        assert list_domains(session) == []
        add_domain(session, DomainSpec("serbia", "Serbia", "folder", str(folder)))
    with pytest.raises(DomainError, match="already exists"):
        with session_scope(settings.database_url) as session:
            add_domain(session, DomainSpec("serbia", "Serbia 2", "folder", str(folder)))
    with session_scope(settings.database_url) as session:
        assert get_domain(session, "serbia").display_name == "Serbia"
        with pytest.raises(UnknownDomain, match="known domains: serbia"):
            get_domain(session, "greece")
