"""The photos `make bench` measures on: the packaged test photos, scikit-image's astronaut, a
mirrored copy of each, and variants of them (turned, cropped, re-encoded)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from bench.common import REPO
from facerec_pipeline.app.sample import astronaut_png, fetch_test_images

PEOPLE = {"obama": "obama", "32bit": "obama", "biden": "biden", "astronaut": "collins"}


def photo_set(work: Path) -> list[Path]:
    """The packaged photos, scikit-image's astronaut, and a mirrored copy of each (1-2 MP)."""
    images = fetch_test_images(REPO / ".cache" / "test_images")
    photos = sorted(images.glob("*.*")) + [astronaut_png(work / "astronaut.png")]
    for path in list(photos):
        mirrored = work / f"{path.stem}_mirrored.jpg"
        Image.open(path).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirrored)
        photos.append(mirrored)
    return photos


def variant_photos(bases: list[Path], count: int, out: Path, seed: int) -> list[Path]:
    """`count` new photos made from `bases` in turn: mirrored at random, turned up to 8 degrees,
    cropped to 80-95%, re-encoded. Named <base>_v<n>.jpg, so person_of() still applies."""
    import random

    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for number in range(count):
        base = bases[number % len(bases)]
        image = Image.open(base).convert("RGB")
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        image = image.rotate(rng.uniform(-8, 8), resample=Image.Resampling.BICUBIC)
        width, height = image.size
        zoom = rng.uniform(0.80, 0.95)
        crop_w, crop_h = int(width * zoom), int(height * zoom)
        left, top = rng.randint(0, width - crop_w), rng.randint(0, height - crop_h)
        image = image.crop((left, top, left + crop_w, top + crop_h))
        made.append(out / f"{base.stem}_v{number:04d}.jpg")
        image.save(made[-1], quality=rng.randint(80, 95))
    return made


def add_variants(
    by_person: dict[str, list[Path]], total: int, folder: Path, seed: int, prefix: str = ""
) -> None:
    """`total` variant photos shared out over folder/<person>/, named <prefix><variant name>."""
    for number, (person, mine) in enumerate(sorted(by_person.items())):
        share = total // len(by_person) + (number < total % len(by_person))
        incoming = folder / person / "incoming"
        for made in variant_photos(mine, share, incoming, seed=seed + number):
            made.rename(folder / person / f"{prefix}{made.name}")
        incoming.rmdir()


def person_of(path: Path) -> str:
    stem = path.stem.split("_")[0]
    return PEOPLE.get(stem, "obama" if stem.startswith("obama") else stem)
