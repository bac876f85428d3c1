"""Dead letters: a message soar cannot take in goes, byte for byte, to the dead-letter topic with
why and where it came from, before its offset is committed (docs/ingestion.md, "Dead letters").

The record's value is the original bytes and its key the original key. Its headers are, first,
`soar-dead-letter`, a JSON envelope:

    {"error": {"code": "not_json", "message": "...", "field": null, "index": null},
     "source": {"topic": "alerts", "partition": 3, "offset": 1042, "timestamp": 1764000000000},
     "time": "2026-11-29T10:00:00.000000Z", "worker": "soar-worker"}

then `soar-error-code`, `soar-source-topic`, `soar-source-partition` and `soar-source-offset` as
plain UTF-8 (to filter on without parsing), then `soar-value-omitted` (the original size) when the
dead-letter topic refused the letter whole and it went without its value, then the original
message's own headers.

`DeadLetterProducer` writes them: acks=all, and idempotent where the broker grants a producer id,
so a retry after a lost acknowledgement is dropped by the broker rather than written twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.errors import (  # type: ignore[import-untyped]
    BrokerResponseError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
)

from soar.config import KafkaSettings
from soar.engine.evidence import rfc3339
from soar.errors import AlertRejected
from soar.ingest.kafka import client_options, start_client

ENVELOPE_HEADER = "soar-dead-letter"
VALUE_OMITTED_HEADER = "soar-value-omitted"
_log = logging.getLogger("soar.ingest")


@dataclass(frozen=True, slots=True)
class Source:
    """Where a message was read: enough to find it again, and the same on every delivery."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None = None

    def origin(self) -> str:
        """`kafka:TOPIC/PARTITION@OFFSET`, as the audit log and run ids name it."""
        return f"kafka:{self.topic}/{self.partition}@{self.offset}"


def dead_letter_headers(
    rejection: AlertRejected,
    source: Source,
    at: datetime,
    *,
    worker: str,
    message: str,
    original: tuple[tuple[str, bytes], ...] = (),
) -> list[tuple[str, bytes]]:
    """The headers of the dead letter for a message refused with `rejection`; `message` is the
    refusal's text as it may be shown (secrets hidden)."""
    envelope: dict[str, Any] = {
        "error": {
            "code": rejection.code.value,
            "message": message,
            "field": rejection.field,
            "index": rejection.index,
        },
        "source": {
            "topic": source.topic,
            "partition": source.partition,
            "offset": source.offset,
            "timestamp": source.timestamp,
        },
        "time": rfc3339(at),
        "worker": worker,
    }
    return [
        (ENVELOPE_HEADER, json.dumps(envelope, ensure_ascii=False).encode()),
        ("soar-error-code", rejection.code.value.encode()),
        ("soar-source-topic", source.topic.encode()),
        ("soar-source-partition", str(source.partition).encode()),
        ("soar-source-offset", str(source.offset).encode()),
        *original,
    ]


class DeadLetterProducer:
    """The worker's writer of dead letters to `kafka.dead_letter_topic`, with acks=all.

    With `kafka.idempotent_dead_letters` (the default) its producer is idempotent: the broker
    gives it a producer id and numbers its records per partition, and drops a record it already
    has, so the producer's own retries (a lost acknowledgement, a broker restart) never write a
    letter twice. A broker that refuses a producer id (the embedded tansu does) gets a warning
    and a plain producer. `idempotent` says which one is in use.

    A letter the broker refuses leaves a gap in the partition's sequence numbers that would
    refuse every later letter there, so after any failed send an idempotent producer is
    replaced by a new one (a new producer id) before the error is raised.
    """

    def __init__(self, settings: KafkaSettings, *, max_request_size: int) -> None:
        self.settings = settings
        self.topic = settings.dead_letter_topic
        self.max_request_size = max_request_size
        self.idempotent = settings.idempotent_dead_letters
        self._producer: Any = None
        self._renewing = asyncio.Lock()

    @property
    def producer_id(self) -> int | None:
        """The broker-assigned producer id of an idempotent producer; None for a plain one."""
        # aiokafka has no public accessor; its transaction manager holds the id
        manager = None if self._producer is None else self._producer._txn_manager
        return None if manager is None or not manager.has_pid() else int(manager.producer_id)

    async def start(self) -> None:
        """Connect, and (when idempotent) get a producer id.

        Raises:
            ConfigError: the broker refused the login.
            KafkaError: no broker could be reached.
        """
        if self.idempotent:
            try:
                self._producer = await self._open(idempotent=True)
            except BrokerResponseError as exc:  # to InitProducerId: tansu answers UNKNOWN
                _log.warning(
                    "the broker refused an idempotent producer (%r): dead letters are written "
                    "without one, so a broker retry may write one twice; set "
                    "kafka.idempotent_dead_letters = false to not ask",
                    exc,
                )
                self.idempotent = False
            else:
                return
        self._producer = await self._open(idempotent=False)

    async def stop(self) -> None:
        """Wait for the letters being sent, then close."""
        if self._producer is not None:
            await self._producer.stop()

    async def send(
        self,
        value: bytes,
        key: bytes | None,
        headers: list[tuple[str, bytes]],
        *,
        original: tuple[tuple[str, bytes], ...] = (),
    ) -> None:
        """Write one letter, soar's `headers` then the message's `original` ones, and wait for
        every in-sync replica to have it. A letter larger than the topic takes is written
        without its value, with `soar-value-omitted: SIZE` after soar's headers.

        Raises:
            KafkaError: it was not written (the caller tries again later).
        """
        try:
            await self._send(value, key, [*headers, *original])
        except (MessageSizeTooLargeError, RecordTooLargeError):
            # the dead-letter topic takes less than the source did: the letter goes without the
            # message's bytes (their digest is in the audit record), rather than never
            omitted = (VALUE_OMITTED_HEADER, str(len(value)).encode())
            await self._send(b"", key, [*headers, omitted, *original])

    async def _send(
        self, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        producer = self._producer
        try:
            await producer.send_and_wait(self.topic, value=value, key=key, headers=headers)
        except KafkaError:
            if self.idempotent:
                await self._renew(producer)
            raise

    async def _renew(self, failed: Any) -> None:
        async with self._renewing:
            if self._producer is not failed:  # another send has replaced it already
                return
            self._producer = await self._open(idempotent=True)
        await failed.stop()

    async def _open(self, *, idempotent: bool) -> Any:
        producer = AIOKafkaProducer(
            acks="all",
            enable_idempotence=idempotent,
            max_request_size=self.max_request_size,
            **client_options(self.settings),
        )
        await start_client(producer, self.settings)
        return producer
