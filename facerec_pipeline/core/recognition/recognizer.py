"""The recognizer: loads a domain's production gallery (and those of the domains it inherits)
and names the faces in a photo. No Dagster here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from facerec_pipeline.core.face_models import model_name_of
from facerec_pipeline.core.faces.engine import EngineConfig, FaceEngine, l2_normalize
from facerec_pipeline.core.faces.weights import ModelWeightsMissing
from facerec_pipeline.core.gallery.loading import GalleryDamaged, LoadedGallery, load_batches
from facerec_pipeline.core.gallery.open_set import (
    COHORT,
    NEAREST_SHARE,
    OperatingPoint,
    decision_scores,
    rank_people,
)
from facerec_pipeline.core.gallery.publish import PUBLISHED, pointer_of, serving_row
from facerec_pipeline.core.gallery.search_index import nearest_rows
from facerec_pipeline.core.images.image_files import load_rgb_bounded
from facerec_pipeline.db.engine import reuse_or_open, session_scope
from facerec_pipeline.db.models import Gallery
from facerec_pipeline.settings import Settings


class NoGallery(LookupError):
    pass


def stored_engine_config(gallery: LoadedGallery) -> EngineConfig | None:
    """The face configuration a gallery's embeddings were made with, as its batches record it
    (None for versions written before they did)."""
    stored = gallery.batch_metadata[0].get("engine_config") if gallery.batch_metadata else None
    return EngineConfig(**stored) if stored else None


def engine_config_of(gallery: LoadedGallery) -> EngineConfig:
    """The configuration to embed a gallery's queries with: the one its batches record, or for
    a version too old to record one, the `dlib` engine every such version was built with.
    Refused (ValueError) when it would not make the gallery's embeddings (its model key differs:
    another DeepFace release, say): such a version cannot be searched faithfully."""
    config = stored_engine_config(gallery) or EngineConfig()
    if config.model_key != gallery.model_config:
        raise ValueError(
            f"v{gallery.version} of {gallery.domain!r} was embedded as {gallery.model_config}, "
            f"which does not match what its recorded face configuration gives now "
            f"({config.model_key}); run `facerec run --domain {gallery.domain}` to build a "
            "version with the installed libraries"
        )
    return config


def same_face(a: Any, b: Any) -> float:
    """Intersection over union of two face boxes (x, y, w, h)."""
    width = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    height = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    union = a.w * a.h + b.w * b.h - width * height
    return width * height / union if union > 0 else 0.0


# Two detectors' boxes of one face overlap by this much at least (measured on the packaged test
# photos: YuNet's box against dlib's, IoU 0.45-0.6 for the same face, 0 for different faces).
SAME_FACE_IOU = 0.3
# A photo searched is decoded at most this large on its longer side (JPEG at reduced size, the
# rest reduced right after decoding): a 59 MP upload held 1 GB at its peak. YuNet and dlib find
# faces on copies of at most 640 and 800 px, so this loses none they would find; the crops are
# cut from 4096 px instead of up to 8,900 (BENCHMARKS.md, server memory).
RECOGNITION_MAX_SIDE = 4096


def serving_pointer(
    settings: Settings, domain: str, session: Session | None = None
) -> dict[str, Any] | None:
    """What the database says serves the domain (its production row, as `pointer_of` writes
    it), or None; read in the caller's session when given."""
    with reuse_or_open(settings.database_url, session) as reading:
        row = serving_row(reading, domain)
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
        "face_model": model_name_of(gallery.model_config),
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
    """Names the faces of a photo from galleries searched in order (a domain, then the domains
    it inherits). Each gallery is searched with the face engine of the model that built it:
    the photo is detected and embedded by each model its galleries use, and a face found by the
    first gallery's model is searched in another model's gallery through the face that model's
    detector finds at the same place."""

    def __init__(
        self,
        galleries: list[LoadedGallery],
        engines: FaceEngine | list[FaceEngine],
        top_k: int = 5,
        settings: Settings | None = None,
    ):
        if not galleries:
            raise NoGallery("no gallery to search")
        self.settings = settings  # given: galleries reload when a new version is published
        engines = engines if isinstance(engines, list) else [engines]
        self.engines = {engine.config.model_key: engine for engine in engines}
        for gallery in galleries:
            if gallery.model_config not in self.engines:
                raise ValueError(
                    f"gallery model configuration {gallery.model_config} does not match the "
                    f"engines' {sorted(self.engines)}; rebuild the gallery or configure the "
                    "engine to match"
                )
        self.galleries = galleries
        self.top_k = top_k
        self.skipped: list[str] = []  # inherited domains that cannot serve, and why
        self.notes: list[str] = []  # galleries served in place of a damaged production version

    @property
    def engine(self) -> FaceEngine:
        """The engine of the first gallery: it finds the faces an answer lists."""
        return self.engines[self.galleries[0].model_config]

    @classmethod
    def for_domains(
        cls,
        settings: Settings,
        domains: list[str],
        top_k: int = 5,
    ) -> Recognizer:
        """The first domain's production gallery (required), then those of the domains it
        inherits that can serve (`skipped` says why each other one cannot), each with an engine
        of the configuration its version records."""
        first, note = load_serving_gallery(settings, domains[0])
        galleries, notes, skipped = [first], [note] if note else [], []
        configs = {first.model_config: engine_config_of(first)}
        for domain in domains[1:]:
            try:
                gallery, note = load_serving_gallery(settings, domain)
                configs.setdefault(gallery.model_config, engine_config_of(gallery))
            except (NoGallery, GalleryDamaged, ValueError) as missing:
                skipped.append(str(missing))
                continue
            galleries.append(gallery)
            notes += [note] if note else []
        engines = [FaceEngine(config, settings.models_dir) for config in configs.values()]
        recognizer = cls(galleries, engines, top_k, settings)
        recognizer.skipped = skipped
        recognizer.notes = notes
        return recognizer

    def _engine_for(self, gallery: LoadedGallery) -> FaceEngine:
        """The engine of a gallery's model, made when a newly served version needs one."""
        if gallery.model_config not in self.engines:
            assert self.settings is not None
            self.engines[gallery.model_config] = FaceEngine(
                engine_config_of(gallery), self.settings.models_dir
            )
        return self.engines[gallery.model_config]

    def refresh(self, session: Session | None = None) -> list[str]:
        """Reload every gallery whose domain the database now says another version serves, or
        whose serving version's files were rewritten in place (an erasure); drop one whose
        domain nothing serves any more. Returns the domains reloaded or dropped. Costs one small
        query per domain (in `session` when given). A new version that is damaged, or whose face
        engine cannot be made, is not loaded: the loaded one keeps answering, and `notes` says
        why."""
        if self.settings is None:
            return []
        reloaded, gone = [], []
        for position, gallery in enumerate(self.galleries):
            try:
                pointer = serving_pointer(self.settings, gallery.domain, session)
                if pointer is None:  # nothing serves the domain any more: it names no one
                    gone.append(gallery)
                    continue
                if (
                    int(pointer["version"]) != gallery.version
                    or pointer.get("file_checksums") != gallery.checksums
                ):
                    loaded = load_version(self.settings, pointer)
                    self._engine_for(loaded)  # another model's version: its engine first
                    self.galleries[position] = loaded
                    reloaded.append(gallery.domain)
            except (GalleryDamaged, NoGallery, ValueError, ModelWeightsMissing) as damaged:
                note = f"{damaged} Meanwhile v{gallery.version} answers."
                self.notes = [*[n for n in self.notes if n != note], note]
        for gallery in gone:
            self.galleries = [kept for kept in self.galleries if kept is not gallery]
            self.notes.append(f"no version of {gallery.domain!r} serves any more")
            reloaded.append(gallery.domain)
        used = {gallery.model_config for gallery in self.galleries}
        self.engines = {key: engine for key, engine in self.engines.items() if key in used}
        return reloaded

    def identify(
        self, vector: np.ndarray | dict[str, np.ndarray | None]
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]], dict[str, Any]]:
        """Search the galleries in order; the first whose best person passes its own operating
        point decides. `vector`: the face's embedding, or its embedding by each model key
        (None where that model's detector did not find the face: its galleries are passed
        over). Returns (identity or None, the nearest people of every gallery searched nearest
        first, the decision that named them or else the first gallery's)."""
        identity, decision = None, None
        matches: list[dict[str, Any]] = []
        for gallery in self.galleries:
            query = vector.get(gallery.model_config) if isinstance(vector, dict) else vector
            if query is None:
                continue
            ranked = ranked_people(gallery, query, self.top_k)
            matches.extend(ranked[: self.top_k])
            verdict = decide(gallery, ranked)
            if decision is None or (identity is None and verdict["accepted"]):
                decision = verdict
            if identity is None and verdict["accepted"]:
                identity = {**ranked[0], "score": verdict["score"], "margin": verdict["margin"]}
        matches.sort(key=lambda match: match["distance"])
        return identity, matches[: self.top_k], decision

    def embed_faces(self, image_rgb: np.ndarray) -> tuple[list[Any], list[dict[str, Any]]]:
        """The faces the first gallery's model finds (largest first) and, per face, its
        embedding by each model the galleries use: by another model, that of the face its own
        detector finds at the same place (SAME_FACE_IOU), or None."""
        primary = self.engine
        faces = primary.detect(image_rgb)
        vectors: list[dict[str, Any]] = [{} for _ in faces]
        for key, engine in self.engines.items():
            found = faces if engine is primary else engine.detect(image_rgb)
            pairs = [
                (index, _best_overlap(face, found) if engine is not primary else index)
                for index, face in enumerate(faces)
            ]
            cut = [found[match].crop_bgr for _, match in pairs if match is not None]
            embedded = iter(l2_normalize(engine.embed(cut)) if cut else [])
            for index, match in pairs:
                vectors[index][key] = next(embedded) if match is not None else None
        return faces, vectors

    def recognize_image(
        self, path: Path | bytes, name: str | None = None, session: Session | None = None
    ) -> dict[str, Any]:
        """The faces of the photo at `path` (or in these bytes, called `name`), each named or
        not. A photo larger than RECOGNITION_MAX_SIDE is searched at that size (decoded at
        reduced size where the format allows: bounded memory); boxes are in the photo's own
        pixels either way. `session`: the caller's, for the reads of `refresh`."""
        self.refresh(session)
        if session is not None:
            session.commit()  # no transaction held while the photo is searched
        image, scale = load_rgb_bounded(path, RECOGNITION_MAX_SIDE)
        faces, vectors = self.embed_faces(image)
        del image
        results = []
        for face, vector in zip(faces, vectors, strict=True):
            identity, matches, decision = self.identify(vector)
            box = [round(value * scale) for value in (face.x, face.y, face.w, face.h)]
            results.append(
                {
                    "box": dict(zip(("x", "y", "w", "h"), box, strict=True)),
                    "confidence": round(face.confidence, 4),
                    "identity": identity,
                    "decision": decision,
                    "matches": matches,
                }
            )
        shown = name if name is not None or isinstance(path, bytes) else str(path)
        answer: dict[str, Any] = {"image": shown, "faces": results}
        if self.notes:
            answer["notes"] = list(self.notes)
        return answer


def _best_overlap(face: Any, found: list[Any]) -> int | None:
    """The index of the face in `found` that overlaps `face` most, if it is the same face."""
    overlaps = [same_face(face, other) for other in found]
    best = int(np.argmax(overlaps)) if overlaps else None
    return best if best is not None and overlaps[best] >= SAME_FACE_IOU else None
