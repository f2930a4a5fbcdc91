"""The weekly check that files and `artifacts` rows agree, as a Dagster job and schedule: the run
shows the counts and the problems found, and fails (red in the UI) when any file is missing,
damaged or orphaned."""

import dagster as dg

from facerec_pipeline.core.artifacts.audit import verify
from facerec_pipeline.defs.resources import FacerecStorage

SHOWN = 100  # findings listed in the run's metadata; `facerec artifacts verify --json` has all


def _listing(findings: list) -> dg.MetadataValue:
    lines = [f"| {f.problem} | `{f.path}` | {f.detail} |" for f in findings[:SHOWN]]
    more = [f"\n{len(findings) - SHOWN} more: `facerec artifacts verify --json`"] * (
        len(findings) > SHOWN
    )
    return dg.MetadataValue.md(
        "\n".join(["| problem | file | detail |", "|---|---|---|", *lines, *more])
    )


@dg.op(
    description="Every artifact row's file exists with its sha256, and every file in the tracked "
    "areas of storage/ has a row (`facerec artifacts verify`)."
)
def verify_artifacts_op(context: dg.OpExecutionContext, facerec: FacerecStorage) -> dict:
    with facerec.session() as session:
        audit = verify(session, facerec.settings)
    problems = audit.missing + audit.damaged + audit.orphaned
    metadata = {
        "rows_checked": audit.rows_checked,
        "files_seen": audit.files_seen,
        "missing": len(audit.missing),
        "damaged": len(audit.damaged),
        "orphaned": len(audit.orphaned),
        "recent_not_judged": len(audit.recent),
    }
    if problems:
        raise dg.Failure(
            description=f"{len(audit.missing)} missing, {len(audit.damaged)} damaged and "
            f"{len(audit.orphaned)} orphaned files; `facerec artifacts verify` lists them, "
            "`facerec artifacts gc --yes` removes orphans, `facerec run --domain X` rewrites "
            "missing photos, crops and previews",
            metadata={**metadata, "problems": _listing(problems)},
            allow_retries=False,
        )
    context.log.info(f"artifacts verified: {audit.rows_checked} rows, {audit.files_seen} files")
    context.add_output_metadata(metadata)
    return audit.to_dict()


@dg.job(description="Verify every stored file against its artifact row.")
def artifacts_verify_job():
    verify_artifacts_op()


artifacts_verify_schedule = dg.ScheduleDefinition(
    name="artifacts_verify_schedule",
    job=artifacts_verify_job,
    cron_schedule="0 4 * * 0",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Verifies files against their artifact rows every Sunday at 04:00 UTC.",
)
