"""Previews of a photo or of a face in it: a 400 px thumbnail and an 800 px web copy (progressive
JPEG, never enlarged), and a blurhash a page paints before the image arrives. Read through the
same limits as every photo (image_files._read), so a broken or huge file is ImageRejected."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import blurhash
import numpy as np
from PIL import Image

from facerec_pipeline.core.images.image_files import ImageRejected, open_image

THUMBNAIL_SIDE = 400
WEB_SIDE = 800
JPEG_QUALITY = 82
# Around a face box: this share of its side on each side, so hair and chin show.
FACE_MARGIN = 0.35
# blurhash: 4x3 components from a 16 px copy. The package is pure Python and its cost grows with
# pixels x components: 8.5 ms from 32 px, 2.2 ms from 16 px for a hash that differs only in its
# last digits (measured on the astronaut photo, 2026-11-24): the placeholder looks the same.
BLURHASH_COMPONENTS = (4, 3)
BLURHASH_SOURCE_SIDE = 16


@dataclass(frozen=True)
class Preview:
    data: bytes
    width: int
    height: int


@dataclass(frozen=True)
class Previews:
    thumbnail: Preview
    web: Preview
    blurhash: str


def parameters(side: int, box: tuple[int, int, int, int] | None = None) -> dict:
    """What makes a preview, as its artifact row records it."""
    made = {"max_side": side, "format": "jpeg", "quality": JPEG_QUALITY, "progressive": True}
    if box is not None:
        made.update(subject="face", box=list(box), margin=FACE_MARGIN)
    return made


def _jpeg(image: Image.Image, side: int) -> Preview:
    copy = image.copy()
    copy.thumbnail((side, side), Image.Resampling.LANCZOS)  # never enlarges
    buffer = io.BytesIO()
    copy.save(buffer, "JPEG", quality=JPEG_QUALITY, progressive=True, optimize=True)
    return Preview(buffer.getvalue(), copy.width, copy.height)


def face_region(image: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    x, y, w, h = box
    pad_x, pad_y = round(w * FACE_MARGIN), round(h * FACE_MARGIN)
    left, top = max(0, x - pad_x), max(0, y - pad_y)
    right, bottom = min(image.width, x + w + pad_x), min(image.height, y + h + pad_y)
    if right <= left or bottom <= top:
        raise ValueError(f"face box {box} lies outside the {image.width}x{image.height} photo")
    return image.crop((left, top, right, bottom))


def blurhash_of(image: Image.Image) -> str:
    small = image.copy()
    small.thumbnail((BLURHASH_SOURCE_SIDE, BLURHASH_SOURCE_SIDE), Image.Resampling.BILINEAR)
    return blurhash.encode(np.asarray(small), *BLURHASH_COMPONENTS)


def previews_or_error(_engine, job: tuple[Path, tuple | None]) -> Previews | str:
    """make_previews for a worker process (WorkerPool.map passes its engine, unused here): the
    previews, or the error as text (one broken photo must not stop the others)."""
    try:
        return make_previews(*job)
    except (ImageRejected, OSError, ValueError) as error:
        return f"{type(error).__name__}: {error}"


def make_previews(path: Path, box: tuple[int, int, int, int] | None = None) -> Previews:
    """The thumbnail, web copy and blurhash of the photo at `path`, or of the face `box`
    (x, y, w, h in the upright photo's pixels) in it."""
    image = open_image(path)
    if box is not None:
        image = face_region(image, box)
    thumbnail = _jpeg(image, THUMBNAIL_SIDE)
    return Previews(thumbnail, _jpeg(image, WEB_SIDE), blurhash_of(image))


def preview_path(previews_dir: Path, image_sha256: str, made: dict) -> Path:
    """Content-addressed: the photo's sha256 and a digest of what made the preview."""
    digest = hashlib.sha256(json.dumps(made, sort_keys=True).encode()).hexdigest()[:12]
    return previews_dir / image_sha256[:2] / f"{image_sha256}_{made['max_side']}_{digest}.jpg"
