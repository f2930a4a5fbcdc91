"""The recognizers `facerec serve` keeps: one per search order, built at first use (or at
warm-up), each used under its own lock (the face engine and the gallery reloads are not
thread-safe). No Dagster here."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy.orm import Session

from facerec_pipeline.app.domains import DomainError, list_domains, search_order
from facerec_pipeline.core.faces.weights import ModelWeightsMissing
from facerec_pipeline.core.gallery.loading import GalleryDamaged
from facerec_pipeline.core.gallery.publish import serving_row
from facerec_pipeline.core.recognition.recognizer import NoGallery, Recognizer, serving_pointer
from facerec_pipeline.db.engine import reuse_or_open
from facerec_pipeline.settings import Settings

# Why a search order cannot serve: the message says what to do (`facerec run --domain X`, ...).
CANNOT_SERVE = (NoGallery, GalleryDamaged, DomainError, ModelWeightsMissing, ValueError)
T = TypeVar("T")


@dataclass
class _Slot:
    """One search order's recognizer and the lock that serializes its use (the face engine and
    the gallery reloads are not thread-safe)."""

    order: tuple[str, ...]
    lock: threading.Lock = field(default_factory=threading.Lock)
    recognizer: Recognizer | None = None


class RecognizerPool:
    """Recognizers by search order, built at first use (or at warm-up) and kept."""

    def __init__(self, settings: Settings, top_k: int):
        self.settings = settings
        self.top_k = top_k
        self._slots: dict[tuple[str, ...], _Slot] = {}
        self._guard = threading.Lock()
        self.failures: dict[str, str] = {}  # domain -> why its recognizer could not be built
        self._warming: threading.Thread | None = None

    def use(
        self, order: list[str], work: Callable[[Recognizer], T], session: Session | None = None
    ) -> T:
        """`work(recognizer)` under the search order's lock, the recognizer built first when
        missing or when an inherited domain it could not search has got a gallery since (asked
        in `session`, a request's one session, when given)."""
        key = tuple(order)
        with self._guard:
            slot = self._slots.setdefault(key, _Slot(key))
        with slot.lock:
            stale = slot.recognizer is None or self._gained_a_gallery(slot.recognizer, key, session)
            if stale:
                slot.recognizer = self._build(list(key))
            return work(slot.recognizer)

    def _build(self, order: list[str]) -> Recognizer:
        try:
            recognizer = Recognizer.for_domains(self.settings, order, top_k=self.top_k)
        except CANNOT_SERVE as error:
            self.failures[order[0]] = str(error)
            raise
        self.failures.pop(order[0], None)
        return recognizer

    def _gained_a_gallery(
        self, recognizer: Recognizer, order: tuple[str, ...], session: Session | None
    ) -> bool:
        searched = {gallery.domain for gallery in recognizer.galleries}
        return any(
            serving_pointer(self.settings, code, session) is not None
            for code in order
            if code not in searched
        )

    def loaded(self) -> dict[str, Recognizer]:
        """The recognizer of each domain whose own search order is loaded."""
        with self._guard:
            slots = list(self._slots.values())
        return {slot.order[0]: slot.recognizer for slot in slots if slot.recognizer is not None}

    def serving_domains(self, session: Session | None = None) -> dict[str, list[str]]:
        """Every domain with a production gallery, with its search order."""
        with reuse_or_open(self.settings.database_url, session) as reading:
            return {
                domain.code: search_order(reading, domain.code)
                for domain in list_domains(reading)
                if serving_row(reading, domain.code) is not None
            }

    def warm(self) -> None:
        """Load the recognizer of every domain with a production gallery and run each of its
        face engines once (their models load at first use)."""
        for order in self.serving_domains().values():
            try:
                self.use(order, lambda recognizer: [e.warm() for e in recognizer.engines.values()])
            except CANNOT_SERVE:
                continue  # recorded in failures, reported by /readyz

    def warm_in_background(self) -> None:
        """Start warm() in a thread unless it is running."""
        with self._guard:
            if self._warming is not None and self._warming.is_alive():
                return
            self._warming = threading.Thread(target=self.warm, name="facerec-warm", daemon=True)
            self._warming.start()

    @property
    def warming(self) -> bool:
        return self._warming is not None and self._warming.is_alive()
