"""What a stage is given and what it gives back, in terms that name no orchestrator.

A stage function takes a `StageRun` (the settings, the domain, the run's id and where its
progress lines go) and its inputs, and returns a `StageResult`: the stage table (or None for a
stage that keeps no table) and the figures to show with it. `StageFailed` stops the run with a
message a person can act on; `retryable` says whether trying again may help.

The face stages come in three parts (`BatchedStage`), so that an executor can place their work
on several machines: a plan that sorts out what earlier runs did and splits the rest into
batches, the work of one batch, and a merge of every batch's result into the stage's result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
from sqlalchemy.orm import Session

from facerec_pipeline.core.face_models import FaceModel
from facerec_pipeline.core.faces.engine import EngineConfig, FaceEngine
from facerec_pipeline.core.faces.validation import WorkerPool
from facerec_pipeline.db.engine import session_scope
from facerec_pipeline.db.models import Domain
from facerec_pipeline.settings import DEFAULT_FACE_BATCH_SIZE, Settings
from facerec_pipeline.sources.interfaces import DomainSource

LOG = logging.getLogger("facerec_pipeline.stages")


class Markdown(str):
    """A figure meant to be read as markdown (a table, a report with images)."""


class FilePath(str):
    """A figure that is a path on the storage machine."""


class StageFailed(RuntimeError):
    """The stage cannot produce its output; the message names the fix."""

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


class StageLog(Protocol):
    def info(self, msg: str) -> Any: ...

    def warning(self, msg: str) -> Any: ...


class DomainSources(Protocol):
    """Where each domain's people and photos come from (the web sources' settings)."""

    serp_cost_per_call: float

    def for_domain(self, domain: Domain, settings: Settings) -> DomainSource: ...


class FaceEngines(Protocol):
    """The engines and worker pools of a run, one per face model configuration."""

    def engine(self, model: FaceModel) -> FaceEngine: ...

    def pool(self, model: FaceModel) -> WorkerPool: ...


class RunEngines:
    """The face engines and worker pools of one run (FaceEngines), one per engine
    configuration, each made at first use; close() stops the worker processes. The pipeline's
    face engine resource holds one per run; `with RunEngines(...)` elsewhere."""

    def __init__(self, models_dir: Path, workers: int, min_photos_per_worker: int | None = None):
        self.models_dir = Path(models_dir)
        self.workers = workers
        self.min_photos_per_worker = min_photos_per_worker
        self._engines: dict[EngineConfig, FaceEngine] = {}
        self._pools: dict[EngineConfig, WorkerPool] = {}

    def __enter__(self) -> RunEngines:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def engine(self, model: FaceModel) -> FaceEngine:
        """The face engine of `model` (made at the first call; weights checked then)."""
        if model.engine not in self._engines:
            self._engines[model.engine] = FaceEngine(model.engine, self.models_dir)
        return self._engines[model.engine]

    def pool(self, model: FaceModel) -> WorkerPool:
        """The worker processes for `model`'s engine, for validate_photos and embed_crops:
        started at the first batch large enough to need them, stopped by close()."""
        if model.engine not in self._pools:
            self._pools[model.engine] = WorkerPool(
                self.engine(model), self.workers, self.min_photos_per_worker
            )
        return self._pools[model.engine]

    def close(self) -> None:
        pools, self._pools, self._engines = self._pools, {}, {}
        for pool in pools.values():
            pool.close()


@dataclass(frozen=True)
class StageRun:
    settings: Settings
    domain: str
    run_id: str
    log: StageLog = field(default=LOG)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with session_scope(self.settings.database_url) as session:
            yield session


@dataclass
class StageResult:
    table: pd.DataFrame | None
    figures: dict[str, Any]


def version_label(code: str, version: int) -> str:
    """A version as the UI shows it: text naming its domain, so no plot mixes the version
    numbers of different domains."""
    return f"{code} v{version}"


@dataclass
class StagePlan:
    """What a batched stage's plan gives: what its merge needs (`carry`) and the work left to
    do, in batches. Both are pickled between the steps, so they hold plain values."""

    carry: Any
    batches: list[list[Any]]


@dataclass
class BatchResult:
    """One batch done: what the merge takes from it, and its figures (its step's metadata)."""

    value: Any
    figures: dict[str, Any]


def in_batches(items: Sequence[Any], size: int) -> list[list[Any]]:
    if size < 1:
        raise ValueError(f"a batch holds at least one item, not {size}")
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


@dataclass(frozen=True)
class BatchedStage:
    """A stage in three parts, each a step of its own in the pipeline: `plan(run, model,
    batch_size, **inputs)` reads what earlier runs did and gives a StagePlan; `work(run, model,
    engines, batch)` does one batch (on any worker) and gives a BatchResult; `merge(run, model,
    carry, values)` makes the StageResult from every batch's value, in batch order."""

    name: str
    plan: Callable[..., StagePlan]
    work: Callable[..., BatchResult]
    merge: Callable[..., StageResult]

    def build(
        self,
        run: StageRun,
        model: FaceModel,
        engines: FaceEngines,
        batch_size: int = DEFAULT_FACE_BATCH_SIZE,
        **inputs: pd.DataFrame,
    ) -> StageResult:
        """The whole stage in this process, batch after batch (the tests and the bench)."""
        plan = self.plan(run, model, batch_size, **inputs)
        results = [self.work(run, model, engines, batch).value for batch in plan.batches]
        return self.merge(run, model, plan.carry, results)
