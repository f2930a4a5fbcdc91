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


def distance_plot_png(
    vectors: np.ndarray, labels: list[str], threshold: float, rejections: dict[str, int]
) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    label_array = np.asarray(labels)
    distances = 1.0 - vectors @ vectors.T
    upper = np.triu_indices(len(labels), k=1)
    same = (label_array[:, None] == label_array[None, :])[upper]
    pairs = distances[upper]
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    bins = np.linspace(0, max(0.4, float(pairs.max()) if len(pairs) else 0.4), 40)
    axes[0].hist(pairs[same], bins=bins, alpha=0.7, label="same person")
    axes[0].hist(pairs[~same], bins=bins, alpha=0.7, label="different people")
    axes[0].axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold}")
    axes[0].set(title="Genuine vs impostor distances", xlabel="cosine distance")
    axes[0].legend(fontsize=8)
    counts = Counter(labels).most_common(20)
    axes[1].barh([name for name, _ in counts][::-1], [n for _, n in counts][::-1])
    axes[1].set(title="Faces per person (top 20)")
    axes[1].tick_params(axis="y", labelsize=7)
    if rejections:
        names, numbers = zip(*sorted(rejections.items(), key=lambda kv: kv[1]), strict=True)
        axes[2].barh(names, numbers, color="tab:red")
    axes[2].set(title="Rejections by reason")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return buffer.getvalue()


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
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
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
