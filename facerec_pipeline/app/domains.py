"""The domain registry: add, list, show, deactivate domains, and their inheritance order.
Plain functions over a SQLAlchemy session; no Dagster here."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from croniter import CroniterBadDateError, croniter
from sqlalchemy import select
from sqlalchemy.orm import Session

from facerec_pipeline.core.face_models import DEFAULT_FACE_MODEL, UnknownFaceModel, face_model
from facerec_pipeline.db.models import Domain, DomainDataset
from facerec_pipeline.settings import validate_domain_code

QID_PATTERN = re.compile(r"^Q[1-9][0-9]*$")
SOURCES = ("wikidata", "folder")


class DomainError(ValueError):
    """A domain request that cannot be carried out; the message says why."""


class UnknownDomain(DomainError):
    pass


def valid_cron(cron: object) -> bool:
    """Whether `cron` can be the domain's refresh cron (five fields, or an alias such as @daily,
    that croniter can run): the check the refresh sensor applies, so a domain accepted here is
    never silently left without refreshes."""
    if not isinstance(cron, str) or not croniter.is_valid(cron):
        return False
    if not (cron.strip().startswith("@") or len(cron.split()) == 5):
        return False
    try:  # a date that never comes (31 February) parses, but never fires
        croniter(cron, datetime(2026, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError:
        return False
    return True


@dataclass
class DomainSpec:
    code: str
    display_name: str
    source: str = "wikidata"
    source_path: str | None = None
    countries: list[str] = field(default_factory=list)
    occupations: list[str] = field(default_factory=list)
    inherit_from: list[str] = field(default_factory=list)
    local_language: str | None = None
    min_sitelinks: int = 10
    max_people: int = 500
    images_per_person: int = 10
    serp_budget: float = 0.0
    refresh_cron: str = "0 3 * * 1"
    face_model: str = DEFAULT_FACE_MODEL

    def validate(self) -> None:
        validate_domain_code(self.code)
        self.face_model = checked_face_model(self.face_model)
        if not self.display_name.strip():
            raise DomainError("a domain needs a display name (--name)")
        if self.source not in SOURCES:
            raise DomainError(f"unknown source {self.source!r}; choose one of {', '.join(SOURCES)}")
        if self.source == "folder":
            if not self.source_path:
                raise DomainError(
                    "a folder domain needs --path DIR (a folder of <person>/<photos>)"
                )
            if not Path(self.source_path).is_dir():
                raise DomainError(f"folder {self.source_path!r} does not exist or is not a folder")
        for qid in [*self.countries, *self.occupations]:
            if not QID_PATTERN.fullmatch(qid):
                raise DomainError(f"{qid!r} is not a Wikidata item id (like Q403)")
        if self.source == "wikidata" and not (self.countries and self.occupations):
            raise DomainError("a wikidata domain needs at least one --country and one --occupation")
        for parent in self.inherit_from:
            validate_domain_code(parent)
            if parent == self.code:
                raise DomainError("a domain cannot inherit from itself")
        if len(set(self.inherit_from)) != len(self.inherit_from):
            raise DomainError("--inherit names a domain twice")
        if not valid_cron(self.refresh_cron):
            raise DomainError(
                f"--cron {self.refresh_cron!r} is not a cron schedule Dagster can run: give five "
                "fields, minute hour day-of-month month day-of-week, e.g. '0 3 * * 1' (Mondays "
                "03:00 UTC)"
            )
        for number, name in [
            (self.min_sitelinks, "min sitelinks"),
            (self.max_people, "max people"),
            (self.images_per_person, "images per person"),
        ]:
            if number < 0:
                raise DomainError(f"{name} cannot be negative")


def add_domain(session: Session, spec: DomainSpec) -> Domain:
    spec.validate()
    if session.scalar(select(Domain).where(Domain.code == spec.code)) is not None:
        raise DomainError(f"domain {spec.code!r} already exists (see `facerec domains show`)")
    for parent in spec.inherit_from:
        get_domain(session, parent)
    domain = Domain(
        code=spec.code,
        display_name=spec.display_name.strip(),
        source=spec.source,
        source_path=str(Path(spec.source_path).resolve()) if spec.source_path else None,
        countries=spec.countries,
        occupations=spec.occupations,
        local_language=spec.local_language,
        min_sitelinks=spec.min_sitelinks,
        max_people=spec.max_people,
        images_per_person=spec.images_per_person,
        serp_budget=spec.serp_budget,
        refresh_cron=spec.refresh_cron,
        face_model=spec.face_model,
        is_active=True,
    )
    session.add(domain)
    for priority, parent in enumerate(spec.inherit_from, start=1):
        session.add(DomainDataset(domain=spec.code, inherits=parent, priority=priority))
    session.flush()
    return domain


def get_domain(session: Session, code: str) -> Domain:
    validate_domain_code(code)
    domain = session.scalar(select(Domain).where(Domain.code == code))
    if domain is None:
        known = session.scalars(select(Domain.code).order_by(Domain.code)).all()
        hint = f"known domains: {', '.join(known)}" if known else "no domains exist yet"
        raise UnknownDomain(f"unknown domain {code!r} ({hint}; add one with `facerec domains add`)")
    return domain


def list_domains(session: Session, active_only: bool = False) -> list[Domain]:
    query = select(Domain).order_by(Domain.code)
    if active_only:
        query = query.where(Domain.is_active.is_(True))
    return list(session.scalars(query))


def set_active(session: Session, code: str, active: bool) -> Domain:
    domain = get_domain(session, code)
    domain.is_active = active
    return domain


# Recognition and promotion settings a domain may change (`facerec domains set`), with the range
# each must lie in.
RECOGNITION_SETTINGS: dict[str, tuple[float, float]] = {
    "target_far": (0.0001, 0.5),
    "min_loo_accuracy": (0.0, 1.0),
    "max_gallery_shrink": (0.0, 1.0),
    "max_quality_drop": (0.0, 1.0),
    "min_faces_per_person": (1, 1000),
}


def checked_face_model(name: str) -> str:
    """The catalogue's name of face model `name`; DomainError naming the choices."""
    try:
        return face_model(name).name
    except UnknownFaceModel as error:
        raise DomainError(str(error)) from error


