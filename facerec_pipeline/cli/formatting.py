"""Every table and figure the commands print, as text (the commands echo it)."""

from __future__ import annotations

from typing import Any

from tabulate import tabulate

from facerec_pipeline.core.gallery.open_set import OperatingPoint, described_briefly


def key_value_table(info: dict[str, Any]) -> str:
    """One row per key (`domains show`)."""
    return tabulate([[key, value] for key, value in info.items()])


def domains_table(rows: list[dict[str, Any]]) -> str:
    """`domains list`."""
    return tabulate(
        [
            [
                r["code"],
                r["name"],
                r["source"],
                r["face_model"],
                "yes" if r["is_active"] else "no",
                ",".join(r["inherit_from"]),
            ]
            for r in rows
        ],
        headers=["code", "name", "source", "model", "active", "inherits"],
    )


def backfill_table(outcomes: list[list[Any]]) -> str:
    """`backfill`: one row per domain, [code, result, run id, failures]."""
    return tabulate(outcomes, headers=["domain", "result", "run", "failure"])


def history_table(rows: list[dict[str, Any]], code: str) -> str:
    """`history`: the domain's recent runs, or a line saying it has none."""
    from facerec_pipeline.app.run_history import stage_summary

    if not rows:
        return f"no runs of {code!r} yet"
    return tabulate(
        [
            [
                r["started_at"][:19],
                r["status"],
                r["run_id"][:8],
                stage_summary(r["counts"]),
                sum(r["rejects_by_reason"].values()),
                r["estimated_serp_cost"],
                r["seconds"],
                (r["error"] or "")[:60],
            ]
            for r in rows
        ],
        headers=["started", "status", "run", "counts", "rejects", "serp $", "seconds", "error"],
    )


def operating_point_text(point: dict | None) -> str:
    if not point:
        return "none (built before open-set recognition)"
    return described_briefly(OperatingPoint.from_dict(point))


def versions_table(versions: list[dict[str, Any]], code: str) -> str:
    """`gallery list`: every version of the domain's gallery, or a line saying it has none."""
    if not versions:
        return f"domain {code!r} has no gallery yet"
    return tabulate(
        [
            [
                v["version"],
                v["status"]
                + (" (prod)" if v["is_prod"] else "")
                + (" (pinned)" if v["pinned"] else ""),
                v["face_model"],
                v["people"],
                v["faces"],
                v["quarantined"],
                v["loo_top1_accuracy"],
                operating_point_text(v["operating_point"]),
                ",".join(v["failed_checks"]),
                v["published_at"] or "",
            ]
            for v in versions
        ],
        headers=[
            "version",
            "status",
            "model",
            "people",
            "faces",
            "quarantined",
            "loo acc.",
            "operating point",
            "failed checks",
            "published",
        ],
    )


def faces_table(result: dict[str, Any]) -> str | None:
    """`recognize`: the faces found in one image (None when there are none)."""
    table = []
    for number, face in enumerate(result["faces"], start=1):
        who = face["identity"]
        box = face["box"]
        decision = face["decision"]
        table.append(
            [
                number,
                f"{box['x']},{box['y']} {box['w']}x{box['h']}",
                f"{who['person']} ({who['domain']})" if who else "unknown",
                f"{who['distance']:.3f}" if who else "",
                f"{decision['score']:.4f} (accept <= {decision['threshold']:.4f})",
                ", ".join(f"{m['person']} {m['distance']:.3f}" for m in face["matches"][:3]),
            ]
        )
    if not table:
        return None
    return tabulate(table, headers=["face", "box", "identity", "distance", "score", "nearest"])


def evaluation_tables(figures: dict[str, Any]) -> list[str]:
    """`evaluate`: the figures, then the DIR-against-FAR curve when there is one."""
    rows = [[key, value] for key, value in figures.items() if key not in ("curve",)]
    tables = [tabulate(rows)]
    if figures.get("curve"):
        tables.append(
            tabulate(
                [[p["far_limit"], p["far"], p["dir"]] for p in figures["curve"]],
                headers=["FAR at most", "FAR", "DIR"],
            )
        )
    return tables


def stats_table(item: dict[str, Any]) -> str:
    """`stats`: one domain's counts, rejections and production gallery."""
    gallery = item["production_gallery"]
    month = f"{item['serp_spent_this_month']} of {item['serp_budget_per_month']} USD"
    rows = [
        ["people", item["people"]],
        ["people without an accepted face", item["people_without_accepted_face"]],
        ["images by source", item["images_by_source"]],
        ["free image share", item["free_image_share"]],
        ["estimated paid search cost saved", item["estimated_cost_saved"]],
        ["people below the photo target", item["people_below_target"]],
        ["paid search cost by month", item["serp_cost_by_month"]],
        ["paid search this month", month],
        ["wikidata ids on two people", item["duplicate_wikidata_ids"]],
        ["source skips by reason", item["source_skips_by_reason"]],
        ["faces accepted", item["faces_accepted"]],
        ["rejections by reason", item["rejections_by_reason"]],
    ]
    if gallery:
        rows += [
            ["gallery version", gallery["version"]],
            ["gallery people / faces", f"{gallery['people']} / {gallery['faces']}"],
            ["quarantined", gallery["quarantined"]],
            ["evaluation", gallery["evaluation"]],
            ["operating point", operating_point_text(gallery["operating_point"])],
        ]
    else:
        rows.append(["gallery", "none published yet"])
    return tabulate(rows)


def skips_table(rows: list[dict[str, Any]]) -> str:
    """`skips`: what was left out of the domain's gallery, and why."""
    return tabulate(
        [
            [
                r["stage"],
                r["person"],
                r["item"] or "",
                r["reason"],
                (r["detail"] or "")[:80],
            ]
            for r in rows
        ],
        headers=["stage", "person", "item", "reason", "detail"],
    )


def clients_table(clients: list) -> str:
    if not clients:
        return "no clients yet: `facerec clients add NAME --domain CODE` issues a token"
    return tabulate(
        [
            [
                c.name,
                c.domain,
                "active" if c.active else "revoked",
                f"{c.created_at:%Y-%m-%d %H:%M}",
                f"{c.revoked_at:%Y-%m-%d %H:%M}" if c.revoked_at else "",
            ]
            for c in clients
        ],
        headers=["client", "domain", "token", "created", "revoked"],
    )


def artifacts_table(counts: list) -> str:
    """Files and bytes per domain and stage."""
    rows = [
        (domain, stage, files, f"{(size or 0) / 1e6:.1f} MB")
        for domain, stage, files, size in counts
    ]
    return tabulate(rows, headers=["domain", "stage", "files", "size"])


def models_table(rows: list[dict[str, Any]]) -> str:
    """`models list`: each face model, whether its weights are in place, licences, origin."""
    return tabulate(
        [
            [
                row["model"] + (" (default)" if row["default"] else ""),
                "installed" if row["weights"] == "installed" else "missing",
                "; ".join(row["licences"]),
                ", ".join(sorted({f["from"] for f in row["files"]})),
                ", ".join(row["domains"]) or "-",
            ]
            for row in rows
        ],
        headers=["model", "weights", "licences", "from", "domains"],
    )
