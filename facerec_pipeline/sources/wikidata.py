"""Candidates from the Wikidata Query Service: humans with a domain's citizenships and
occupations, ranked by sitelinks. Query text, strict parsing and grouping by QID; no Dagster."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from facerec_pipeline.sources.polite_http import BadResponse, HttpProblem, PoliteSession

WIKIDATA_SPARQL_URL = "https://query.wikidata.org/sparql"
SPARQL_ACCEPT = "application/sparql-results+json"
QID = re.compile(r"^Q[1-9][0-9]*$")
LANGUAGE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]+)*$")


class QueryTimeout(BadResponse):
    reason = "query_timeout"


@dataclass
class WikidataPerson:
    qid: str
    label: str
    description: str | None = None
    sitelinks: int = 0
    image_files: list[str] = field(default_factory=list)  # Commons file names from P18
    commons_category: str | None = None
    local_label: str | None = None
    local_description: str | None = None


def _values(qids: list[str]) -> str:
    for qid in qids:
        if not QID.fullmatch(qid):
            raise ValueError(f"{qid!r} is not a Wikidata item id")
    return " ".join(f"wd:{qid}" for qid in qids)


def subclass_query(occupation: str) -> str:
    return (
        f"SELECT DISTINCT ?occupation WHERE {{ ?occupation wdt:P279* {_values([occupation])} . }}"
    )


def candidates_query(
    countries: list[str],
    occupations: list[str],
    min_sitelinks: int,
    limit: int,
    local_language: str | None,
) -> str:
    local = ""
    if local_language:
        if not LANGUAGE.fullmatch(local_language):
            raise ValueError(f"{local_language!r} is not a language code")
        local = f"""
  OPTIONAL {{ ?person rdfs:label ?localLabel . FILTER(LANG(?localLabel) = "{local_language}") }}
  OPTIONAL {{ ?person schema:description ?localDescription .
             FILTER(LANG(?localDescription) = "{local_language}") }}"""
    return f"""SELECT ?person ?personLabel ?personDescription ?sitelinks ?image ?commonsCategory
       ?localLabel ?localDescription WHERE {{
  {{
    SELECT DISTINCT ?person ?sitelinks WHERE {{
      VALUES ?occupation {{ {_values(occupations)} }}
      VALUES ?country {{ {_values(countries)} }}
      ?person wdt:P106 ?occupation ;
              wdt:P27 ?country ;
              wdt:P31 wd:Q5 ;
              wikibase:sitelinks ?sitelinks .
      FILTER(?sitelinks >= {int(min_sitelinks)})
    }}
    ORDER BY DESC(?sitelinks)
    LIMIT {int(limit)}
  }}
  OPTIONAL {{ ?person wdt:P18 ?image . }}
  OPTIONAL {{ ?person wdt:P373 ?commonsCategory . }}{local}
  SERVICE wikibase:label {{ bd:serviceParam wikibase:language "en,mul". }}
}}"""


def check_sparql_answer(text: str, content_type: str) -> None:
    """WDQS failure shapes that arrive as HTTP 200."""
    if "java.util.concurrent.TimeoutException" in text:
        raise QueryTimeout("the Wikidata query timed out (TimeoutException in the answer)")
    if "Please set a user-agent" in text or "User-Agent policy" in text[:2000]:
        raise BadResponse("Wikidata refused the User-Agent; set FACEREC_USER_AGENT with a contact")


def bindings(payload: dict[str, Any]) -> list[dict[str, dict[str, str]]]:
    try:
        rows = payload["results"]["bindings"]
    except (KeyError, TypeError) as error:
        raise BadResponse(f"not a SPARQL JSON result: missing {error}") from error
    if not isinstance(rows, list):
        raise BadResponse("not a SPARQL JSON result: bindings is not a list")
    return rows


def entity_id(uri: str) -> str:
    qid = uri.rstrip("/").rsplit("/", 1)[-1]
    if not QID.fullmatch(qid):
        raise BadResponse(f"{uri!r} is not a Wikidata entity URI")
    return qid


def commons_file_name(uri: str) -> str:
    """`http://commons.wikimedia.org/wiki/Special:FilePath/A%20B.jpg` -> `A B.jpg`."""
    return unquote(urlparse(uri).path.rsplit("/", 1)[-1]).replace("_", " ")


def parse_subclasses(payload: dict[str, Any]) -> list[str]:
    return sorted(
        {entity_id(row["occupation"]["value"]) for row in bindings(payload) if "occupation" in row}
    )


def parse_candidates(payload: dict[str, Any]) -> list[WikidataPerson]:
    """Group the rows (repeated per image and label) by QID; best-known first."""
    people: dict[str, WikidataPerson] = {}
    for row in bindings(payload):
        if "person" not in row:
            continue
        qid = entity_id(row["person"]["value"])

        def value(name: str, row: dict = row) -> str | None:
            cell = row.get(name)
            return cell.get("value") if isinstance(cell, dict) else None

        person = people.get(qid)
        if person is None:
            sitelinks = value("sitelinks")
            try:
                links = int(sitelinks) if sitelinks is not None else 0
            except ValueError as error:
                raise BadResponse(f"{qid}: sitelinks {sitelinks!r} is not a number") from error
            label = value("personLabel")
            person = people[qid] = WikidataPerson(
                qid=qid,
                label=label if label and label != qid else "",
                description=value("personDescription"),
                sitelinks=links,
            )
        image = value("image")
        if image:
            name = commons_file_name(image)
            if name not in person.image_files:
                person.image_files.append(name)
        person.commons_category = person.commons_category or value("commonsCategory")
        person.local_label = person.local_label or value("localLabel")
        person.local_description = person.local_description or value("localDescription")
    for person in people.values():
        person.label = person.label or person.local_label or person.qid
    return sorted(people.values(), key=lambda p: (-p.sitelinks, p.qid))


class WikidataClient:
    def __init__(self, http: PoliteSession, sparql_url: str, cache_dir: Path):
        self.http = http
        self.sparql_url = sparql_url
        self.cache_dir = cache_dir
        self.warnings: list[str] = []

    def query(self, sparql: str) -> dict[str, Any]:
        return self.http.get_json(
            self.sparql_url,
            {"query": sparql, "format": "json"},
            accept=SPARQL_ACCEPT,
            check=check_sparql_answer,
        )

    def occupation_with_subclasses(self, occupation: str) -> list[str]:
        """The occupation and all its subclasses, resolved once and cached on disk (edit the
        cache file to curate). If the service cannot resolve them, the occupation alone is used
        for this run (nothing cached) and `self.warnings` says so."""
        cache = self.cache_dir / f"occupation_{occupation}.json"
        if cache.exists():
            return json.loads(cache.read_text())
        try:
            found = parse_subclasses(self.query(subclass_query(occupation)))
        except HttpProblem as problem:
            self.warnings.append(f"subclasses of {occupation} not resolved ({problem})")
            return [occupation]
        resolved = sorted({occupation, *found})
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(resolved))
        return resolved

    def candidates(
        self,
        countries: list[str],
        occupations: list[str],
        min_sitelinks: int,
        limit: int,
        local_language: str | None,
    ) -> list[WikidataPerson]:
        expanded = sorted({q for o in occupations for q in self.occupation_with_subclasses(o)})
        sparql = candidates_query(countries, expanded, min_sitelinks, limit, local_language)
        return parse_candidates(self.query(sparql))[:limit]
