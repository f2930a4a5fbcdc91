"""candidates: the people a domain's gallery should hold, from the domain's source."""

from pathlib import Path

import dagster as dg
import pandas as pd
from sqlalchemy import select

from facerec_pipeline.candidates.folder_source import FolderSourceError, scan_folder
from facerec_pipeline.candidates.names import normalize_name, unique_normalized_name
from facerec_pipeline.db.models import Person
from facerec_pipeline.domains.partitions import DATABASE_POOL, domain_partitions
from facerec_pipeline.domains.registry import get_domain
from facerec_pipeline.resources import FacerecStorage

CANDIDATE_COLUMNS = [
    "domain", "person_key", "full_name", "normalized_name", "wikidata_id", "description",
    "source_ref",
]  # fmt: skip


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


@dg.asset(
    partitions_def=domain_partitions,
    io_manager_key="stage_tables",
    code_version="1",
    pool=DATABASE_POOL,
    group_name="ingestion",
    kinds={"python", "sqlite"},
)
def candidates(context: dg.AssetExecutionContext, facerec: FacerecStorage) -> pd.DataFrame:
    """People of the domain (table `people`). Folder source: one person per sub-folder."""
    code = context.partition_key
    with facerec.session() as session:
        domain = get_domain(session, code)
        rows = session.execute(
            select(Person.person_key, Person.normalized_name).where(Person.domain == code)
        ).all()
    existing = {row.person_key: row.normalized_name for row in rows}
    if domain.source == "folder":
        try:
            found = scan_folder(Path(domain.source_path or ""))
        except FolderSourceError as error:
            raise dg.Failure(str(error)) from error
        people = [
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
    else:
        raise dg.Failure(
            f"domain {code!r} uses the {domain.source!r} source, which this version cannot read "
            "yet; create the domain with `--source folder --path DIR`"
        )
    assign_normalized_names(people, existing, set(existing.values()))
    frame = pd.DataFrame(people, columns=CANDIDATE_COLUMNS)
    new = sum(1 for person in people if person["person_key"] not in existing)
    context.log.info(f"candidates[{code}]: {len(frame)} people from {domain.source} ({new} new)")
    context.add_output_metadata({"people": len(frame), "new_people": new, "source": domain.source})
    return frame
