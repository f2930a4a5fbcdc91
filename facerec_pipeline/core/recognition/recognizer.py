"""The recognizer: loads a domain's production gallery (and those of the domains it inherits)
and names the faces in a photo. No Dagster here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from facerec_pipeline.core.faces.engine import EngineConfig, FaceEngine, l2_normalize
from facerec_pipeline.core.gallery.open_set import (
    COHORT,
    NEAREST_SHARE,
    OperatingPoint,
    decision_scores,
    rank_people,
)
from facerec_pipeline.core.gallery.publish import (
    PUBLISHED,
    GalleryDamaged,
    LoadedGallery,
    load_batches,
    pointer_of,
    serving_row,
)
from facerec_pipeline.core.gallery.search_index import nearest_rows
from facerec_pipeline.core.images.image_files import load_rgb
from facerec_pipeline.db.engine import session_scope
from facerec_pipeline.db.models import Gallery
from facerec_pipeline.settings import Settings


class NoGallery(LookupError):
    pass


def stored_engine_config(gallery: LoadedGallery) -> EngineConfig | None:
    """The face configuration a gallery's embeddings were made with, as its batches record it
    (None for versions written before they did)."""
    stored = gallery.batch_metadata[0].get("engine_config") if gallery.batch_metadata else None
    return EngineConfig(**stored) if stored else None


def serving_pointer(settings: Settings, domain: str) -> dict[str, Any] | None:
    """What the database says serves the domain (its production row, as `pointer_of` writes
    it), or None."""
    with session_scope(settings.database_url) as session:
        row = serving_row(session, domain)
        return pointer_of(row) if row is not None else None


def load_version(settings: Settings, pointer: dict[str, Any]) -> LoadedGallery:
    """A version's batches, its files checked against their checksums (GalleryDamaged when one
    is missing or altered), with its calibrated operating point."""
    domain, version = pointer["domain"], int(pointer["version"])
    if not pointer.get("operating_point"):
        raise NoGallery(
            f"v{version} of {domain!r} has no calibrated operating point (it was built before "
            f"open-set recognition): run `facerec run --domain {domain}` to build and publish "
            "a new version"
        )
    gallery = load_batches(
        settings.storage_dir,
        domain,
        version,
        pointer["model_config"],
        pointer["batches"],
        checksums=pointer.get("file_checksums"),
    )
    gallery.operating_point = OperatingPoint.from_dict(pointer["operating_point"])
    gallery.checksums = pointer.get("file_checksums")
    return gallery


def load_prod_gallery(settings: Settings, domain: str) -> LoadedGallery:
    """The version the database says serves (its `production` row; the pointer file is only
    derived from it), its files checked against their checksums."""
    pointer = serving_pointer(settings, domain)
    if pointer is None:
        raise NoGallery(
            f"domain {domain!r} has no production gallery yet: run `facerec run --domain {domain}`"
        )
    return load_version(settings, pointer)


def load_serving_gallery(settings: Settings, domain: str) -> tuple[LoadedGallery, str | None]:
    """The production version; when its files are damaged or missing, the newest version
    served before whose files are intact, with a note saying so (the first error when there is
    none)."""
    try:
        return load_prod_gallery(settings, domain), None
    except (GalleryDamaged, NoGallery) as damaged:
        with session_scope(settings.database_url) as session:
            earlier = [
                pointer_of(row)
                for row in session.scalars(
                    select(Gallery)
                    .where(
                        Gallery.domain == domain,
                        Gallery.status == PUBLISHED,
                        Gallery.operating_point.is_not(None),
                    )
                    .order_by(Gallery.version.desc())
                )
            ]
        for pointer in earlier:
            try:
                gallery = load_version(settings, pointer)
            except GalleryDamaged:
                continue
            return gallery, (
                f"{damaged} Meanwhile v{gallery.version}, the newest intact version served "
                "before, answers."
            )
        raise


ANN_CANDIDATES = 64  # rows an approximate index proposes; their people are then measured exactly


def ranked_people(gallery: LoadedGallery, query: np.ndarray, k: int) -> list[dict[str, Any]]:
    """The k nearest people (at least the decision rule's cohort), nearest first; a person's
    distance is the mean of their nearest faces, as many as the gallery's operating point was
    calibrated with (recognition/open_set.py)."""
    wanted = max(k, 1 + COHORT)
    candidates = None
    if gallery.index is not None:
        candidates = nearest_rows(gallery.matrix, gallery.index, query, ANN_CANDIDATES)[1]
        owners = np.searchsorted(gallery.person_starts, candidates, side="right") - 1
        if len(np.unique(owners)) < min(wanted, len(gallery.people)):
            candidates = None  # a few people own every candidate: the cohort needs the rest
    share = gallery.operating_point.nearest_share if gallery.operating_point else NEAREST_SHARE
    people, distances = rank_people(
        gallery.matrix, gallery.person_starts, query, wanted, candidates, share
    )
    return [
        {
            "person": gallery.people[int(index)]["person"],
            "normalized_name": gallery.people[int(index)]["normalized_name"],
            "wikidata_id": gallery.people[int(index)].get("wikidata_id"),
            "domain": gallery.domain,
            "distance": round(float(distance), 5),
        }
        for index, distance in zip(people, distances, strict=True)
    ]


def decide(gallery: LoadedGallery, ranked: list[dict[str, Any]]) -> dict[str, Any]:
    """The open-set decision on one gallery: the best person, how sure, and whether that is
    enough to name them at the gallery's calibrated operating point."""
    point = gallery.operating_point
    distances = np.asarray([[match["distance"] for match in ranked]], dtype=np.float64)
    score = float(decision_scores(distances)[0])
    cohort = distances[0, 1 : 1 + COHORT]
    return {
        "domain": gallery.domain,
        "gallery_version": gallery.version,
        "best": ranked[0]["normalized_name"],
        "distance": ranked[0]["distance"],
        "margin": round(float(cohort.mean() - distances[0, 0]), 5) if len(cohort) else None,
        "score": round(score, 5),
        "threshold": point.threshold,
        "accepted": bool(score <= point.threshold),
        "target_far": point.target_far,
        "expected_dir": point.expected_dir,
    }


class Recognizer:
    def __init__(
        self,
        galleries: list[LoadedGallery],
        engine: FaceEngine,
        top_k: int = 5,
        settings: Settings | None = None,
    ):
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
        self.skipped: list[str] = []  # inherited domains that cannot serve, and why
        self.notes: list[str] = []  # galleries served in place of a damaged production version

    @classmethod
    def for_domains(
        cls,
        settings: Settings,
        domains: list[str],
        engine: FaceEngine | None = None,
        top_k: int = 5,
        default_config: EngineConfig | None = None,
    ) -> Recognizer:
        """The first domain's production gallery (required), then those of the domains it
        inherits that can serve (`skipped` says why each other one cannot). Without an
        `engine`, one is made with the configuration the first gallery was built with
        (`default_config`, else the defaults, for a gallery that does not record it)."""
        first, note = load_serving_gallery(settings, domains[0])
        if engine is None:
            config = stored_engine_config(first) or default_config or EngineConfig()
            engine = FaceEngine(config, settings.models_dir)
        galleries, notes, skipped = [first], [note] if note else [], []
        for domain in domains[1:]:
            try:
                gallery, note = load_serving_gallery(settings, domain)
            except (NoGallery, GalleryDamaged) as missing:
                skipped.append(str(missing))
                continue
            galleries.append(gallery)
            notes += [note] if note else []
        recognizer = cls(galleries, engine, top_k, settings)
        recognizer.skipped = skipped
        recognizer.notes = notes
        return recognizer

    def refresh(self) -> list[str]:
        """Reload every gallery whose domain the database now says another version serves, or
        whose serving version's files were rewritten in place (an erasure); drop one whose
        domain nothing serves any more. Returns the domains reloaded or dropped. Costs one small
        query per domain. A new version that is damaged is not loaded: the loaded one keeps
        answering, and `notes` says why."""
        if self.settings is None:
            return []
        reloaded, gone = [], []
        for position, gallery in enumerate(self.galleries):
            try:
                pointer = serving_pointer(self.settings, gallery.domain)
                if pointer is None:  # nothing serves the domain any more: it names no one
                    gone.append(gallery)
                    continue
                if (
                    int(pointer["version"]) != gallery.version
                    or pointer.get("file_checksums") != gallery.checksums
                ):
                    if pointer["model_config"] != self.engine.config.model_key:
                        note = (
                            f"v{pointer['version']} of {gallery.domain!r} was built with "
                            f"another face configuration ({pointer['model_config']}): "
                            f"restart the recognizer to serve it. Meanwhile "
                            f"v{gallery.version} answers."
                        )
                        self.notes = [*[n for n in self.notes if n != note], note]
                        continue
                    self.galleries[position] = load_version(self.settings, pointer)
                    reloaded.append(gallery.domain)
            except (GalleryDamaged, NoGallery) as damaged:
                note = f"{damaged} Meanwhile v{gallery.version} answers."
                self.notes = [*[n for n in self.notes if n != note], note]
        for gallery in gone:
            self.galleries = [kept for kept in self.galleries if kept is not gallery]
            self.notes.append(f"no version of {gallery.domain!r} serves any more")
            reloaded.append(gallery.domain)
        return reloaded

    def identify(
        self, vector: np.ndarray
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]], dict[str, Any]]:
        """Search the galleries in order; the first whose best person passes its own operating
        point decides. Returns (identity or None, the nearest people of every gallery nearest
        first, the decision that named them or else the first gallery's)."""
        identity, decision = None, None
        matches: list[dict[str, Any]] = []
        for gallery in self.galleries:
            ranked = ranked_people(gallery, vector, self.top_k)
            matches.extend(ranked[: self.top_k])
            verdict = decide(gallery, ranked)
            if decision is None or (identity is None and verdict["accepted"]):
                decision = verdict
            if identity is None and verdict["accepted"]:
                identity = {**ranked[0], "score": verdict["score"], "margin": verdict["margin"]}
        matches.sort(key=lambda match: match["distance"])
        return identity, matches[: self.top_k], decision

    def recognize_image(self, path: Path) -> dict[str, Any]:
        self.refresh()
        faces = self.engine.detect(load_rgb(path))
        vectors = l2_normalize(self.engine.embed([face.crop_bgr for face in faces]))
        results = []
        for face, vector in zip(faces, vectors, strict=True):
            identity, matches, decision = self.identify(vector)
            results.append(
                {
                    "box": {"x": face.x, "y": face.y, "w": face.w, "h": face.h},
                    "confidence": round(face.confidence, 4),
                    "identity": identity,
                    "decision": decision,
                    "matches": matches,
                }
            )
        answer: dict[str, Any] = {"image": str(path), "faces": results}
        if self.notes:
            answer["notes"] = list(self.notes)
        return answer
