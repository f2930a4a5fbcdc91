from dataclasses import dataclass, field

import numpy as np

from facerec_pipeline.core.faces.quality_gates import GateConfig, blur_score, judge_faces
from facerec_pipeline.core.images.duplicates import PhotoRef, find_duplicates

RNG = np.random.default_rng(7)
SHARP = RNG.integers(0, 255, (120, 120, 3), dtype=np.uint8)
FLAT = np.full((120, 120, 3), 128, dtype=np.uint8)


@dataclass
class Face:
    w: int
    h: int
    confidence: float = 1.0
    crop_bgr: np.ndarray = field(default_factory=lambda: SHARP)

    @property
    def area(self):
        return self.w * self.h

    @property
    def size(self):
        return min(self.w, self.h)


def judge(*faces):
    return judge_faces(sorted(faces, key=lambda f: f.area, reverse=True), GateConfig())


def test_blur_score_separates_sharp_from_flat():
    assert blur_score(SHARP) > 1000 > blur_score(FLAT) == 0.0


def test_each_gate_gives_its_reason():
    assert judge().reason == "no_face"
    assert judge(Face(200, 200, confidence=0.2)).reason == "low_confidence"
    assert judge(Face(200, 200), Face(180, 180)).reason == "multiple_faces"
    assert judge(Face(30, 30)).reason == "face_too_small"
    assert judge(Face(200, 200, crop_bgr=FLAT)).reason == "blurry"
    accepted = judge(Face(200, 200))
    assert accepted.accepted and accepted.reason is None and accepted.faces_found == 1


def test_dominant_subject_is_accepted_with_background_faces_counted():
    decision = judge(Face(300, 300), Face(60, 60), Face(50, 50))
    assert decision.accepted and decision.face_index == 0
    assert (decision.faces_found, decision.background_faces) == (3, 2)


def test_low_confidence_background_detection_does_not_count_as_a_rival():
    decision = judge(Face(200, 200), Face(190, 190, confidence=0.1))
    assert decision.accepted and decision.background_faces == 1


def test_duplicates_exact_and_perceptual_keep_the_earliest():
    photos = [
        PhotoRef(3, "sha-a", "ffff000000000000"),  # same file as 1
        PhotoRef(1, "sha-a", "ffff000000000000"),
        PhotoRef(2, "sha-b", "0000ffff00000000"),
        PhotoRef(4, "sha-c", "0000ffff00000007"),  # 3 bits from 2: a resized copy
        PhotoRef(5, "sha-d", "0f0f0f0f0f0f0f0f"),  # different photo
        PhotoRef(6, "sha-e", None),  # unreadable: no hash, only exact matching
    ]
    assert find_duplicates(photos, max_hash_distance=4) == {3: 1, 4: 2}
    assert find_duplicates(photos, max_hash_distance=2) == {3: 1}


def test_a_person_whose_photos_all_fail_soft_gates_keeps_the_largest_face():
    from facerec_pipeline.app.stages.detected_faces import keep_one_face_per_person

    def row(person, status, reason, size, crop="c.png"):
        return {
            "person_id": person,
            "status": status,
            "rejection_reason": reason,
            "face_size": size,
            "crop_path": crop,
        }

    rows = [
        row(1, "rejected", "face_too_small", 30),
        row(1, "rejected", "blurry", 80),
        row(1, "rejected", "no_face", None, None),
        row(2, "accepted", None, 90),
        row(2, "rejected", "blurry", 120),
        row(3, "rejected", "no_face", None, None),
        row(3, "rejected", "duplicate", None, None),
    ]
    assert keep_one_face_per_person(rows) == 1
    assert [r["status"] for r in rows] == [
        "rejected",
        "accepted",
        "rejected",
        "accepted",
        "rejected",
        "rejected",
        "rejected",
    ]
    assert rows[1]["rejection_reason"] == "blurry"  # the reason stays on record
    rows[3]["status"] = "rejected"  # person 2 lost its good face: judged afresh
    rows[3]["rejection_reason"] = "duplicate"
    assert keep_one_face_per_person(rows) == 2 and rows[4]["status"] == "accepted"
