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
from PIL import Image, ImageDraw, ImageOps

THUMB = 96
SHEET_COLUMNS = 8


@dataclass(frozen=True)
class SheetItem:
    path: Path
    caption: str


PANEL_W, PANEL_H, MARGIN = 320, 300, 28
SAME, OTHER, REJECTED = (31, 119, 180), (255, 127, 14), (214, 39, 40)


def distance_plot_png(
    vectors: np.ndarray, labels: list[str], threshold: float, rejections: dict[str, int]
) -> bytes:
    """Three panels drawn with PIL (no plotting library to import on every version): genuine
    against impostor distances with the threshold, faces per person (top 20), rejections."""
    label_array = np.asarray(labels)
    distances = 1.0 - vectors @ vectors.T
    upper = np.triu_indices(len(labels), k=1)
    same = (label_array[:, None] == label_array[None, :])[upper]
    pairs = distances[upper]
    top = max(0.4, float(pairs.max()) if len(pairs) else 0.4)
    edges = np.linspace(0, top, 41)
    image = Image.new("RGB", (3 * PANEL_W, PANEL_H), "white")
    draw = ImageDraw.Draw(image)
    _histogram_panel(draw, 0, edges, pairs[same], pairs[~same], threshold)
    people = Counter(labels).most_common(20)
    _bar_panel(draw, PANEL_W, "Faces per person (top 20)", people, SAME)
    reasons = sorted(rejections.items(), key=lambda kv: -kv[1])
    _bar_panel(draw, 2 * PANEL_W, "Rejections by reason", reasons, REJECTED)
    return _png(image)


def _histogram_panel(draw, left, edges, same, other, threshold) -> None:
    draw.text((left + MARGIN, 4), "Genuine vs impostor distances", fill="black")
    width, height = PANEL_W - 2 * MARGIN, PANEL_H - 2 * MARGIN
    base = PANEL_H - MARGIN
    counts = [np.histogram(values, bins=edges)[0] for values in (same, other)]
    tallest = max(1, max(int(c.max()) if len(c) else 0 for c in counts))
    bar = width / (len(edges) - 1)
    for values, color in zip(counts, (SAME, OTHER), strict=True):
        for index, count in enumerate(values):
            if count:
                x = left + MARGIN + index * bar
                draw.rectangle(
                    (x, base - height * count / tallest, x + bar - 1, base), outline=color
                )
    x = left + MARGIN + width * min(threshold / edges[-1], 1.0)
    draw.line((x, base - height, x, base), fill="black", width=1)
    draw.line((left + MARGIN, base, left + MARGIN + width, base), fill="black")
    draw.text((left + MARGIN, base + 4), f"0  cosine distance  {edges[-1]:.2f}", fill="black")
    draw.text((x + 3, base - height), f"threshold {threshold}", fill="black")
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
            try:
                with Image.open(item.path) as image:
                    thumb = ImageOps.fit(image.convert("RGB"), (THUMB, THUMB))
            except OSError:
                thumb = Image.new("RGB", (THUMB, THUMB), (200, 200, 200))
            sheet.paste(thumb, (x, top))
            draw.text((x + 1, top + THUMB), item.caption[:16], fill="black")
        y += cell_h * -(-len(items) // SHEET_COLUMNS)
    return _png(sheet)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def inline_png(data: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(data).decode()})"


def write_report(target: Path, summary: str, plot: bytes, sheet: bytes) -> dict[str, Path]:
    target.mkdir(parents=True, exist_ok=True)
    files = {"report": target / "report.md", "plot": target / "distances.png",
             "contact_sheet": target / "contact_sheet.png"}  # fmt: skip
    files["plot"].write_bytes(plot)
    files["contact_sheet"].write_bytes(sheet)
    files["report"].write_text(
        f"{summary}\n\n![distances](distances.png)\n\n![contact sheet](contact_sheet.png)\n"
    )
    return files
