"""Per-photo processing failures of a stage: recorded with the error and a retry count, tried
again on the next run until MAX_ATTEMPTS, removed once the photo succeeds. One photo never fails
a run; `facerec skips` lists them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import delete, select

from facerec_pipeline.db.engine import session_scope
from facerec_pipeline.db.models import ProcessingFailure
from facerec_pipeline.settings import Settings

# Tried on this many runs; after that the photo is left out until the failure row is deleted
# (`facerec skips` shows it as given up).
MAX_ATTEMPTS = 3


@dataclass
class FailureOutcomes:
    """What one part of a stage (a batch on a worker) recorded, for the log that saves it."""

    failed: dict[str, tuple[int | None, str | None, str]] = field(default_factory=dict)
    succeeded: set[str] = field(default_factory=set)


class FailureLog:
    """The failures of one stage of one domain, read when the stage starts and written by
    `save()` at its end. A stage split into batches records in each batch's own log and saves
    once, in the log that `include`s every batch's `outcomes()`."""

    def __init__(self, settings: Settings, domain: str, stage: str, run_id: str | None):
        self.settings, self.domain, self.stage, self.run_id = settings, domain, stage, run_id
        with session_scope(settings.database_url) as session:
            self.before = {
                row.image_sha256: row.attempts
                for row in session.scalars(
                    select(ProcessingFailure).where(
                        ProcessingFailure.domain == domain, ProcessingFailure.stage == stage
                    )
                )
            }
        self.failed: dict[str, tuple[int | None, str | None, str]] = {}
        self.succeeded: set[str] = set()

    def should_try(self, image_sha256: str) -> bool:
        return self.before.get(image_sha256, 0) < MAX_ATTEMPTS

    def record_failure(
        self, image_sha256: str, person_id: int | None, item: str | None, error: BaseException | str
    ) -> None:
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self.failed[image_sha256] = (person_id, item, text[:2000])

    def record_success(self, image_sha256: str) -> None:
        if image_sha256 in self.before:
            self.succeeded.add(image_sha256)

    def outcomes(self) -> FailureOutcomes:
        return FailureOutcomes(dict(self.failed), set(self.succeeded))

    def include(self, outcomes: FailureOutcomes) -> None:
        self.failed.update(outcomes.failed)
        self.succeeded |= outcomes.succeeded

    @property
    def given_up(self) -> int:
        failing = {**self.before, **{sha: self.before.get(sha, 0) + 1 for sha in self.failed}}
        return sum(1 for attempts in failing.values() if attempts >= MAX_ATTEMPTS)

    def save(self) -> None:
        now = datetime.now(UTC)
        with session_scope(self.settings.database_url) as session:
            if self.succeeded:
                session.execute(
                    delete(ProcessingFailure).where(
                        ProcessingFailure.domain == self.domain,
                        ProcessingFailure.stage == self.stage,
                        ProcessingFailure.image_sha256.in_(sorted(self.succeeded)),
                    )
                )
            for sha, (person_id, item, error) in self.failed.items():
                row = session.scalar(
                    select(ProcessingFailure).where(
                        ProcessingFailure.domain == self.domain,
                        ProcessingFailure.stage == self.stage,
                        ProcessingFailure.image_sha256 == sha,
                    )
                )
                if row is None:
                    row = ProcessingFailure(
                        domain=self.domain,
                        stage=self.stage,
                        image_sha256=sha,
                        attempts=0,
                        first_failed_at=now,
                    )
                    session.add(row)
                row.attempts += 1
                row.person_id, row.item, row.error = person_id, item, error
                row.run_id, row.last_failed_at = self.run_id, now
