"""`soar keys`: the Ed25519 keys that sign audit checkpoints."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import click

from soar.audit.canonical import canonical
from soar.audit.keys import Keyring
from soar.cli.auditing import checkpointer_for, cli_actor
from soar.config import Settings, load_settings
from soar.models.audit import AuditEvent, AuditKind
from soar.store import Change, Store, open_store


@click.group()
def keys() -> None:
    """Create, rotate, list and export the audit signing keys."""


@keys.command("create")
def create_command() -> None:
    """Create the keyring (`audit.keys` in the settings) with its first key."""
    settings = load_settings()
    keyring = Keyring.create(settings.audit.keys)
    asyncio.run(_record(settings, AuditKind.KEY_CREATED, {"key_id": keyring.active_id}))
    click.echo(f"created key {keyring.active_id} in {settings.audit.keys}")


@keys.command("rotate")
def rotate_command() -> None:
    """Retire the active key for a new one. The log is signed with the old key first, the
    rotation is recorded, and the log is signed again with the new key."""
    settings = load_settings()
    keyring = Keyring.open(settings.audit.keys)

    async def rotate() -> tuple[str, str]:
        async with open_store(settings.store) as store:
            await checkpointer_for(settings, store, keyring).checkpoint()
            old, new = keyring.rotate()
            await _append(store, AuditKind.KEY_ROTATED, {"old_key_id": old, "new_key_id": new})
            await checkpointer_for(settings, store, keyring).checkpoint()
            return old, new

    old, new = asyncio.run(rotate())
    click.echo(f"rotated: {old} retired, {new} active")


@keys.command("list")
def list_command() -> None:
    """Every key: id, status, when created and retired."""
    keyring = Keyring.open(load_settings().audit.keys)
    for entry in keyring.entries():
        click.echo("  ".join(str(part) for part in entry if part is not None))


@keys.command("export")
@click.argument("key_id", required=False)
def export_command(key_id: str | None) -> None:
    """Public keys as PEM (all of them, or KEY_ID), for `soar audit verify --key`."""
    click.echo(Keyring.open(load_settings().audit.keys).public_pem(key_id), nl=False)


async def _record(settings: Settings, kind: AuditKind, detail: dict[str, str]) -> None:
    async with open_store(settings.store) as store:
        await _append(store, kind, detail)


async def _append(store: Store, kind: AuditKind, detail: dict[str, str]) -> None:
    now = datetime.now(UTC)
    actor = cli_actor()
    body = {
        "kind": kind.value,
        "time": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": actor,
        **detail,
    }
    event = AuditEvent(kind=kind, time=now, actor=actor, body=canonical(body))
    await store.apply(Change(audit=[event]))
