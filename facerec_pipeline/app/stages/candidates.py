"""candidates: the people a domain's gallery should hold, from the domain's source."""

from dataclasses import fields

import pandas as pd
from sqlalchemy import select

from facerec_pipeline.app.domains import get_domain
from facerec_pipeline.app.stages.stage_run import (
    DomainSources,
    StageFailed,
    StageResult,
    StageRun,
)
from facerec_pipeline.core.names import normalize_name, unique_normalized_name
from facerec_pipeline.db.exclusions import excluded_key_hashes, person_key_hash
from facerec_pipeline.db.models import Person
from facerec_pipeline.sources.interfaces import Candidate, SourceError

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


def shared_wikidata_ids(people: list[dict]) -> dict[str, list[str]]:
    """Each Wikidata id given to more than one person, with their names."""
    by_id: dict[str, list[str]] = {}
    for person in people:
        if person.get("wikidata_id"):
            by_id.setdefault(person["wikidata_id"], []).append(person["full_name"])
    return {qid: names for qid, names in sorted(by_id.items()) if len(names) > 1}


def known_candidate(person: Person) -> Candidate:
    return Candidate(
        person_key=person.person_key,
        full_name=person.full_name,
        ref=person.source_ref,
        wikidata_id=person.wikidata_id,
        description=person.description,
        sitelinks=person.sitelinks,
        primary_image_url=person.primary_image_url,
        commons_category=person.commons_category,
    )


def candidate_row(code: str, person: Candidate) -> dict:
    row = {"domain": code, **{f.name: getattr(person, f.name) for f in fields(Candidate)}}
    row["source_ref"] = row.pop("ref")
    return row


def build_candidates(run: StageRun, sources: DomainSources) -> StageResult:
    """People of the domain (table `people`) from its source: one per sub-folder for a folder
    domain; humans of the domain's countries and occupations ranked by sitelinks for a Wikidata
    domain (people who drop out of the query are kept)."""
    code = run.domain
    with run.session() as session:
        domain = get_domain(session, code)
        known_people = list(session.scalars(select(Person).where(Person.domain == code)))
        known = [known_candidate(person) for person in known_people]
        existing = {person.person_key: person.normalized_name for person in known_people}
        excluded = excluded_key_hashes(session, code)
    try:
        found = sources.for_domain(domain, run.settings).people(known)
    except SourceError as error:
        raise StageFailed(str(error), retryable=error.retryable) from error
    for warning in found.warnings:
        run.log.warning(f"candidates[{code}]: {warning}")
    for note in found.notes:
        run.log.info(f"candidates[{code}]: {note}")
    # People erased from the domain (`facerec people erase`) stay out, even while the source
    # still offers them (a folder that is still there).
    offered = len(found.people)
    people = [
        candidate_row(code, person)
        for person in found.people
        if person_key_hash(person.person_key) not in excluded
    ]
    if offered - len(people):
        run.log.info(
            f"candidates[{code}]: {offered - len(people)} erased people left out "
            "(the source still offers them)"
        )
    assign_normalized_names(people, existing, set(existing.values()))
    frame = pd.DataFrame(people, columns=CANDIDATE_COLUMNS)
    new = sum(1 for person in people if person["person_key"] not in existing)
    run.log.info(f"candidates[{code}]: {len(frame)} people from {domain.source} ({new} new)")
    shared = shared_wikidata_ids(people)
    for qid, names in shared.items():
        run.log.warning(
            f"candidates[{code}]: {qid} is given to {len(names)} people ({', '.join(names)}): "
            "one of them is probably wrong (name_mapping.json, or the source)"
        )
    shown = {
        "people": len(frame),
        "new_people": new,
        # only when someone was left out: history figures stay as they were otherwise
        **({"erased_left_out": offered - len(people)} if offered - len(people) else {}),
        # only when one is: a figure that is usually absent stays out of the history
        **(
            {
                "people_sharing_a_wikidata_id": sum(len(names) for names in shared.values()),
                "wikidata_ids_on_two_people": shared,
            }
            if shared
            else {}
        ),
        "source": domain.source,
    }
    return StageResult(frame, shown)
