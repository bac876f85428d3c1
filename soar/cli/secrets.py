"""`soar secrets`: the encrypted store of connector secrets (docs/secrets.md). Values go in by
prompt, standard input or an environment variable, never as an argument, and never come out."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from soar.config import SecretsSettings, Settings, load_settings
from soar.connectors.secrets import (
    SecretStore,
    SecretStoreError,
    key_id,
    new_key,
    read_key,
    write_key,
)
from soar.errors import ConfigError


def load_secrets(settings: SecretsSettings) -> dict[str, str]:
    """Every secret in the configured store, opened; {} when there is no store file (the
    environment is then the only source).

    Raises:
        SecretStoreError: the store exists but its key is missing or wrong, or it is damaged.
    """
    if not settings.file.exists():
        return {}
    return open_store(settings).values()


def secrets_or_exit(settings: Settings) -> dict[str, str]:
    """`load_secrets` for a command: a store that cannot be opened ends it with the reason."""
    try:
        return load_secrets(settings.secrets)
    except SecretStoreError as exc:
        raise click.ClickException(str(exc)) from None


def open_store(settings: SecretsSettings) -> SecretStore:
    key = read_key(file=settings.key_file, env=settings.key_env)
    return SecretStore(settings.file, key)


def _settings() -> SecretsSettings:
    try:
        return load_settings().secrets
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _store() -> SecretStore:
    try:
        return open_store(_settings())
    except SecretStoreError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def secrets() -> None:
    """Connector secrets, sealed with AES-256-GCM (values are never printed)."""


@secrets.command("keygen")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
def keygen(path: Path) -> None:
    """Write a new random key to PATH (mode 0600; an existing file is never replaced)."""
    key = new_key()
    try:
        write_key(path, key)
    except SecretStoreError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"key {key_id(key)} written to {path}")


@secrets.command("set")
@click.argument("name")
@click.option(
    "--from-env",
    "from_env",
    metavar="VAR",
    default=None,
    help="Take the value from this environment variable (else stdin, or a hidden prompt).",
)
def set_secret(name: str, from_env: str | None) -> None:
    """Seal a value as NAME (`connector.name`, e.g. ldap.bind_password)."""
    if from_env is not None:
        value = os.environ.get(from_env, "")
        if not value:
            raise click.ClickException(f"${from_env} is not set")
    elif sys.stdin.isatty():
        value = click.prompt(f"value of {name}", hide_input=True, confirmation_prompt=True)
    else:
        value = sys.stdin.read().removesuffix("\n")
    store = _store()
    try:
        store.set(name, value)
    except SecretStoreError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{name} set in {store.path}")


@secrets.command("list")
def list_secrets() -> None:
    """The names of the secrets held, with when each was last set."""
    store = _store()
    entries = store.names()
    if not entries:
        click.echo(f"no secrets in {store.path}")
    for entry in entries:
        click.echo(f"{entry.name}\t{entry.updated.isoformat(timespec='seconds')}")


@secrets.command("delete")
@click.argument("name")
def delete_secret(name: str) -> None:
    """Remove NAME from the store."""
    store = _store()
    if not store.delete(name):
        raise click.ClickException(f"no secret {name!r} in {store.path}")
    click.echo(f"{name} deleted from {store.path}")


@secrets.command("rotate")
@click.option(
    "--to",
    "new_key_file",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="The new key file (`soar secrets keygen`); the configured key opens the store now.",
)
def rotate(new_key_file: Path) -> None:
    """Seal every secret again under a new key, in one atomic replace of the store file.
    Afterwards point secrets.key_file (or the key variable) at the new key."""
    store = _store()
    try:
        new = read_key(file=new_key_file)
        store.rotate(new)
    except SecretStoreError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"{len(store.names())} secret(s) in {store.path} now sealed with key {key_id(new)}; "
        f"set secrets.key_file to {new_key_file} (the old key no longer opens the store)"
    )