def update_settings(session: Session, code: str, values: dict[str, float | str]) -> Domain:
    """Change recognition and promotion settings; each is checked against its range. A new
    target FAR or face model builds a new gallery version on the next run (a new model embeds
    the domain's photos with it once); the checks of the newest version are run again by
    `facerec gallery recheck`."""
    domain = get_domain(session, code)
    for name, value in values.items():
        if name == "face_model":
            domain.face_model = checked_face_model(str(value))
            continue
        if name not in RECOGNITION_SETTINGS:
            raise DomainError(
                f"{name!r} is not a setting; choose from "
                f"{sorted([*RECOGNITION_SETTINGS, 'face_model'])}"
            )
        low, high = RECOGNITION_SETTINGS[name]
        if not low <= value <= high:
            raise DomainError(f"{name} must lie between {low} and {high}, not {value}")
        setattr(domain, name, value)
    return domain


def inherited_domains(session: Session, code: str) -> list[str]:
    """The domains `code` inherits, direct ones by priority, each followed by what it inherits."""
    order: list[str] = []

    def visit(current: str) -> None:
        parents = session.scalars(
            select(DomainDataset.inherits)
            .where(DomainDataset.domain == current)
            .order_by(DomainDataset.priority)
        ).all()
        for parent in parents:
            if parent != code and parent not in order:
                order.append(parent)
                visit(parent)

    visit(code)
    return order


def search_order(session: Session, code: str) -> list[str]:
    """Where a recognizer for `code` looks: the domain itself, then what it inherits."""
    get_domain(session, code)
    return [code, *inherited_domains(session, code)]


def describe(session: Session, domain: Domain) -> dict[str, Any]:
    return {
        "code": domain.code,
        "name": domain.display_name,
        "source": domain.source,
        "source_path": domain.source_path,
        "countries": domain.countries,
        "occupations": domain.occupations,
        "inherit_from": inherited_domains(session, domain.code),
        "min_sitelinks": domain.min_sitelinks,
        "max_people": domain.max_people,
        "images_per_person": domain.images_per_person,
        "serp_budget": domain.serp_budget,
        "refresh_cron": domain.refresh_cron,
        "is_active": domain.is_active,
        "face_model": domain.face_model,
        **{name: getattr(domain, name) for name in RECOGNITION_SETTINGS},
        "created_at": domain.created_at.isoformat() if domain.created_at else None,
    }
