"""`facerec serve`: the HTTP service for client apps (serving/app.py), run by uvicorn in one
worker process: the face engine and the galleries are loaded once and stay warm."""

from __future__ import annotations

import click

from facerec_pipeline.cli.common import settings_ready, user_errors


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--max-upload-mb",
    default=20.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Largest photo accepted, in MiB (larger uploads get 413).",
)
@user_errors
def serve(host: str, port: int, max_upload_mb: float) -> None:
    """Serve recognition to client apps over HTTP (tokens: `facerec clients add`). API docs at
    /docs; /healthz and /readyz for probes. Bind 127.0.0.1 behind a TLS reverse proxy."""
    import uvicorn

    from facerec_pipeline.serving.app import create_app, give_freed_memory_back

    give_freed_memory_back()
    settings = settings_ready(create=False)
    app = create_app(settings, max_upload_bytes=int(max_upload_mb * 1024 * 1024))
    click.echo(f"serving on http://{host}:{port} (API docs at /docs)", err=True)
    uvicorn.run(app, host=host, port=port, workers=1, proxy_headers=True, log_level="info")
