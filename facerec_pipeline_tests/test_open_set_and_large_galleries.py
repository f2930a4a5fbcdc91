"""The open-set rule and its calibration, and galleries far past one batch: 2,100 people and
100,800 faces through the real batch writer, loader, faiss index, checks and recognizer."""

from datetime import UTC, datetime

import numpy as np
import pytest

from facerec_pipeline.app import promotion_checks
from facerec_pipeline.core.faces.engine import l2_normalize
from facerec_pipeline.core.gallery.loading import load_batches
from facerec_pipeline.core.gallery.open_set import (
    calibrate,
    decision_scores,
    far_upper_bound,
    nearest_count,
    person_distances,
    rank_people,
    strangers_allowed,
)
from facerec_pipeline.core.gallery.publish import (
    BATCH_MAX_PEOPLE,
    GalleryEntry,
    ordered_entries,
    write_batches,
)
from facerec_pipeline.core.gallery.self_evaluation import evaluate

RNG = np.random.default_rng(5)


def people(count: int, faces: int, spread: float = 0.035) -> tuple[np.ndarray, np.ndarray]:
    centers = l2_normalize(RNG.standard_normal((count, 128)))
    rows = np.repeat(np.arange(count), faces)
    return l2_normalize(centers[rows] + spread * RNG.standard_normal((len(rows), 128))), rows


def test_calibration_holds_the_target_far_on_strangers_it_never_saw():
    matrix, rows = people(300, 3)
    point = calibrate(matrix, rows, target_far=0.05)
    assert point.calibrated and point.stranger_trials == 900 and point.enrolled_trials == 900
    strangers, _ = people(600, 1)
    starts = np.flatnonzero(np.r_[True, np.diff(rows) != 0])
    scores = [decision_scores(rank_people(matrix, starts, q, 4)[1][None])[0] for q in strangers]
    far = float(np.mean(np.asarray(scores) <= point.threshold))
    assert 0.01 <= far <= 0.12  # the target is 0.05: a rule calibrated blind, not tuned on these
    assert point.expected_dir > 0.5 and point.expected_rank1 > 0.9


def test_a_gallery_too_small_to_calibrate_falls_back_to_the_model_threshold():
    matrix, rows = people(3, 2)
    point = calibrate(matrix, rows, target_far=0.01, fallback_threshold=0.07)
    assert not point.calibrated and point.threshold <= 0.07
    single = calibrate(matrix[:2], rows[:2], fallback_threshold=0.07)
    assert single.threshold == 0.07 and single.stranger_trials == 0
    # Enough strangers, but too few people for a simulated stranger to have the full cohort.
    few, few_rows = people(4, 50)
    assert not calibrate(few, few_rows, target_far=0.05, fallback_threshold=-1.0).calibrated
    assert calibrate(few, few_rows, target_far=0.05, fallback_threshold=-1.0).threshold == -1.0


def test_the_target_far_bounds_the_simulated_strangers_named_at_95_percent():
    matrix, rows = people(400, 2)
    point = calibrate(matrix, rows, target_far=0.01)
    assert point.calibrated and point.stranger_trials == 800
    # 8 of 800 (the plain 1% quantile) would have an upper bound of 1.8%; 3 of 800 has 0.97%
    assert round(point.expected_far * 800) == strangers_allowed(800, 0.01) == 3
    assert point.far_upper_bound == pytest.approx(far_upper_bound(3, 800), abs=1e-4)
    assert point.far_upper_bound <= 0.01 < far_upper_bound(4, 800)
    # Too few to show even one named stranger stays under 1%: the plain quantile, never
    # looser than the model's 1:1 threshold.
    small, small_rows = people(120, 2)
    point = calibrate(small, small_rows, target_far=0.01, fallback_threshold=0.07)
    assert not point.calibrated and point.threshold <= 0.07 and point.expected_far <= 0.01


def test_a_person_is_as_near_as_the_mean_of_a_share_of_their_nearest_faces():
    assert list(nearest_count(np.array([1, 2, 7, 8, 12, 40]), 0.25)) == [1, 2, 2, 3, 4, 11]
    assert list(nearest_count(np.array([1, 2, 40]), 0.0)) == [1, 2, 2]  # versions before it
    distances = np.array([[0.5, 0.1, 0.3, 0.2, 0.9, 0.8, 0.7, 0.6, 0.4, np.inf, 0.6]])
    starts = np.array([0, 9])  # one person of 9 faces, one of 2 with one left out
    shared = person_distances(distances, starts, 0.25)
    assert shared[0] == pytest.approx([np.mean([0.1, 0.2, 0.3]), 0.6])
    legacy = person_distances(distances, starts, 0.0)
    assert legacy[0] == pytest.approx([0.15, 0.6])


