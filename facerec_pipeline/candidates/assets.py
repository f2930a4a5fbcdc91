"""candidates: the people a domain's gallery should hold, from the domain's source."""

import json
import time
from pathlib import Path
from urllib.parse import quote

import dagster as dg
import pandas as pd
from sqlalchemy import select

from facerec_pipeline.core.names import normalize_name, unique_normalized_name
from facerec_pipeline.db.models import Domain, Person
from facerec_pipeline.domains.registry import get_domain
from facerec_pipeline.policy import stage_asset
from facerec_pipeline.resources import FacerecStorage, WebSourcesResource
from facerec_pipeline.run_history import record_stage
from facerec_pipeline.sources.folder import FolderSourceError, scan_folder
from facerec_pipeline.sources.polite_http import HttpProblem, UserAgentRefused
from facerec_pipeline.sources.wikidata import WikidataPerson

CANDIDATE_COLUMNS = [
    "domain",
    "person_key",
    "full_name",
    "normalized_name",
    "wikidata_id",
    "description",
    "sitelinks",
    "primary_image_url",
    "commons_category",
    "source_ref",
]
FILE_PATH_URL = "http://commons.wikimedia.org/wiki/Special:FilePath/"


def assign_normalized_names(
    people: list[dict], existing: dict[str, str], taken: set[str]
) -> list[dict]:
    """Keep each known person's normalized name; give new people a unique one."""
    taken = set(taken)
    for person in people:
        known = existing.get(person["person_key"])
        if known is not None:
            person["normalized_name"] = known
            continue
        name = unique_normalized_name(
            normalize_name(person["full_name"]), taken, person.get("wikidata_id")
        )
        person["normalized_name"] = name
        taken.add(name)
    return people


def folder_people(code: str, domain: Domain) -> list[dict]:
    try:
        found = scan_folder(Path(domain.source_path or ""))
    except FolderSourceError as error:
        raise dg.Failure(str(error), allow_retries=False) from error
    return [
        {
            "domain": code,
            "person_key": person.person_key,
            "full_name": person.full_name,
            "wikidata_id": person.wikidata_id,
            "description": person.description,
            "source_ref": person.folder,
        }
        for person in found
    ]


def wikidata_row(code: str, person: WikidataPerson) -> dict:
    return {
        "domain": code,
        "person_key": f"wikidata:{person.qid}",
        "full_name": person.label,
        "wikidata_id": person.qid,
        "description": person.description or person.local_description,
        "sitelinks": person.sitelinks,
        "primary_image_url": FILE_PATH_URL + quote(person.image_files[0])
        if person.image_files
        else None,
        "commons_category": person.commons_category,
        "source_ref": json.dumps(person.image_files, ensure_ascii=False),
    }


def wikidata_people(
    context: dg.AssetExecutionContext,
    code: str,
    domain: Domain,
    facerec: FacerecStorage,
    web: WebSourcesResource,
    known: list[dict],
) -> list[dict]:
    """The query's people, plus those who dropped out of it since (kept, not deleted)."""
    sources = web.sources()
    try:
        http = sources.session()
        client = sources.wikidata(http, facerec.settings.cache_dir / "wikidata")
        found = client.candidates(
            domain.countries,
            domain.occupations,
            domain.min_sitelinks,
            domain.max_people,
            domain.local_language,
        )
    except UserAgentRefused as error:
        raise dg.Failure(str(error), allow_retries=False) from error
    except HttpProblem as error:
        raise dg.Failure(f"Wikidata query failed: {error}") from error
    rows = [wikidata_row(code, person) for person in found]
    current = {row["person_key"] for row in rows}
    dropped = [
        {column: person[column] for column in CANDIDATE_COLUMNS if column in person}
        for person in known
        if person["person_key"] not in current and person["person_key"].startswith("wikidata:")
    ]
    for warning in client.warnings:
        context.log.warning(f"candidates[{code}]: {warning}")
    context.log.info(
        f"candidates[{code}]: Wikidata gave {len(rows)} people "
        f"({http.requests_made} requests); {len(dropped)} earlier people kept"
    )
    return rows + dropped


@stage_asset(
    code_version="2",
    group_name="ingestion",
    reaches_network=True,
)
def candidates(
    context: dg.AssetExecutionContext, facerec: FacerecStorage, web_sources: WebSourcesResource
) -> pd.DataFrame:
    """People of the domain (table `people`): one per sub-folder for a folder domain; humans of
    the domain's countries and occupations ranked by sitelinks for a Wikidata domain."""
    started = time.monotonic()
    code = context.partition_key
    with facerec.session() as session:
        domain = get_domain(session, code)
        known = [
            {column: getattr(person, column) for column in CANDIDATE_COLUMNS}
            for person in session.scalars(select(Person).where(Person.domain == code))
        ]
    existing = {person["person_key"]: person["normalized_name"] for person in known}
    if domain.source == "folder":
        people = folder_people(code, domain)
    else:
        people = wikidata_people(context, code, domain, facerec, web_sources, known)
    assign_normalized_names(people, existing, set(existing.values()))
    frame = pd.DataFrame(people, columns=CANDIDATE_COLUMNS)
    new = sum(1 for person in people if person["person_key"] not in existing)
    context.log.info(f"candidates[{code}]: {len(frame)} people from {domain.source} ({new} new)")
    context.add_output_metadata({"people": len(frame), "new_people": new, "source": domain.source})
    with facerec.session() as session:
        figures = {"people": len(frame), "new_people": new}
        record_stage(
            session, code, context.run_id, "candidates", figures, time.monotonic() - started
        )
    return frame
