"""Build a stage: one module per pipeline stage, each with one `build_<stage>` function its
Dagster asset calls (defs/<stage>/assets.py) and a test can call on a real database."""
