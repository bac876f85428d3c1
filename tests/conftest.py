"""Shared fixtures: a connector registry with the actions of the SPEC §4 example declared."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from soar.connectors import ActionContext, ActionFailed, Connector, Registry
from soar.connectors.core import core

pytest_plugins = ["tests.kafka_broker", "tests.apache_kafka", "tests.postgres_server"]

FIXTURES = Path(__file__).parent / "fixtures"


class Username(BaseModel):
    username: str


class Directory(BaseModel):
    dn: str
    name: str
    is_service_account: bool
    groups: list[str]


class AccountRef(BaseModel):
    dn: str


class AccountState(BaseModel):
    dn: str
    disabled: bool
    changed: bool


class HostRef(BaseModel):
    host: str


class HostState(BaseModel):
    host: str
    isolated: bool


class Collect(BaseModel):
    host: str
    profile: str = "triage"


class Artifact(BaseModel):
    sha256: str
    size: int


class Chat(BaseModel):
    text: str
    channel: str | None = None


class Email(BaseModel):
    to: list[str]
    subject: str
    body: str = ""


class Page(BaseModel):
    service: str
    summary: str = "soar escalation"


class Sent(BaseModel):
    id: str


def _declare(connector: Connector, name: str, inp: type[BaseModel], out: type[BaseModel]) -> None:
    async def action(ctx: ActionContext, params: BaseModel) -> BaseModel:
        raise ActionFailed("declared for validation tests only")

    action.__annotations__ = {"ctx": ActionContext, "params": inp, "return": out}
    action.__name__ = name
    connector.action()(action)


def spec_connectors() -> list[Connector]:
    """ldap, edr, forensics and notify as the SPEC §4 example uses them (schemas only)."""
    ldap, edr, forensics, notify = (Connector(n) for n in ("ldap", "edr", "forensics", "notify"))
    _declare(ldap, "get_user", Username, Directory)
    _declare(ldap, "disable_account", AccountRef, AccountState)
    _declare(ldap, "enable_account", AccountRef, AccountState)
    _declare(edr, "isolate_host", HostRef, HostState)
    _declare(forensics, "collect", Collect, Artifact)
    _declare(notify, "chat", Chat, Sent)
    _declare(notify, "email", Email, Sent)
    _declare(notify, "page", Page, Sent)
    return [ldap, edr, forensics, notify]


@pytest.fixture
def registry() -> Registry:
    """The core connector plus the SPEC example's connectors, declared with their schemas."""
    return Registry.of([core, *spec_connectors()])
