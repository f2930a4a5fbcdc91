"""facerec_pipeline: per-domain face-recognition galleries built with Dagster."""
