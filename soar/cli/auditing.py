"""Audit wiring shared by the commands that run the engine or touch the log."""

from __future__ import annotations

import getpass
import logging

from soar.audit.kafka_sink import KafkaSink
from soar.audit.keys import Keyring
from soar.audit.sinks import FileSink, HttpSink, Publisher, Sink
from soar.config import Settings
from soar.engine.checkpointer import Checkpointer
from soar.errors import ConfigError
from soar.store.base import Store
from soar.telemetry.tracing import Tracing, configure_tracing

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
    if settings.audit.publish_kafka_bootstrap is not None:
        sinks.append(
            KafkaSink(
                settings.audit.publish_kafka_bootstrap,
                settings.audit.publish_kafka_topic,
                key=settings.audit.log_id,
            )
        )
    return Publisher(sinks)


def checkpointer_for(settings: Settings, store: Store, keyring: Keyring) -> Checkpointer:
    return Checkpointer(
        store,
        keyring,
        log_id=settings.audit.log_id,
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


def tracing_for(settings: Settings) -> Tracing:
    telemetry = settings.telemetry
    return configure_tracing(telemetry.traces, otlp_endpoint=telemetry.otlp_endpoint)
