"""The code location Dagster loads (`[tool.dagster]` and `[tool.dg.project]` in pyproject.toml):
the definitions assembled in defs/assembly.py, with the settings of the environment."""

from facerec_pipeline.defs.assembly import build_definitions

defs = build_definitions()
