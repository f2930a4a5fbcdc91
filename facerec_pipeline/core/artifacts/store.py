"""Every file the pipeline writes is a row of `artifacts`: written here and nowhere else.

`ArtifactStore.put` writes a file to a temporary name beside its target, then, in one database
transaction, upserts the file's row (stage, the photo it belongs to, sha256, size, dimensions, the
parameters that made it) and renames the file into place before the commit. A row therefore never
names a file that is not there; a process killed between the rename and the commit leaves a file
without a row, which `facerec artifacts verify` reports and `gc` removes.

A file already in place with the size its row records is not written again (content-addressed
names: a re-run writes nothing); one in place without a row (written before files were tracked)
is adopted: hashed and given its row, never rewritten. Inside `batch()` the rows of up to
`FLUSH_EVERY` files share one transaction.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image as PILImage
from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from facerec_pipeline.core.files import partial_path, sha256_file
from facerec_pipeline.db.engine import session_scope
from facerec_pipeline.db.models import Artifact
from facerec_pipeline.settings import Settings

# The stages a file can belong to. Per photo: the stored original, the face crop (DeepFace's
# aligned crop) or chip (dlib's), the 400 px thumbnail and the 800 px web copy (of the photo, or
# of its face with `"subject": "face"`). Per gallery version: its batch files, faiss index and
# report; per domain: the production pointer; per evaluation: its figures and plot.
ORIGINAL = "original"
FACE_CROP = "face_crop"
FACE_CHIP = "face_chip"
FACE_ALIGNED = "face_aligned"  # SFace's 112 px crop, aligned on YuNet's 5 landmarks
THUMBNAIL = "thumbnail_400"
WEB = "web_800"
GALLERY_BATCH = "gallery_batch"
GALLERY_INDEX = "gallery_index"
GALLERY_REPORT = "gallery_report"
EVALUATION_REPORT = "evaluation_report"
PROD_POINTER = "prod_pointer"
STAGES = (
    ORIGINAL,
    FACE_CROP,
    FACE_CHIP,
    FACE_ALIGNED,
    THUMBNAIL,
    WEB,
    GALLERY_BATCH,
    GALLERY_INDEX,
    GALLERY_REPORT,
    EVALUATION_REPORT,
    PROD_POINTER,
)
IMAGE_STAGES = (ORIGINAL, FACE_CROP, FACE_CHIP, FACE_ALIGNED, THUMBNAIL, WEB)
FLUSH_EVERY = 200


def canonical_parameters(parameters: Mapping[str, Any]) -> str:
    """The parameters as stored: JSON with sorted keys, so equal parameters are equal text."""
    return json.dumps(dict(parameters), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class ArtifactKey:
    """What a file is: its domain and stage, the photo (content sha256) it was made from, the
    parameters that made it, and the gallery version it belongs to."""

    domain: str
    stage: str
    image_sha256: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    gallery_version: int | None = None

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"unknown artifact stage {self.stage!r}; one of {', '.join(STAGES)}")


@dataclass(frozen=True)
class Stored:
    """A file in place with its row."""

    path: Path
    relative: str
    sha256: str
    size: int
    width: int | None
    height: int | None
    blurhash: str | None
    written: bool  # False: the file and row were already there


@dataclass
class _Pending:
    target: Path
    partial: Path | None  # None: adopt the file in place
    key: ArtifactKey
    stored: Stored


def image_size(path: Path) -> tuple[int | None, int | None]:
    """Width and height from the file's header, or (None, None) for what is not a picture."""
    try:
        with PILImage.open(path) as image:
            return image.size
    except (OSError, ValueError, PILImage.DecompressionBombError):
        return None, None


def fill_bytes(data: bytes) -> Callable[[Path], None]:
    return lambda partial: partial.write_bytes(data)


def fill_copy(source: Path) -> Callable[[Path], None]:
    return lambda partial: shutil.copyfile(source, partial)


def fill_move(file: Path) -> Callable[[Path], None]:
    return lambda partial: os.replace(file, partial)


