"""detected_faces: one validation outcome per photo (table `faces`): the accepted face with its
box, confidence, blur score and aligned crop under storage/trainingPass/{domain}/{person}/, or the
rejection reason. Photos already judged under the same configuration are not judged again; the
new ones are judged in batches, each a step of its own (defs/batched_stages.py)."""

from facerec_pipeline.app.stages.detected_faces import DETECTED_FACES
from facerec_pipeline.defs.batched_stages import batched_stage_asset

detected_faces = batched_stage_asset(
    DETECTED_FACES,
    inputs=["raw_images", "candidates"],
    description="Faces found in each photo (table `faces`), accepted or rejected by the quality "
    "gates (size, confidence, blur, dominance, duplicates) with the reason; a person whose "
    "photos all fail a soft gate keeps their largest face. Photos judged before are not judged "
    "again; new ones are judged in batches, a step each.",
    code_version="1",
    group_name="validation",
)
