"""A gallery version's report: a markdown summary, a plot (genuine against impostor distances,
faces per person, rejections by reason) and a contact sheet of accepted and rejected faces.
Written to storage/reports/{domain}/gallery_vNNNN/. No Dagster here."""

from __future__ import annotations

import base64
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from facerec_pipeline.core.artifacts.store import (
    GALLERY_REPORT,
    ArtifactKey,
    ArtifactStore,
    fill_bytes,
)
from facerec_pipeline.core.images.image_files import ImageRejected, thumbnail

THUMB = 96
SHEET_COLUMNS = 8


@dataclass(frozen=True)
class SheetItem:
    path: Path
    caption: str


PANEL_W, PANEL_H, MARGIN = 320, 300, 28
SAME, OTHER, REJECTED = (31, 119, 180), (255, 127, 14), (214, 39, 40)


def distance_plot_png(
    genuine: np.ndarray,
    impostor: np.ndarray,
    labels: list[str],
    rejections: dict[str, int],
) -> bytes:
    """Three panels drawn with PIL (no plotting library to import on every version): each
    face's nearest same-person and nearest other-person distance, faces per person (top 20),
    rejections."""
    genuine, impostor = genuine[np.isfinite(genuine)], impostor[np.isfinite(impostor)]
    top = max([0.2, *(float(np.quantile(v, 0.99)) for v in (genuine, impostor) if len(v))])
    edges = np.linspace(0, top, 41)
    image = Image.new("RGB", (3 * PANEL_W, PANEL_H), "white")
    draw = ImageDraw.Draw(image)
    _histogram_panel(draw, 0, edges, genuine, impostor)
    people = Counter(labels).most_common(20)
    _bar_panel(draw, PANEL_W, "Faces per person (top 20)", people, SAME)
    reasons = sorted(rejections.items(), key=lambda kv: -kv[1])
    _bar_panel(draw, 2 * PANEL_W, "Rejections by reason", reasons, REJECTED)
    return _png(image)


def _histogram_panel(draw, left, edges, same, other) -> None:
    draw.text((left + MARGIN, 4), "Nearest same person vs nearest other", fill="black")
    width, height = PANEL_W - 2 * MARGIN, PANEL_H - 2 * MARGIN
    base = PANEL_H - MARGIN
    counts = [
        np.histogram(np.minimum(values, edges[-1]), bins=edges)[0] for values in (same, other)
    ]
    tallest = max(1, max(int(c.max()) if len(c) else 0 for c in counts))
    bar = width / (len(edges) - 1)
    for values, color in zip(counts, (SAME, OTHER), strict=True):
        for index, count in enumerate(values):
            if count:
                x = left + MARGIN + index * bar
                draw.rectangle(
                    (x, base - height * count / tallest, x + bar - 1, base), outline=color
                )
    draw.line((left + MARGIN, base, left + MARGIN + width, base), fill="black")
    draw.text((left + MARGIN, base + 4), f"0  cosine distance  {edges[-1]:.2f}", fill="black")
    draw.text((left + MARGIN + 4, 18), "same person", fill=SAME)
    draw.text((left + MARGIN + 90, 18), "different people", fill=OTHER)


def _bar_panel(draw, left, title, items, color) -> None:
    draw.text((left + MARGIN, 4), title, fill="black")
    if not items:
        return
    label_w, row_h = 110, (PANEL_H - 2 * MARGIN) / max(len(items), 1)
    longest = max(number for _, number in items) or 1
    for index, (name, number) in enumerate(items):
        y = MARGIN + index * row_h
        draw.text((left + 4, y), str(name)[:18], fill="black")
        length = (PANEL_W - label_w - MARGIN) * number / longest
        draw.rectangle((left + label_w, y + 1, left + label_w + length, y + row_h - 2), fill=color)
        draw.text((left + label_w + length + 3, y), str(number), fill="black")


