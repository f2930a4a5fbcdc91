"""Hand-recorded Wikidata / Commons / SerpApi answers in their real shapes (fixtures/wikimedia)."""

import json
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "wikimedia"


def fixture_text(name: str, base: str = "http://localhost") -> str:
    return (FIXTURES / name).read_text().replace("{BASE}", base)


def fixture_json(name: str, base: str = "http://localhost") -> dict:
    return json.loads(fixture_text(name, base))
