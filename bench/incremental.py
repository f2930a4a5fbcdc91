"""Incremental re-runs of the real pipeline (Dagster, SQLite, files) on folder domains: a full
run, a re-run with nothing changed, and a re-run after adding 1% new photos."""

from __future__ import annotations

import time
from pathlib import Path

from bench.common import add_folder_domain, fresh_storage
from bench.photos import add_variants, person_of


def measure(bases: list[Path], photos: int, work: Path) -> dict:
    """The real pipeline (Dagster, SQLite, files) on a folder domain of `photos` photos: a full
    run, a re-run with nothing changed, and a re-run after adding 1% new photos."""
    import dagster as dg
    from sqlalchemy import select

    from facerec_pipeline.db.engine import session_scope
    from facerec_pipeline.db.models import TrainingSession
    from facerec_pipeline.defs.launch import run_domain

    root = work / "incremental"
    settings = fresh_storage(root)
    by_person: dict[str, list[Path]] = {}
    for base in bases:
        by_person.setdefault(person_of(base), []).append(base)
    folder = root / "photos"
    add_variants(by_person, photos, folder, seed=0)
    add_folder_domain(settings, "bench", "Bench", folder)
    instance = dg.DagsterInstance.from_config(str(settings.dagster_home))
    timings = {}

    def run(label: str) -> None:
        start = time.perf_counter()
        outcome = run_domain(settings, "bench", instance, echo=lambda line: None)
        timings[label] = time.perf_counter() - start
        if not outcome.success:
            raise RuntimeError(f"{label} run failed: {outcome.failures}")

    run("full")
    run("unchanged")
    new = max(1, photos // 100)
    add_variants(by_person, new, folder, seed=1000, prefix="new_")
    run("one_percent_new")
    with session_scope(settings.database_url) as session:
        last = session.scalars(select(TrainingSession).order_by(TrainingSession.id.desc())).first()
        counts = dict(last.counts)
    return {
        "photos": photos,
        "people": len(by_person),
        "new": new,
        "timings": timings,
        "last_counts": counts,
    }


def section(reruns: list[dict]) -> list[str]:
    """Its part of BENCHMARKS.md."""
    if not reruns:
        return ["Incremental re-runs: skipped (--domain-photos 0)."]
    lines = [
        "## Incremental re-runs (the real pipeline: Dagster, SQLite, files)",
        "",
        "Folder domains of variants of the photos above, run with `run_domain` as `facerec "
        "run` does: a full run, a re-run with nothing changed, a re-run after adding 1% new "
        "photos. A run has a fixed cost (Dagster's run and event log, the report of a new "
        "version, loading the detector in the run's process), and new photos below 16 per "
        "worker (dlib; 128 for sface) are judged in the run's own process. The domain uses "
        "the default face model.",
        "",
        "| photos in the domain | people | full run s | unchanged re-run s | 1% new s | "
        "1% new / full | work done after adding 1% |",
        "|---|---|---|---|---|---|---|",
    ]
    for rerun in reruns:
        timings, counts = rerun["timings"], rerun["last_counts"]
        faces, embeddings = counts["detected_faces"], counts["face_embeddings"]
        done = (
            f"{rerun['new']} photos added, {faces['judged_this_run']} judged and "
            f"{faces['reused_from_cache']} reused, "
            f"{embeddings['embedded_this_run']} embedded and "
            f"{embeddings['reused_from_cache']} reused, gallery "
            f"v{counts['gallery']['gallery_version']}"
        )
        lines.append(
            f"| {rerun['photos']:,} | {rerun['people']} | {timings['full']:.1f} | "
            f"{timings['unchanged']:.1f} | {timings['one_percent_new']:.1f} | "
            f"{timings['one_percent_new'] / timings['full']:.1%} | {done} |"
        )
    return lines


def goals(reruns: list[dict]) -> list[tuple[str, str, str, bool]]:
    """Its row of the goals table, (measure, goal, measured, met); none when it was skipped."""
    if not reruns:
        return []
    biggest = reruns[-1]
    ratio = biggest["timings"]["one_percent_new"] / biggest["timings"]["full"]
    smaller = ", ".join(
        f"{r['timings']['one_percent_new'] / r['timings']['full']:.1%} at {r['photos']:,}"
        for r in reruns[:-1]
    )
    return [
        (
            "incremental re-run, 1% new photos",
            "<= 5% of a full run",
            f"{ratio:.1%} at {biggest['photos']:,} photos{f' ({smaller})' if smaller else ''}",
            ratio <= 0.05,
        )
    ]