def contact_sheet_png(accepted: list[SheetItem], rejected: list[SheetItem]) -> bytes:
    rows = []
    for title, items in (("accepted", accepted), ("rejected", rejected)):
        if items:
            rows.append((title, items[: SHEET_COLUMNS * 2]))
    cell_h = THUMB + 14
    height = sum(18 + cell_h * -(-len(items) // SHEET_COLUMNS) for _, items in rows) or 20
    sheet = Image.new("RGB", (SHEET_COLUMNS * (THUMB + 4), height), "white")
    draw = ImageDraw.Draw(sheet)
    y = 0
    for title, items in rows:
        draw.text((4, y + 2), title, fill="black")
        y += 18
        for index, item in enumerate(items):
            x = (index % SHEET_COLUMNS) * (THUMB + 4)
            top = y + (index // SHEET_COLUMNS) * cell_h
            sheet.paste(_tile(item.path), (x, top))
            draw.text((x + 1, top + THUMB), item.caption[:16], fill="black")
        y += cell_h * -(-len(items) // SHEET_COLUMNS)
    return _png(sheet)


def _tile(path: Path) -> Image.Image:
    """The photo's thumbnail, or a grey placeholder naming why it cannot be shown: one bad file
    (missing, corrupt, a decompression bomb) never stops the report."""
    try:
        return thumbnail(path, THUMB)
    except ImageRejected as rejected:
        problem = rejected.reason
    except OSError:
        problem = "missing_file"
    tile = Image.new("RGB", (THUMB, THUMB), (200, 200, 200))
    draw = ImageDraw.Draw(tile)
    draw.line((0, 0, THUMB - 1, THUMB - 1), fill=(160, 160, 160))
    draw.line((0, THUMB - 1, THUMB - 1, 0), fill=(160, 160, 160))
    draw.text((3, THUMB // 2 - 6), problem[:16], fill="black")
    return tile


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def inline_jpeg(path: Path, side: int, alt: str) -> str:
    """A small inline copy of a stored picture (markdown), or a note when it cannot be read."""
    try:
        image = thumbnail(path, side)
    except (ImageRejected, OSError) as error:
        return f"({type(error).__name__})"
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return f"![{alt}](data:image/jpeg;base64,{base64.b64encode(buffer.getvalue()).decode()})"


def inline_png(data: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(data).decode()})"


def write_report(
    target: Path,
    summary: str,
    plot: bytes,
    sheet: bytes,
    artifacts: ArtifactStore,
    domain: str,
    version: int,
) -> dict[str, Path]:
    """The version's report (markdown, distance plot, contact sheet), each file with its row."""
    contents = {
        "report": (
            "report.md",
            f"{summary}\n\n![distances](distances.png)\n\n"
            "![contact sheet](contact_sheet.png)\n".encode(),
        ),
        "plot": ("distances.png", plot),
        "contact_sheet": ("contact_sheet.png", sheet),
    }
    files = {}
    with artifacts.batch():
        for part, (name, data) in contents.items():
            key = ArtifactKey(
                domain, GALLERY_REPORT, None, {"version": version, "file": name}, version
            )
            files[part] = artifacts.put(target / name, key, fill_bytes(data)).path
    return files


def curve_plot_png(curve: list[dict], operating: tuple[float, float] | None) -> bytes:
    """DIR against FAR (log scale from 0.1%), with the operating point measured."""
    width, height, margin = 420, 320, 40
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((margin, 6), "DIR (right name given) against FAR (stranger named)", fill="black")
    left, right, top, bottom = margin, width - 14, 26, height - margin

    def point(far: float, dir_: float) -> tuple[float, float]:
        x = (np.log10(max(far, 1e-3)) + 3) / 3  # 0.1% .. 100%
        return left + x * (right - left), bottom - dir_ * (bottom - top)

    draw.rectangle((left, top, right, bottom), outline="black")
    for far in (0.001, 0.01, 0.1, 1.0):
        x, _ = point(far, 0)
        draw.line((x, bottom, x, bottom + 4), fill="black")
        draw.text((x - 12, bottom + 6), f"{far:.1%}", fill="black")
    for dir_ in (0.0, 0.5, 1.0):
        _, y = point(1, dir_)
        draw.text((4, y - 6), f"{dir_:.1f}", fill="black")
    line = [point(p["far"], p["dir"]) for p in curve]
    if len(line) > 1:
        draw.line(line, fill=SAME, width=2)
    if operating is not None:
        x, y = point(*operating)
        draw.ellipse((x - 4, y - 4, x + 4, y + 4), outline=REJECTED, width=2)
        draw.text((x + 6, y + 4), "operating point", fill=REJECTED)
    draw.text((left + 4, bottom - 16), "FAR (log)", fill="black")
    return _png(image)
