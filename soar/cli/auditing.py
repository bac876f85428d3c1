"""Audit wiring shared by the commands that run the engine or touch the log."""

from __future__ import annotations

import getpass
import logging

from soar.audit.keys import Keyring
from soar.audit.sinks import FileSink, HttpSink, Publisher, Sink
from soar.config import Settings
from soar.engine.checkpointer import Checkpointer
from soar.errors import ConfigError
from soar.store.base import Store

_log = logging.getLogger("soar.audit")


def cli_actor() -> str:
    """Who runs this command, as the audit log names them."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def publisher_for(settings: Settings) -> Publisher:
    sinks: list[Sink] = []
    if settings.audit.publish_file is not None:
        sinks.append(FileSink(settings.audit.publish_file))
    if settings.audit.publish_url is not None:
        sinks.append(HttpSink(settings.audit.publish_url))
    return Publisher(sinks)


def checkpointer_for(settings: Settings, store: Store, keyring: Keyring) -> Checkpointer:
    return Checkpointer(
        store,
        keyring,
        publisher=publisher_for(settings),
        every=settings.audit.checkpoint_every,
        records=settings.audit.checkpoint_records,
    )


def optional_checkpointer(settings: Settings, store: Store) -> Checkpointer | None:
    """A checkpointer when the keyring exists; otherwise records are chained but unsigned."""
    if not settings.audit.enabled:
        return None
    try:
        keyring = Keyring.open(settings.audit.keys)
    except ConfigError as exc:
        _log.warning("audit checkpoints are not signed: %s", exc)
        return None
    return checkpointer_for(settings, store, keyring)
