"""Client tokens for `facerec serve`: issued once, stored as a hash, revocable, one domain each."""

import json
from pathlib import Path

from facerec_pipeline.app.clients import authenticate, token_digest
from facerec_pipeline.db.engine import session_scope
from facerec_pipeline_tests.conftest import build_folder


def test_a_token_is_shown_once_stored_as_a_hash_and_revocable(facerec, tmp_path, photos):
    folder = build_folder(tmp_path / "folder", {"barack_obama": [photos / "obama.jpg"]})
    added = facerec("domains", "add", "serbia", "--name", "Serbia", "--source", "folder")
    assert added.exit_code != 0  # a folder domain needs its --path
    assert (
        facerec(
            "domains", "add", "serbia", "--name", "Serbia", "--source", "folder", "--path", folder
        ).exit_code
        == 0
    )
    issued = facerec("clients", "add", "serbian-news", "--domain", "serbia")
    assert issued.exit_code == 0, issued.output
    token = issued.output.strip().splitlines()[-1]
    assert token.startswith("frc_") and len(token) > 40

    database = Path(facerec.env["FACEREC_STORAGE_DIR"]) / "facerec.db"
    url = f"sqlite:///{database}"
    stored = b"".join(p.read_bytes() for p in database.parent.glob("facerec.db*"))
    assert token.encode() not in stored and token_digest(token).encode() in stored
    with session_scope(url) as session:
        client = authenticate(session, token)
        assert (client.name, client.domain) == ("serbian-news", "serbia")
        assert authenticate(session, token + "x") is None

    (listed,) = json.loads(facerec("clients", "list", "--json").stdout)
    assert listed["name"] == "serbian-news" and listed["active"] is True
    assert token not in facerec("clients", "list").output

    again = facerec("clients", "add", "serbian-news", "--domain", "serbia")
    assert again.exit_code == 1 and "exists" in again.output
    unknown = facerec("clients", "add", "greek-news", "--domain", "greece")
    assert unknown.exit_code == 1 and "unknown domain 'greece'" in unknown.output
    bad_name = facerec("clients", "add", "no spaces", "--domain", "serbia")
    assert bad_name.exit_code == 1 and "client name" in bad_name.output

    revoked = facerec("clients", "revoke", "serbian-news")
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    with session_scope(url) as session:
        assert authenticate(session, token) is None
    (listed,) = json.loads(facerec("clients", "list", "--json").stdout)
    assert listed["active"] is False
    nobody = facerec("clients", "revoke", "nobody")
    assert nobody.exit_code == 1 and "no client named 'nobody'" in nobody.output
