"""face_embeddings: one embedding per accepted face, stored as a float32 BLOB keyed by (image
sha256, model configuration). A re-run embeds only faces it has not seen, in batches, each a step
of its own (defs/batched_stages.py)."""

from facerec_pipeline.app.stages.face_embeddings import FACE_EMBEDDINGS
from facerec_pipeline.defs.batched_stages import batched_stage_asset

face_embeddings = batched_stage_asset(
    FACE_EMBEDDINGS,
    inputs=["detected_faces"],
    description="One embedding per accepted face under the current face configuration (table "
    "`face_embeddings`, keyed by the model configuration, so unlike embeddings never mix). "
    "Faces already embedded under it are reused; new ones are embedded in batches, a step each.",
    code_version="1",
    group_name="validation",
)
