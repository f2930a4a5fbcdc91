"""previews: a 400 px thumbnail, an 800 px web copy and a blurhash of every accepted photo and of
its face, each an artifact row, made once (a re-run finds them current and makes none), in
batches, each a step of its own (defs/batched_stages.py). A photo whose previews cannot be
made is recorded (processing_failures) and tried again on later runs; it never fails the run."""

from facerec_pipeline.app.stages.previews import PREVIEWS
from facerec_pipeline.defs.batched_stages import batched_stage_asset

previews = batched_stage_asset(
    PREVIEWS,
    inputs=["raw_images", "detected_faces"],
    stores_table=False,
    description="Thumbnails (400 px), web copies (800 px, progressive JPEG) and a blurhash of "
    "every accepted photo and face (table `artifacts`, files under storage/previews/{domain}/), "
    "made once, in batches; per-photo failures are recorded and retried, never fatal.",
    code_version="1",
    group_name="validation",
)
