"""`soar tokens`: API tokens for people and programs (docs/api.md). The secret is shown once."""

from __future__ import annotations

import asyncio
import json

import click

from soar.api.auth import Role
from soar.api.tokens import create_token, revoke_token
from soar.cli.auditing import cli_actor
from soar.config import load_settings
from soar.errors import ConflictError
from soar.store import open_store


@click.group("tokens")
def tokens() -> None:
    """Create, list and revoke API tokens."""


@tokens.command("create")
@click.option("--name", required=True, help="Who or what uses it: the actor in the audit log.")
@click.option(
    "--role", required=True, type=click.Choice([r.value for r in Role]), help="What it may do."
)
@click.option("--json", "as_json", is_flag=True)
def create(name: str, role: str, as_json: bool) -> None:
    """Make a token; it is printed once and stored only as a hash."""

    async def make() -> tuple[str, str]:
        async with open_store(load_settings().store) as store:
            record, secret = await create_token(store, name=name, role=Role(role), by=cli_actor())
            return record.id, secret

    token_id, secret = asyncio.run(make())
    if as_json:
        click.echo(json.dumps({"id": token_id, "name": name, "role": role, "token": secret}))
        return
    click.echo(secret)
    click.echo(f"token {token_id} for {name} ({role}): shown once, keep it safe", err=True)


@tokens.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_tokens(as_json: bool) -> None:
    """Every token: id, name, role, created, revoked (never the secret)."""

    async def read() -> list[dict[str, str | None]]:
        async with open_store(load_settings().store) as store:
            return [
                {
                    "id": t.id,
                    "name": t.name,
                    "role": t.role,
                    "created_at": t.created_at.isoformat(),
                    "created_by": t.created_by,
                    "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
                }
                for t in await store.api_tokens()
            ]

    found = asyncio.run(read())
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for t in found:
        state = f"revoked {t['revoked_at']}" if t["revoked_at"] else "active"
        click.echo(f"{t['id']}  {t['role']:<9}  {t['name']:<24}  {state}")


@tokens.command("revoke")
@click.argument("token_id")
def revoke(token_id: str) -> None:
    """Revoke a token by id; its console sessions end at once."""

    async def drop() -> None:
        async with open_store(load_settings().store) as store:
            await revoke_token(store, token_id, by=cli_actor())

    try:
        asyncio.run(drop())
    except ConflictError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"revoked {token_id}")
