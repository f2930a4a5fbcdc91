import numpy as np

from facerec_pipeline.core.faces.engine import l2_normalize
from facerec_pipeline.core.gallery.identity import consistency_decisions
from facerec_pipeline.core.gallery.self_evaluation import evaluate

RNG = np.random.default_rng(11)


def person(center: np.ndarray, count: int, spread: float = 0.02) -> np.ndarray:
    return l2_normalize(center + spread * RNG.standard_normal((count, center.size)))


A = l2_normalize(RNG.standard_normal(128))
B = l2_normalize(RNG.standard_normal(128))


def test_a_planted_photo_of_someone_else_is_quarantined():
    vectors = np.vstack([person(A, 4), person(B, 1)])
    decisions = consistency_decisions(vectors, threshold=0.07)
    assert [d.accepted for d in decisions] == [True, True, True, True, False]
    assert decisions[-1].reason == "inconsistent_identity"
    assert decisions[-1].centroid_distance > 0.07 > decisions[0].centroid_distance


def test_two_faces_that_disagree_are_kept_unconfirmed_so_the_person_keeps_a_face():
    decisions = consistency_decisions(np.vstack([person(A, 1), person(B, 1)]), threshold=0.07)
    assert [d.reason for d in decisions] == ["unconfirmed_identity", "unconfirmed_identity"]
    assert all(d.accepted for d in decisions)
    assert consistency_decisions(person(A, 1), threshold=0.07)[0].accepted


def test_two_plants_among_three_still_leave_the_majority():
    vectors = np.vstack([person(A, 3), person(B, 1), l2_normalize(RNG.standard_normal((1, 128)))])
    decisions = consistency_decisions(vectors, threshold=0.07)
    assert [d.accepted for d in decisions] == [True, True, True, False, False]


def test_evaluation_counts_leave_one_out_accuracy():
    vectors = np.vstack([person(A, 3), person(B, 2)])
    figures = evaluate(vectors, ["a", "a", "a", "b", "b"])
    assert figures["loo_probes"] == 5 and figures["loo_top1_accuracy"] == 1.0
    assert figures["genuine_distance_max"] < figures["impostor_distance_min"]
    swapped = evaluate(vectors, ["a", "a", "b", "b", "a"])
    assert swapped["loo_top1_accuracy"] < 1.0


def test_evaluation_on_a_sample_gives_the_figures_of_the_whole():
    vectors = np.vstack([person(A, 40), person(B, 40)])
    labels = ["a"] * 40 + ["b"] * 40
    whole, sampled = evaluate(vectors, labels), evaluate(vectors, labels, max_probes=30)
    assert sampled["sampled_probes"] == 30 and sampled["loo_top1_accuracy"] == 1.0
    assert whole["loo_top1_accuracy"] == 1.0 and "sampled_probes" not in whole


def test_quality_drop_compares_dir_only_at_the_same_target_far_and_rule():
    from facerec_pipeline.app.promotion_checks import no_quality_drop

    serving = {"target_far": 0.01, "rule": "r", "expected_dir": 0.9, "expected_rank1": 0.97}
    worse = {"target_far": 0.01, "rule": "r", "expected_dir": 0.8, "expected_rank1": 0.96}
    passed, figures = no_quality_drop(worse, serving, 0.05)
    assert not passed and figures["dropped"] == ["expected_dir"]
    stricter = {"target_far": 0.002, "expected_dir": 0.7, "expected_rank1": 0.96}
    assert no_quality_drop(stricter, serving, 0.05)[0]  # a stricter target lowers DIR
    assert not no_quality_drop({**stricter, "expected_rank1": 0.8}, serving, 0.05)[0]
    assert no_quality_drop(worse, None, 0.05)[0]  # nothing serves yet
    bounded = {**worse, "rule": "a rule that bounds the FAR"}
    assert no_quality_drop(bounded, serving, 0.05)[1]["same_target_far_and_rule"] is False
    assert no_quality_drop(bounded, serving, 0.05)[0]
