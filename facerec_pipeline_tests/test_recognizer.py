from types import SimpleNamespace

import numpy as np
import pytest

from facerec_pipeline.core.face_models import DLIB, SFACE_MODEL
from facerec_pipeline.core.faces.engine import EngineConfig, l2_normalize
from facerec_pipeline.core.gallery.open_set import LEGACY_RULE, OperatingPoint, calibrate
from facerec_pipeline.core.recognition.recognizer import LoadedGallery, Recognizer, ranked_people

RNG = np.random.default_rng(3)
CONFIG = DLIB.engine
A, B, C = l2_normalize(RNG.standard_normal((3, 128)))


def gallery(domain, people, config=CONFIG):
    rows = [(name, vector) for name, vectors in people.items() for vector in vectors]
    names = list(people)
    matrix = np.stack([v for _, v in rows]).astype(np.float32)
    person_rows = np.asarray([names.index(n) for n, _ in rows], dtype=np.int32)
    return LoadedGallery(
        domain=domain,
        version=1,
        model_config=config.model_key,
        matrix=matrix,
        people=[{"person": n.title(), "normalized_name": n, "wikidata_id": None} for n in names],
        person_rows=person_rows,
        batch_metadata=[],
        operating_point=calibrate(
            matrix, person_rows, fallback_threshold=DLIB.verification_threshold
        ),
    )


def near(vector):
    return l2_normalize(vector + 0.01 * RNG.standard_normal(128))


CHILD = gallery("serbia", {"ana": [near(A), near(A)], "dan": [near(C), near(C)]})
PARENT = gallery("balkans", {"bob": [near(B)]})
RECOGNIZER = Recognizer([CHILD, PARENT], SimpleNamespace(config=CONFIG), top_k=5)


def test_own_domain_then_inherited_domains_then_nobody():
    identity, matches, decision = RECOGNIZER.identify(near(A))
    assert (identity["normalized_name"], identity["domain"]) == ("ana", "serbia")
    assert decision["accepted"] and decision["score"] <= decision["threshold"]
    assert [m["normalized_name"] for m in matches] == ["ana", "bob", "dan"]
    identity, _, decision = RECOGNIZER.identify(near(B))
    assert (identity["normalized_name"], identity["domain"]) == ("bob", "balkans")
    assert decision["domain"] == "balkans"
    stranger = l2_normalize(RNG.standard_normal(128))
    identity, matches, decision = RECOGNIZER.identify(stranger)
    assert identity is None and not decision["accepted"] and decision["domain"] == "serbia"
    assert decision["score"] > decision["threshold"] and len(matches) == 3


def test_a_person_is_as_near_as_the_mean_of_their_two_nearest_faces():
    query = near(A)
    ranked = ranked_people(CHILD, query, k=5)
    assert [m["normalized_name"] for m in ranked] == ["ana", "dan"]
    expected = np.mean(1.0 - CHILD.matrix[:2] @ query)
    assert ranked[0]["distance"] == pytest.approx(expected, abs=1e-5)


def test_a_gallery_whose_rows_are_not_grouped_by_person_is_refused():
    broken = gallery("serbia", {"ana": [near(A)], "dan": [near(C)]})
    broken.person_rows = np.asarray([1, 0], dtype=np.int32)
    with pytest.raises(ValueError, match="grouped by person"):
        ranked_people(broken, near(A), k=2)


def test_galleries_of_another_model_are_refused():
    other = SimpleNamespace(config=EngineConfig(model_name="Facenet512"))
    with pytest.raises(ValueError, match="does not match"):
        Recognizer([CHILD], other)


def test_each_gallery_is_searched_with_the_embedding_of_its_own_model():
    sface = SimpleNamespace(config=SFACE_MODEL.engine)
    parent = gallery("balkans", {"bob": [near(B)]}, SFACE_MODEL.engine)
    recognizer = Recognizer([CHILD, parent], [SimpleNamespace(config=CONFIG), sface])
    by_model = {CONFIG.model_key: near(C), SFACE_MODEL.engine.model_key: near(B)}
    identity, matches, _ = recognizer.identify(by_model)
    assert (identity["normalized_name"], identity["domain"]) == ("dan", "serbia")
    by_model[CONFIG.model_key] = l2_normalize(RNG.standard_normal(128))  # a stranger to dlib
    identity, _, _ = recognizer.identify(by_model)
    assert (identity["normalized_name"], identity["domain"]) == ("bob", "balkans")
    # Not found by the parent's model: its gallery is passed over, never searched with
    # another model's embedding.
    by_model[SFACE_MODEL.engine.model_key] = None
    identity, matches, decision = recognizer.identify(by_model)
    assert identity is None and decision["domain"] == "serbia"
    assert {m["domain"] for m in matches} == {"serbia"}


def test_the_ivf_index_finds_the_same_nearest_rows_as_exact_search():
    from facerec_pipeline.core.gallery.search_index import build_ivf, nearest_rows

    matrix = l2_normalize(RNG.standard_normal((20_000, 128))).astype(np.float32)
    index = build_ivf(matrix)
    queries = l2_normalize(matrix[:200] + 0.02 * RNG.standard_normal((200, 128)))
    hits = [
        nearest_rows(matrix, index, q, 1)[1][0] == nearest_rows(matrix, None, q, 1)[1][0]
        for q in queries
    ]
    assert np.mean(hits) >= 0.99
    distances, rows = nearest_rows(matrix, index, queries[0], 5)
    assert rows[0] == 0 and np.all(np.diff(distances) >= -1e-6)


def test_a_version_is_searched_with_the_rule_it_was_calibrated_with():
    """A person of 9 faces is as near as their 3 nearest; in a version calibrated before the
    share (its operating point has no nearest_share), as their 2 nearest, as then."""
    many = gallery("greece", {"ana": [near(A) for _ in range(9)], "dan": [near(C), near(C)]})
    query = near(A)
    nearest = np.sort(1.0 - many.matrix[:9] @ query)
    assert ranked_people(many, query, k=2)[0]["distance"] == pytest.approx(
        nearest[:3].mean(), abs=1e-5
    )
    legacy = {**many.operating_point.to_dict(), "rule": LEGACY_RULE}
    del legacy["nearest_share"], legacy["far_upper_bound"]
    many.operating_point = OperatingPoint.from_dict(legacy)
    assert ranked_people(many, query, k=2)[0]["distance"] == pytest.approx(
        nearest[:2].mean(), abs=1e-5
    )
