"""production_gallery: serve the newest gallery version of a domain once its blocking checks
passed (the one publishing step, promotion.publish_passed), or say why it is not served."""

from facerec_pipeline.app.domains import list_domains
from facerec_pipeline.app.promotion import (
    CHECK_NAMES,
    failed_checks_message,
    latest_version,
    publish_passed,
)
from facerec_pipeline.app.stages.stage_run import (
    FilePath,
    Markdown,
    StageFailed,
    StageResult,
    StageRun,
    version_label,
)
from facerec_pipeline.core.gallery.publish import serving_row


def serving_table(session) -> str:
    """Markdown: the version serving each domain, and whether a rollback pins it."""
    rows = ["| domain | serving | pinned by a rollback |", "|---|---|---|"]
    for domain in list_domains(session):
        row = serving_row(session, domain.code)
        if row is not None:
            pinned = f"yes, v{domain.pinned_version}" if domain.pinned_version else "no"
            rows.append(f"| {domain.code} | v{row.version} | {pinned} |")
    return "\n".join(rows)


def build_production_gallery(run: StageRun) -> StageResult:
    """Point storage/recognized_faces_prod/{domain}/ at the newest version once its checks
    passed; nothing changes when it already serves or a rollback pins another."""
    code, settings = run.domain, run.settings
    with run.session() as session:
        candidate = latest_version(session, code)
        if candidate is None:
            raise StageFailed(f"domain {code!r} has no gallery version")
        current = serving_row(session, code)
        checks = candidate.checks or {}
        failed = sorted(name for name, result in checks.items() if not result["passed"])
        if candidate.status == "rejected" or failed or set(checks) != set(CHECK_NAMES):
            raise StageFailed(
                f"gallery v{candidate.version} of {code!r} is not promoted: "
                f"{failed_checks_message(candidate)}. Production keeps "
                + (f"v{current.version}" if current else "no version")
                + f"; after changing settings, `facerec gallery recheck --domain {code}`"
            )
        done = publish_passed(session, settings, candidate)
        serving = serving_table(session)
    for change in done.pointer_changes:
        run.log.warning(f"production_gallery[{code}]: pointer rewritten: {change}")
    if done.published:
        outcome = "published"
    else:
        outcome = f"keeps serving: {done.pinned}" if done.pinned else "already serving"
    run.log.info(f"production_gallery[{code}]: v{done.serving} {outcome}")
    return StageResult(
        None,
        {
            "gallery_version": version_label(code, done.serving),
            "published_this_run": done.published,
            "pinned": done.pinned or "no",
            "serving": Markdown(serving),
            "pointer": FilePath(str(settings.prod_dir(code) / "gallery.json")),
        },
    )
