"""`facerec`: the project's command line. The root group names the commands, which live by group:
database.py (db), weights.py (models), domains.py (domains, sample), runs.py (run, backfill,
history), gallery.py (gallery), recognition.py (recognize, evaluate, and how the CLI builds the
recognizer), reports.py (stats, skips), people.py (people erase), clients.py (client tokens),
serving.py (serve), artifacts.py (artifacts), workers.py (worker); common.py holds what they
share and formatting.py every table they print.

A command's module is imported only when that command runs (or help lists it): `facerec run`
does not load the server, and this module stays light, which matters beyond start-up time: the
face engine's worker processes are started with `spawn`, and each re-imports the program's main
module (this one, through the `facerec` script) before it does any work."""

from __future__ import annotations

from importlib import import_module

import click

COMMANDS = {
    "db": "database:db",
    "models": "weights:models",
    "domains": "domains:domains",
    "run": "runs:run",
    "backfill": "runs:backfill",
    "gallery": "gallery:gallery",
    "history": "runs:history",
    "recognize": "recognition:recognize",
    "evaluate": "recognition:evaluate",
    "stats": "reports:stats",
    "skips": "reports:skips",
    "sample": "domains:sample",
    "clients": "clients:clients",
    "serve": "serving:serve",
    "artifacts": "artifacts:artifacts",
    "people": "people:people",
    "worker": "workers:worker",
}


class CommandsByModule(click.Group):
    """A group whose commands are imported from their module when first asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attribute = COMMANDS[name].split(":")
        return getattr(import_module(f"facerec_pipeline.cli.{module}"), attribute)


@click.group(cls=CommandsByModule)
def cli() -> None:
    """Build and search per-domain face galleries."""


if __name__ == "__main__":
    cli()
