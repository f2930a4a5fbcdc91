"""Reading photos safely: content hashes, a perceptual hash, size limits and a clear reason for
anything that is not a usable image. No Dagster here."""

from __future__ import annotations

import io
import json
import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image, ImageOps

from facerec_pipeline.core.files import sha256_file, write_atomically

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_IMAGE_PIXELS = 60_000_000
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# Downloads land here (in the domain's photo folder) until their content is known.
INCOMING_DIR = ".incoming"
EXIF_ORIENTATION = 0x0112
TURNED = (5, 6, 7, 8)  # orientations that swap width and height
MIME_BY_FORMAT = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "GIF": "image/gif",
    "TIFF": "image/tiff",
    "MPO": "image/jpeg",
}


class ImageRejected(Exception):
    """The file is not a usable photo. `reason` is the recorded rejection reason; str() gives
    "reason: detail"."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ImageFacts:
    sha256: str
    file_size: int
    width: int | None = None
    height: int | None = None
    mime: str | None = None
    perceptual_hash: str | None = None
    rejection_reason: str | None = None
    rejection_detail: str | None = None


def _read(path: Path | bytes, max_side: int | None = None) -> tuple[Image.Image, str | None, float]:
    """The one place that decodes an image (a file, or its bytes): byte and pixel limits
    checked before decoding, fully decoded, upright (EXIF). With `max_side`, a larger photo is
    decoded at reduced size where the format allows (JPEG's DCT scaling, 1/2 to 1/8: the
    full-size pixels are never held) and otherwise reduced by an integer factor right after
    decoding, to at most `max_side` (at least max_side / 2) on its longer side. Returns the
    image, its format and the factor from its pixels back to the photo's own (1.0 at full
    size). Anything unusable becomes ImageRejected; only a missing file stays
    FileNotFoundError."""
    in_memory = isinstance(path, bytes)
    size = len(path) if in_memory else path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ImageRejected("image_too_large", f"{size} bytes (limit {MAX_FILE_BYTES})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(path) if in_memory else path) as image:
                if image.width * image.height > MAX_IMAGE_PIXELS:
                    raise ImageRejected(
                        "image_too_large",
                        f"{image.width}x{image.height} pixels (limit {MAX_IMAGE_PIXELS})",
                    )
                image_format = image.format
                stored = image.size
                longer = max(image.width, image.height)
                if max_side and longer > max_side:
                    wanted = (image.width * max_side // longer, image.height * max_side // longer)
                    image.draft(None, wanted)  # JPEG only; other formats ignore it
                image.load()
                turned = image.getexif().get(EXIF_ORIENTATION) in TURNED
                ImageOps.exif_transpose(image, in_place=True)  # no copy of an upright photo
                upright = image
                if max_side and max(upright.size) > max_side:
                    upright = upright.reduce(-(-max(upright.size) // max_side))
                scale = (stored[1] if turned else stored[0]) / upright.width
    except ImageRejected:
        raise
    except FileNotFoundError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageRejected("image_too_large", str(error)) from error
    except Exception as error:  # a malformed file can trip any error inside a decoder
        said = re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "the photo", str(error))
        raise ImageRejected("unreadable_image", f"{type(error).__name__}: {said}") from error
    return upright, image_format, scale


def open_image(path: Path) -> Image.Image:
    """Open, size-check and fully decode an image; upright (EXIF) and RGB."""
    image, _, _ = _read(path)
    return _rgb(image)


def _rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        return _wide_grey(image)
    if image.mode in ("RGBA", "LA", "P", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _wide_grey(image: Image.Image) -> Image.Image:
    """A grey image of more than 8 bits a sample (16-bit PNG or TIFF: "I;16", "I"; float: "F")
    brought to 8 bits over its range: Pillow's own conversion clips every value above 255 to
    white, which leaves no face to find. 16-bit modes span 0-65535; a 32-bit integer or float
    image spans 0-255, 0-65535 or its own maximum, whichever holds its values (0-1 for floats
    up to 1)."""
    values = np.asarray(image, dtype=np.float64)
    top = float(values.max()) if values.size else 0.0
    if image.mode.startswith("I;16"):
        span = 65535.0
    elif image.mode == "F" and top <= 1.0:
        span = 1.0
    else:
        span = 255.0 if top <= 255 else 65535.0 if top <= 65535 else top
    grey = np.clip(np.round(values / span * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, "L").convert("RGB")


def load_rgb(path: Path) -> np.ndarray:
    return np.asarray(open_image(path))


def load_rgb_bounded(path: Path | bytes, max_side: int) -> tuple[np.ndarray, float]:
    """The photo (a file, or its bytes) as RGB pixels, at most `max_side` on its longer side
    (decoded at reduced size where the format allows), and the factor from those pixels back to
    the photo's own."""
    image, _, scale = _read(path, max_side)
    return np.asarray(_rgb(image)), scale


def load_bgr(path: Path) -> np.ndarray:
    """load_rgb in OpenCV's channel order (for face crops handed to the engine)."""
    return np.ascontiguousarray(load_rgb(path)[:, :, ::-1])


def thumbnail(path: Path, size: int) -> Image.Image:
    """A size x size RGB thumbnail, through the same limits as every other read."""
    return ImageOps.fit(open_image(path), (size, size))


def difference_hash(image: Image.Image) -> str:
    """64-bit dHash as 16 hex digits: near-identical photos (resized, recompressed) match.
    imagehash's dhash is bit-identical to the hand-written one stored before it (grey, 9x8
    Lanczos, left < right, row-major hex), so stored images.perceptual_hash values stay
    comparable; test_image_files pins this on real photos."""
    return str(imagehash.dhash(image, hash_size=8))


def hamming_distance(hash_a: str, hash_b: str) -> int:
    return imagehash.hex_to_hash(hash_a) - imagehash.hex_to_hash(hash_b)


def inspect_image(path: Path) -> ImageFacts:
    """Facts about a photo file; an unusable one gets its rejection reason instead of an error."""
    sha256 = sha256_file(path)
    file_size = path.stat().st_size
    try:
        decoded, image_format, _ = _read(path)
        image = _rgb(decoded)
    except ImageRejected as rejected:
        return ImageFacts(
            sha256, file_size, None, None, None, None, rejected.reason, rejected.detail
        )
    return ImageFacts(
        sha256=sha256,
        file_size=file_size,
        width=image.width,
        height=image.height,
        mime=MIME_BY_FORMAT.get(image_format or "", "application/octet-stream"),
        perceptual_hash=difference_hash(image),
    )


class InspectionCache:
    """ImageFacts of photo files by path, size and modification time, kept in a JSON file: a
    re-run does not read unchanged files again. A changed, new or touched file is inspected; a
    lost or unreadable cache file only costs one full inspection."""

    def __init__(self, path: Path):
        self.path = path
        self.hits = 0
        self._seen: dict[str, dict] = {}
        try:
            self._entries: dict[str, dict] = json.loads(path.read_text())
        except (OSError, ValueError):
            self._entries = {}

    def inspect(self, photo: Path) -> ImageFacts:
        stat = photo.stat()
        key = str(photo.absolute())
        entry = self._entries.get(key)
        if entry and (entry["size"], entry["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns):
            self.hits += 1
            facts = ImageFacts(**entry["facts"])
        else:
            facts = inspect_image(photo)
        self._seen[key] = {
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "facts": asdict(facts),
        }
        return facts

    def save(self) -> None:
        """Keep the files inspected by this scan only (vanished files drop out)."""
        write_atomically(self.path, json.dumps(self._seen).encode())