class ArtifactStore:
    """Writes files and their `artifacts` rows together (see the module docstring)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.RLock()
        self._pending: list[_Pending] = []
        self._batching = 0
        self._known: dict[str, dict[str, tuple[str, int]]] = {}  # domain -> path -> (sha, size)

    # -- reading -------------------------------------------------------------------------------
    def known(self, domain: str) -> dict[str, tuple[str, int]]:
        """The domain's rows by relative path: (sha256, size). Read once per store."""
        with self._lock:
            if domain not in self._known:
                with session_scope(self.settings.database_url) as session:
                    rows = session.execute(
                        select(Artifact.path, Artifact.sha256, Artifact.size).where(
                            Artifact.domain == domain
                        )
                    )
                    self._known[domain] = {row.path: (row.sha256, row.size) for row in rows}
            return self._known[domain]

    def know_only(self, domain: str, targets: Iterable[Path]) -> None:
        """Read the rows of `targets` alone (a batch's own files) instead of every row of the
        domain at the first `is_current`: this store then knows of no other file of `domain`."""
        paths = sorted({self.settings.relative(target) for target in targets})
        rows: dict[str, tuple[str, int]] = {}
        with session_scope(self.settings.database_url) as session:
            for start in range(0, len(paths), 500):
                found = session.execute(
                    select(Artifact.path, Artifact.sha256, Artifact.size).where(
                        Artifact.domain == domain, Artifact.path.in_(paths[start : start + 500])
                    )
                )
                rows.update({row.path: (row.sha256, row.size) for row in found})
        with self._lock:
            self._known[domain] = rows

    def is_current(self, target: Path, domain: str, sha256: str | None = None) -> bool:
        """True when `target` has a row and is there with the size (and sha256, if given) the
        row records: nothing to write."""
        row = self.known(domain).get(self.settings.relative(target))
        if row is None or (sha256 is not None and row[0] != sha256):
            return False
        try:
            return target.stat().st_size == row[1]
        except OSError:
            return False

    # -- writing -------------------------------------------------------------------------------
    def put(
        self,
        target: Path,
        key: ArtifactKey,
        fill: Callable[[Path], None] | None,
        *,
        sha256: str | None = None,
        blurhash: str | None = None,
        size: tuple[int, int] | None = None,
        session: Session | None = None,
        always: bool = False,
    ) -> Stored:
        """The one writer: `fill(partial)` writes the file's bytes to a temporary path, which is
        renamed to `target` in the transaction that writes its row. With `fill=None` the file
        already at `target` gets its row (adopted). When `target` is current (`is_current`; with
        `sha256`, of that content) nothing is written. With `session`, the row is written in that
        session's transaction (a caller that holds the database, like a promotion). `always`:
        write even a current file (its caller read it and knows it differs)."""
        relative = self.settings.relative(target)
        if Path(relative).is_absolute():
            raise ValueError(f"{target} is outside the storage root {self.settings.storage_dir}")
        if not always and self.is_current(target, key.domain, sha256):
            known_sha, known_size = self.known(key.domain)[relative]
            return Stored(target, relative, known_sha, known_size, None, None, None, False)
        if fill is None or (
            sha256 is not None and target.exists() and sha256_file(target) == sha256
        ):
            partial, probe = None, target
        else:
            partial = partial_path(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                fill(partial)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            probe = partial
        digest = sha256_file(probe) if partial is not None or sha256 is None else sha256
        if sha256 is not None and digest != sha256:
            if partial is not None:
                partial.unlink(missing_ok=True)
            raise ValueError(f"{target}: the content changed while stored (sha256 {digest})")
        width, height = size or (image_size(probe) if key.stage in IMAGE_STAGES else (None, None))
        stored = Stored(
            target, relative, digest, probe.stat().st_size, width, height, blurhash, True
        )
        item = _Pending(target, partial, key, stored)
        if session is not None:
            self._place(session, [item])
            self._remember(key.domain, relative, stored)
            return stored
        with self._lock:
            self._pending.append(item)
            if not self._batching or len(self._pending) >= FLUSH_EVERY:
                self.flush()
        return stored

    def put_tree(
        self, prepared: Path, target: Path, key_of: Callable[[str], ArtifactKey]
    ) -> list[Stored]:
        """Move every file of the folder `prepared` to the same place under `target`, each with
        its row (`key_of(its path relative to the folder)`), then remove `prepared`."""
        files = sorted(path for path in prepared.rglob("*") if path.is_file())
        with self.batch():
            stored = [
                self.put(
                    target / file.relative_to(prepared),
                    key_of(file.relative_to(prepared).as_posix()),
                    fill_move(file),
                )
                for file in files
            ]
        shutil.rmtree(prepared, ignore_errors=True)
        return stored

    def rewrite(self, session: Session, target: Path, fill: Callable[[Path], None]) -> Stored:
        """Write a tracked file anew in place (an erasure rewriting a batch), keeping what its
        row says it is; in `session`'s transaction."""
        relative = self.settings.relative(target)
        row = session.scalar(select(Artifact).where(Artifact.path == relative))
        if row is None:
            raise ValueError(f"{relative} has no artifact row to rewrite")
        key = ArtifactKey(
            row.domain, row.stage, row.image_sha256, json.loads(row.parameters), row.gallery_version
        )
        return self.put(target, key, fill, session=session, always=True)

    def remove(self, session: Session, domain: str, paths: list[Path]) -> int:
        """Delete files and their rows (in `session`'s transaction); returns files removed."""
        removed = 0
        relative = sorted({self.settings.relative(path) for path in paths})
        for start in range(0, len(relative), 400):
            chunk = relative[start : start + 400]
            session.execute(delete(Artifact).where(Artifact.path.in_(chunk)))
        for path in relative:
            self._remember(domain, path, None)
            file = self.settings.absolute(path)
            if file.is_file():
                file.unlink()
                removed += 1
        return removed

    @contextmanager
    def batch(self) -> Iterator[ArtifactStore]:
        """Files put inside share transactions of up to FLUSH_EVERY rows; the rest is flushed on
        leaving (also on an error: what was written is kept with its rows)."""
        with self._lock:
            self._batching += 1
        try:
            yield self
        finally:
            with self._lock:
                self._batching -= 1
                if not self._batching:
                    self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
            if pending:
                with session_scope(self.settings.database_url) as session:
                    self._place(session, pending)
                for item in pending:  # committed
                    self._remember(item.key.domain, item.stored.relative, item.stored)

    def _place(self, session: Session, items: list[_Pending]) -> None:
        """Upsert the items' rows in `session`, then rename their files into place before the
        caller commits; a temporary file not renamed (an error) is removed."""
        try:
            for item in items:
                self._upsert(session, item)
            session.flush()
            for item in items:
                if item.partial is not None:
                    item.partial.replace(item.target)
        finally:
            for item in items:
                if item.partial is not None:
                    item.partial.unlink(missing_ok=True)  # gone once renamed

    def _remember(self, domain: str, relative: str, stored: Stored | None) -> None:
        """Keep the rows read by `known` in step with what was written or removed; a domain
        whose rows were never read is left to be read from the database when needed."""
        rows = self._known.get(domain)
        if rows is None:
            return
        if stored is None:
            rows.pop(relative, None)
        else:
            rows[relative] = (stored.sha256, stored.size)

    def _upsert(self, session, item: _Pending) -> None:
        key, stored = item.key, item.stored
        parameters = canonical_parameters(key.parameters)
        row = session.scalar(
            select(Artifact).where(
                or_(
                    Artifact.path == stored.relative,
                    (Artifact.domain == key.domain)
                    & (Artifact.image_sha256 == key.image_sha256)
                    & (Artifact.stage == key.stage)
                    & (Artifact.parameters == parameters),
                )
            )
        )
        if row is None:
            row = Artifact(domain=key.domain, path=stored.relative)
            session.add(row)
        elif row.sha256 != stored.sha256:
            row.created_at = datetime.now(UTC)
        row.path = stored.relative
        row.stage = key.stage
        row.image_sha256 = key.image_sha256
        row.parameters = parameters
        row.gallery_version = key.gallery_version
        row.sha256 = stored.sha256
        row.size = stored.size
        row.width, row.height = stored.width, stored.height
        if stored.blurhash is not None:
            row.blurhash = stored.blurhash

    def forget_missing(self, session: Session, domain: str) -> int:
        """Delete the rows of `domain` whose files are gone (removed on purpose, e.g. by an
        erasure); returns how many."""
        gone = [
            path
            for path in session.scalars(select(Artifact.path).where(Artifact.domain == domain))
            if not self.settings.absolute(path).is_file()
        ]
        self.remove(session, domain, [self.settings.absolute(path) for path in gone])
        return len(gone)

    def adopt_folder(self, folder: Path, key_of: Callable[[str], ArtifactKey]) -> int:
        """Give every file under `folder` that has no row its row (files written before they
        were tracked; `key_of(path relative to the folder)`); returns how many."""
        if not folder.is_dir():
            return 0
        adopted = 0
        with self.batch():
            for file in sorted(path for path in folder.rglob("*") if path.is_file()):
                if file.name.endswith(".partial") or ".orphaned" in file.parts:
                    continue
                key = key_of(file.relative_to(folder).as_posix())
                if self.known(key.domain).get(self.settings.relative(file)) is None:
                    self.put(file, key, None)
                    adopted += 1
        return adopted
