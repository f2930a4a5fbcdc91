"""The recognizer: loads a domain's production gallery (and those of the domains it inherits)
and names the faces in a photo. No Dagster here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from facerec_pipeline.face_engine.engine import FaceEngine, l2_normalize
from facerec_pipeline.gallery.publish import LoadedGallery, load_batches, read_prod_pointer
from facerec_pipeline.raw_images.image_files import load_rgb
from facerec_pipeline.recognition.search_index import nearest_rows
from facerec_pipeline.settings import Settings


class NoGallery(LookupError):
    pass


def load_prod_gallery(settings: Settings, domain: str) -> LoadedGallery:
    pointer = read_prod_pointer(settings.prod_dir(domain))
    if pointer is None:
        raise NoGallery(
            f"domain {domain!r} has no production gallery yet: run `facerec run --domain {domain}`"
        )
    return load_batches(
        settings.storage_dir, domain, int(pointer["version"]), pointer["model_config"],
        pointer["batches"],
    )  # fmt: skip


def top_matches(gallery: LoadedGallery, query: np.ndarray, k: int) -> list[dict[str, Any]]:
    """Best distance per person, the k nearest people, nearest first."""
    distances, rows = nearest_rows(gallery.matrix, gallery.index, query, max(8 * k, 32))
    matches: list[dict[str, Any]] = []
    seen: set[int] = set()
    for distance, row in zip(distances, rows, strict=True):
        person_index = int(gallery.person_rows[row])
        if person_index in seen:
            continue
        seen.add(person_index)
        person = gallery.people[person_index]
        matches.append(
            {
                "person": person["person"],
                "normalized_name": person["normalized_name"],
                "wikidata_id": person.get("wikidata_id"),
                "domain": gallery.domain,
                "distance": round(float(distance), 5),
            }
        )
        if len(matches) == k:
            break
    return matches


class Recognizer:
    def __init__(
        self, galleries: list[LoadedGallery], engine: FaceEngine, top_k: int = 5,
        settings: Settings | None = None,
    ):  # fmt: skip
        if not galleries:
            raise NoGallery("no gallery to search")
        self.settings = settings  # given: galleries reload when a new version is published
        configs = {gallery.model_config for gallery in galleries}
        if configs != {engine.config.model_key}:
            raise ValueError(
                f"gallery model configuration {sorted(configs)} does not match the engine's "
                f"{engine.config.model_key}; rebuild the gallery or configure the engine to match"
            )
        self.galleries = galleries
        self.engine = engine
        self.top_k = top_k
        self.threshold = engine.config.threshold

    @classmethod
    def for_domains(
        cls, settings: Settings, domains: list[str], engine: FaceEngine, top_k: int = 5
    ) -> Recognizer:
        """The first domain's production gallery (required), then those of the domains it
        inherits that have one (`skipped` names the others)."""
        galleries = [load_prod_gallery(settings, domains[0])]
        skipped = []
        for domain in domains[1:]:
            try:
                galleries.append(load_prod_gallery(settings, domain))
            except NoGallery:
                skipped.append(domain)
        recognizer = cls(galleries, engine, top_k, settings)
        recognizer.skipped = skipped
        return recognizer

    def refresh(self) -> list[str]:
        """Reload every gallery whose production pointer names another version; returns the
        domains reloaded. Costs one small file read per domain."""
        if self.settings is None:
            return []
        reloaded = []
        for position, gallery in enumerate(self.galleries):
            pointer = read_prod_pointer(self.settings.prod_dir(gallery.domain))
            if pointer is not None and int(pointer["version"]) != gallery.version:
                self.galleries[position] = load_prod_gallery(self.settings, gallery.domain)
                reloaded.append(gallery.domain)
        return reloaded

    def identify(self, vector: np.ndarray) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """Search the galleries in order; the first whose best match is within the threshold
        decides. Matches from every gallery are returned, nearest first."""
        identity = None
        matches: list[dict[str, Any]] = []
        for gallery in self.galleries:
            found = top_matches(gallery, vector, self.top_k)
            matches.extend(found)
            if identity is None and found and found[0]["distance"] <= self.threshold:
                identity = found[0]
        matches.sort(key=lambda match: match["distance"])
        return identity, matches[: self.top_k]

    def recognize_image(self, path: Path) -> dict[str, Any]:
        self.refresh()
        faces = self.engine.detect(load_rgb(path))
        vectors = l2_normalize(self.engine.embed([face.crop_bgr for face in faces]))
        results = []
        for face, vector in zip(faces, vectors, strict=True):
            identity, matches = self.identify(vector)
            results.append(
                {
                    "box": {"x": face.x, "y": face.y, "w": face.w, "h": face.h},
                    "confidence": round(face.confidence, 4),
                    "identity": identity,
                    "matches": matches,
                }
            )
        return {"image": str(path), "faces": results}
