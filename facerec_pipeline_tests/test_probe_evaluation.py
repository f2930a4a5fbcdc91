"""The figures of `facerec evaluate`, from probe outcomes."""

from pathlib import Path

import pytest

from facerec_pipeline.core.evaluation.probe_evaluation import ProbeResult, figures_of, probe_truth


def result(truth, nearest, named, score):
    return ProbeResult("p.jpg", truth, nearest, named, score, 0.05)


def test_rank1_dir_far_and_wrong_names_are_counted_apart():
    results = [
        result("ana", "ana", "ana", 0.01),  # right name
        result("bob", "bob", None, 0.05),  # right person nearest, not sure enough
        result("cid", "ana", "ana", 0.02),  # a wrong name
        result("dan", None, None, float("inf")),  # no face found
        result(None, "ana", "ana", 0.015),  # a stranger named
        result(None, "bob", None, 0.06),
        result(None, "bob", None, 0.07),
        result(None, None, None, float("inf")),
    ]
    figures = figures_of(results)
    assert (figures["rank1"], figures["dir"], figures["wrong_name_rate"]) == (0.5, 0.25, 0.25)
    assert (figures["far"], figures["no_face_probes"], figures["no_face_unknown"]) == (
        0.25,
        1,
        1,
    )
    curve = {point["far_limit"]: point for point in figures["curve"]}
    assert curve[0.1] == {"far": 0.0, "dir": 0.25, "far_limit": 0.1}  # below the stranger
    assert curve[0.5]["dir"] == 0.5 and curve[0.5]["far"] == 0.5


def test_probe_names_say_who_is_in_the_photo():
    assert probe_truth(Path("George_W_Bush__George_W_Bush_0530.jpg")) == "george_w_bush"
    assert probe_truth(Path("Novak Đoković__1.jpg")) == "novak_djokovic"
    with pytest.raises(ValueError, match="<Person>__<file>"):
        probe_truth(Path("photo.jpg"))
