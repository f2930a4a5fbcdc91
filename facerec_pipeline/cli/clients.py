"""`facerec clients`: the client apps allowed to ask `facerec serve`, one token each."""

from __future__ import annotations

import click

from facerec_pipeline.cli.common import echo_json, read_db, user_errors
from facerec_pipeline.cli.formatting import clients_table


@click.group()
def clients() -> None:
    """Client tokens for `facerec serve`: add, list, revoke."""


@clients.command("add")
@click.argument("name")
@click.option("--domain", "code", required=True, help="The domain the client may search.")
@user_errors
def clients_add(name: str, code: str) -> None:
    """Issue a token for client NAME of a domain (and the domains it inherits). The token is
    printed once: only its sha256 is stored."""
    from facerec_pipeline.app.clients import add_client

    token = read_db(add_client, name, code)
    click.echo(f"client {name!r} may search domain {code!r}; its token (shown once, keep it):")
    click.echo(token)


@clients.command("list")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def clients_list(as_json: bool) -> None:
    """Every client, its domain and whether its token still works (never the token)."""
    from facerec_pipeline.app.clients import list_clients

    listed = read_db(list_clients)
    if as_json:
        echo_json(
            [
                {
                    "name": c.name,
                    "domain": c.domain,
                    "active": c.active,
                    "created_at": c.created_at,
                    "revoked_at": c.revoked_at,
                }
                for c in listed
            ]
        )
        return
    click.echo(clients_table(listed))


@clients.command("revoke")
@click.argument("name")
@user_errors
def clients_revoke(name: str) -> None:
    """Revoke client NAME's token: its next request gets 401."""
    from facerec_pipeline.app.clients import revoke_client

    revoked = read_db(revoke_client, name)
    click.echo(f"client {revoked.name!r} revoked at {revoked.revoked_at:%Y-%m-%d %H:%M:%S} UTC")