def test_many_photos_of_one_person_do_not_draw_strangers_to_them():
    """With the mean of the 2 nearest of 60 faces, one loose person is the nearest person of
    about a quarter of the strangers (chance is 1 in 41); with a share of their faces, of well
    under half as many."""
    rng = np.random.default_rng(11)
    centers = l2_normalize(rng.standard_normal((41, 128)))
    many = l2_normalize(centers[0] + 0.06 * rng.standard_normal((60, 128)))
    few = l2_normalize(np.repeat(centers[1:], 2, axis=0) + 0.06 * rng.standard_normal((80, 128)))
    matrix = np.concatenate([many, few])
    starts = np.r_[0, np.arange(60, 140, 2)]
    strangers = l2_normalize(rng.standard_normal((400, 128)))
    drawn = {
        share: np.mean(
            person_distances(1.0 - strangers @ matrix.T, starts, share).argmin(axis=1) == 0
        )
        for share in (0.0, 0.25)
    }
    assert drawn[0.0] > 0.15 and drawn[0.25] < 0.5 * drawn[0.0]


@pytest.fixture(scope="module")
def large_gallery(tmp_path_factory):
    root = tmp_path_factory.mktemp("large")
    crop = root / "crop.png"
    crop.write_bytes(b"\x89PNG\r\n\x1a\n")  # the writer links crops; their content is not read
    matrix, rows = people(2_100, 48)
    entries = ordered_entries(
        [
            GalleryEntry(
                face_id=i,
                person_id=int(r),
                person=f"Person {r}",
                normalized_name=f"person_{r:05d}",
                wikidata_id=None,
                image_sha256=f"{i:064x}",
                crop_path=crop,
                vector=matrix[i],
            )
            for i, r in enumerate(rows)
        ]
    )
    batches = write_batches(
        root / "batched",
        entries,
        domain="big",
        version=1,
        model_config="m",
        created_at=datetime.now(UTC),
        first_batch=1,
    )
    return root, batches, entries


def test_the_writer_and_loader_handle_thousands_of_people_with_a_faiss_index(large_gallery):
    root, batches, entries = large_gallery
    assert len(batches) == -(-2_100 // BATCH_MAX_PEOPLE) == 5
    loaded = load_batches(root, "big", 1, "m", [str(b) for b in batches], with_faces=True)
    assert loaded.matrix.shape == (100_800, 128) and len(loaded.people) == 2_100
    assert loaded.index is not None and loaded.index.ntotal == 100_800
    assert len(loaded.person_starts) == 2_100
    assert loaded.labels == [e.normalized_name for e in entries]
    for name, passed in [
        ("coherent_model", promotion_checks.coherent_model(loaded)[0]),
        ("no_photo_in_two_people", promotion_checks.no_photo_in_two_people(loaded)[0]),
        ("distinct_identities", promotion_checks.distinct_identities(loaded, 0.025)[0]),
        ("loo_accuracy", promotion_checks.leave_one_out_accuracy(loaded, 0.8)[0]),
    ]:
        assert passed, name
    figures = evaluate(loaded.matrix, loaded.labels)
    assert figures["sampled_probes"] == 10_000 and figures["loo_top1_accuracy"] > 0.99


def test_search_through_the_index_names_the_same_people_as_exact_search(large_gallery):
    root, batches, entries = large_gallery
    loaded = load_batches(root, "big", 1, "m", [str(b) for b in batches])
    from facerec_pipeline.core.gallery.search_index import nearest_rows

    agree = 0
    for row in range(0, 100_800, 5_000):
        query = l2_normalize(loaded.matrix[row] + 0.03 * RNG.standard_normal(128))
        candidates = nearest_rows(loaded.matrix, loaded.index, query, 64)[1]
        fast = rank_people(loaded.matrix, loaded.person_starts, query, 4, candidates)
        exact = rank_people(loaded.matrix, loaded.person_starts, query, 4)
        agree += fast[0][0] == exact[0][0] == loaded.person_rows[row]
    assert agree >= 20 - 1


def test_calibration_of_a_large_gallery_samples_its_probes(large_gallery):
    root, batches, _ = large_gallery
    loaded = load_batches(root, "big", 1, "m", [str(b) for b in batches])
    point = calibrate(loaded.matrix, loaded.person_rows, max_probes=3_000)
    assert point.stranger_trials == 3_000 and point.expected_rank1 > 0.99


def test_served_search_falls_back_to_exact_when_one_person_owns_every_candidate():
    from facerec_pipeline.core.gallery.loading import LoadedGallery
    from facerec_pipeline.core.gallery.search_index import build_ivf
    from facerec_pipeline.core.recognition.recognizer import ranked_people

    matrix, rows = people(550, 100, spread=0.01)  # 55,000 faces: served through the index
    gallery = LoadedGallery(
        domain="d",
        version=1,
        model_config="m",
        matrix=matrix.astype(np.float32),
        people=[{"person": f"p{i}", "normalized_name": f"p{i}"} for i in range(550)],
        person_rows=rows.astype(np.int32),
        batch_metadata=[],
        index=build_ivf(matrix),
    )
    ranked = ranked_people(gallery, l2_normalize(matrix[0] + 0.005 * RNG.standard_normal(128)), 1)
    assert ranked[0]["normalized_name"] == "p0" and len(ranked) == 4  # the full cohort
