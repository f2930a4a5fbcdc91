"""The face engine resource owns its engine and its worker processes for the length of a run (or
of `open()` outside Dagster); DEEPFACE_HOME is set in one place, once per process."""

import os
import re
from dataclasses import replace

import dagster as dg
import pytest

from facerec_pipeline.core.face_models import DLIB, FACE_MODELS
from facerec_pipeline.core.faces.engine import EngineConfig, FaceEngine
from facerec_pipeline.core.faces.quality_gates import GateConfig
from facerec_pipeline.core.faces.validation import (
    MIN_PHOTOS_PER_WORKER,
    WorkerPool,
    validate_photos,
)
from facerec_pipeline.core.faces.weights import ModelsDirConflict, use_models_dir
from facerec_pipeline.defs.assembly import build_resources
from facerec_pipeline.defs.resources import (
    FaceEngineResource,
    face_engine_resource,
    open_face_engine,
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_run_stops_the_worker_processes_it_started(settings, photos, composed, instance):
    paths = (sorted(photos.glob("*.*")) + [composed["two_faces.jpg"]]) * 4
    assert len(paths) >= 2 * MIN_PHOTOS_PER_WORKER  # large enough to start the workers
    seen = []

    @dg.asset
    def judged(face_engine: FaceEngineResource) -> None:
        model = face_engine.model()
        pool = face_engine.pool(model)
        assert face_engine.pool(model) is pool and pool.engine is face_engine.engine(model)
        if not seen:  # the first run starts the processes; the second only takes its pool
            outcomes = validate_photos(face_engine.engine(model), model.gates, paths, pool)
            assert len(list(outcomes)) == len(paths)
        seen.append((pool, pool.pids))

    resources = {
        "face_engine": FaceEngineResource(
            models_dir=str(settings.models_dir),
            workers=2,
            min_photos_per_worker=MIN_PHOTOS_PER_WORKER,  # SFace's own is larger than this test
        )
    }
    for _ in range(2):
        assert dg.materialize([judged], resources=resources, instance=instance).success
    (first, pids), (second, _) = seen
    assert len(pids) == 2
    assert first is not second  # a run never inherits another's pool
    assert first.closed and second.closed and first.pids == []
    assert not any(alive(pid) for pid in pids)


def test_open_outside_dagster_closes_the_pools(settings, photos):
    with open_face_engine(settings) as face_engine:
        pools = [face_engine.pool(face_engine.model(name)) for name in ("sface", "dlib")]
        engine = face_engine.engine(face_engine.model())
    assert all(pool.closed for pool in pools) and pools[0] is not pools[1]
    paths = [photos / "obama.jpg"] * (2 * MIN_PHOTOS_PER_WORKER)
    closed = WorkerPool(engine, workers=2, min_per_worker=MIN_PHOTOS_PER_WORKER)
    closed.close()
    with pytest.raises(RuntimeError, match="closed"):
        next(validate_photos(engine, GateConfig(), paths, closed))  # starts no new processes


def test_no_engine_is_shared_between_configurations_or_openings(models_dir):
    resource = FaceEngineResource(models_dir=str(models_dir))
    deepface_crop = FaceEngineResource(models_dir=str(models_dir), dlib_chips=False)
    with resource.open() as a, deepface_crop.open() as b, resource.open() as c:
        dlib, sface = a.model("dlib"), a.model("sface")
        assert a.engine(dlib) is a.engine(dlib)  # one engine for the length of an opening
        assert a.engine(dlib).config == DLIB.engine and a.engine(sface).config == sface.engine
        assert b.engine(b.model("dlib")).config == replace(DLIB.engine, dlib_chips=False)
        assert c.engine(dlib) is not a.engine(dlib)  # the same configuration opened again
        with pytest.raises(ValueError, match="worker pool runs"):
            validate_photos(b.engine(b.model("dlib")), GateConfig(), [], a.pool(dlib))


def test_the_pipeline_cli_and_bench_share_one_configuration(settings):
    pipeline = build_resources(settings)["face_engine"]
    outside = face_engine_resource(settings)
    assert pipeline.models_dir == outside.models_dir == str(settings.models_dir)
    for name in FACE_MODELS:
        assert pipeline.model(name) == outside.model(name) == face_engine_resource().model(name)
        assert pipeline.model(name) == FACE_MODELS[name]  # no setting replaced by default


def test_deepface_home_is_set_in_one_place_once_per_process(models_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("DEEPFACE_HOME", raising=False)
    FaceEngine(EngineConfig(), models_dir)
    assert "DEEPFACE_HOME" not in os.environ  # making an engine sets nothing
    use_models_dir(models_dir)
    assert os.environ["DEEPFACE_HOME"] == str(models_dir)
    link = tmp_path / "models"
    link.symlink_to(models_dir, target_is_directory=True)
    use_models_dir(link)  # the same folder by another path: nothing changes
    with pytest.raises(ModelsDirConflict, match="Unset DEEPFACE_HOME"):
        use_models_dir(tmp_path / "other")
    assert os.environ["DEEPFACE_HOME"] == str(models_dir)


def test_the_engine_points_deepface_at_its_models_before_loading_it(
    models_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("DEEPFACE_HOME", str(tmp_path))  # another folder, set outside
    with pytest.raises(ModelsDirConflict, match=re.escape(str(models_dir))):
        assert FaceEngine(EngineConfig(), models_dir)._deepface  # refused before DeepFace loads
    monkeypatch.delenv("DEEPFACE_HOME")
    assert FaceEngine(EngineConfig(), models_dir)._deepface
    assert os.environ["DEEPFACE_HOME"] == str(models_dir)
