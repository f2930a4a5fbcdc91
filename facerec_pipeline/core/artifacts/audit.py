"""Do the files and the `artifacts` rows agree? `verify`: every row's file exists with its size and
sha256, and every file in a tracked area has a row. `collect_garbage`: remove the files no row
names (orphans), never one a served, published or pinned gallery version uses or one the
database still references, and never one younger than GRACE (a run may be writing it).

Tracked areas are where the pipeline writes; the database files, Dagster's home, the model
weights, backups and rebuildable caches (other than soft-rejected crops) have their own owners.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from facerec_pipeline.core.files import sha256_file
from facerec_pipeline.db.models import PRODUCTION, Artifact, Domain, Face, Gallery, Image
from facerec_pipeline.settings import Settings, validate_domain_code

TRACKED_AREAS = (
    "training",
    "trainingPass",
    "cache/soft_rejected",
    "previews",
    "recognized_faces_batched",
    "recognized_faces_prod",
    "reports",
)
# A file without a row younger than this may be a write in flight (renamed, not yet committed).
GRACE_SECONDS = 30 * 60


@dataclass(frozen=True)
class Finding:
    path: str
    problem: str  # missing, damaged, orphaned
    detail: str = ""


@dataclass
class Audit:
    rows_checked: int = 0
    files_seen: int = 0
    missing: list[Finding] = field(default_factory=list)
    damaged: list[Finding] = field(default_factory=list)
    orphaned: list[Finding] = field(default_factory=list)
    recent: list[Finding] = field(default_factory=list)  # rowless, younger than GRACE_SECONDS

    @property
    def ok(self) -> bool:
        return not (self.missing or self.damaged or self.orphaned)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "rows_checked": self.rows_checked,
            "files_seen": self.files_seen,
            **{
                name: [asdict(finding) for finding in getattr(self, name)]
                for name in ("missing", "damaged", "orphaned", "recent")
            },
        }


def tracked_roots(settings: Settings, domain: str | None = None) -> list[Path]:
    """The tracked areas (of one domain: its folder in each area)."""
    roots = [settings.storage_dir / area for area in TRACKED_AREAS]
    return roots if domain is None else [root / validate_domain_code(domain) for root in roots]


def tracked_files(settings: Settings, domain: str | None = None) -> Iterator[Path]:
    """Every file in the tracked areas (of one domain: its folder in each area)."""
    for root in tracked_roots(settings, domain):
        for folder, _, files in os.walk(root):
            for name in files:
                yield Path(folder) / name


def _rows(session: Session, domain: str | None):
    query = select(Artifact).order_by(Artifact.path)
    return session.scalars(query.where(Artifact.domain == domain) if domain else query).all()


def verify(
    session: Session, settings: Settings, domain: str | None = None, *, hashes: bool = True
) -> Audit:
    """Compare rows and files (one domain, or all); `hashes=False` checks sizes only."""
    audit = Audit()
    rows = _rows(session, domain)
    audit.rows_checked = len(rows)
    for row in rows:
        file = settings.absolute(row.path)
        try:
            size = file.stat().st_size
        except OSError:
            audit.missing.append(Finding(row.path, "missing", f"{row.stage} of {row.domain}"))
            continue
        if size != row.size:
            audit.damaged.append(Finding(row.path, "damaged", f"{size} bytes, row says {row.size}"))
        elif hashes and sha256_file(file) != row.sha256:
            audit.damaged.append(Finding(row.path, "damaged", "sha256 differs from its row"))
    known = set(session.scalars(select(Artifact.path)))
    now = time.time()
    for file in tracked_files(settings, domain):
        audit.files_seen += 1
        relative = settings.relative(file)
        if relative in known:
            continue
        try:
            seen = file.stat()
        except OSError:
            continue  # gone meanwhile
        finding = Finding(relative, "orphaned", f"{seen.st_size} bytes, no row")
        (audit.recent if now - seen.st_mtime < GRACE_SECONDS else audit.orphaned).append(finding)
    return audit


def protected_paths(session: Session, settings: Settings) -> dict[str, str]:
    """Files gc never removes, with why: every file of a version that serves, served (a
    rollback target) or is pinned, and every photo and crop the database references."""
    pinned = {
        (code, version)
        for code, version in session.execute(select(Domain.code, Domain.pinned_version))
        if version is not None
    }
    kept: dict[str, str] = {}
    for gallery in session.scalars(select(Gallery)):
        if gallery.status not in (PRODUCTION, "published") and (
            (gallery.domain, gallery.version) not in pinned
        ):
            continue
        reason = f"used by {gallery.domain} v{gallery.version} ({gallery.status})"
        for batch in gallery.batch_paths or []:
            for folder, _, files in os.walk(settings.absolute(batch)):
                for name in files:
                    kept[settings.relative(Path(folder) / name)] = reason
        for path in (gallery.file_checksums or {}).keys():
            kept[path] = reason
    for path in session.scalars(select(Image.file_path).where(Image.removed_at.is_(None))):
        if path:
            kept.setdefault(path, "a photo the database references")
    for path in session.scalars(select(Face.crop_path).where(Face.crop_path.is_not(None))):
        kept.setdefault(path, "a crop the database references")
    return kept


@dataclass
class Collection:
    removed: list[str] = field(default_factory=list)
    kept: list[Finding] = field(default_factory=list)  # orphans gc will not remove, and why
    recent: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    dry_run: bool = True

    def to_dict(self) -> dict:
        return {**asdict(self), "kept": [asdict(finding) for finding in self.kept]}


def collect_garbage(
    session: Session, settings: Settings, domain: str | None = None, *, dry_run: bool = True
) -> Collection:
    """Remove orphaned files (see the module docstring); with `dry_run`, only say which."""
    audit = verify(session, settings, domain, hashes=False)
    protected = protected_paths(session, settings)
    collection = Collection(recent=[finding.path for finding in audit.recent], dry_run=dry_run)
    for finding in audit.orphaned:
        if finding.path in protected:
            collection.kept.append(Finding(finding.path, "kept", protected[finding.path]))
            continue
        file = settings.absolute(finding.path)
        collection.removed.append(finding.path)
        try:
            collection.bytes_freed += file.stat().st_size
            if not dry_run:
                file.unlink()
        except FileNotFoundError:
            pass
    if not dry_run:
        _remove_empty_folders(settings, domain)
    return collection


def _remove_empty_folders(settings: Settings, domain: str | None) -> None:
    for root in tracked_roots(settings, domain):
        for folder, _, _ in sorted(os.walk(root), key=lambda entry: -len(entry[0])):
            path = Path(folder)
            if path != root and not any(path.iterdir()):
                path.rmdir()
