"""`soar worker`'s Kafka side: a consumer-group member that turns each message into runs, or
into a dead letter, and commits a message's offset only once that outcome is durable.

Messages are handled concurrently (up to `kafka.max_in_flight`), so a partition's offsets finish
out of order; the offset committed for a partition is always its lowest unfinished one, so a
crash redelivers exactly the messages whose outcome was not yet durable. A redelivered message
finds its runs (their ids derive from the message's topic, partition and offset) and starts none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import (  # type: ignore[import-untyped]
    AIOKafkaConsumer,
    ConsumerRebalanceListener,
    TopicPartition,
)
from aiokafka.errors import KafkaConnectionError, KafkaError  # type: ignore[import-untyped]
from aiokafka.structs import OffsetAndMetadata  # type: ignore[import-untyped]

from soar.config import IngestSettings, KafkaSettings
from soar.engine import Engine
from soar.errors import AlertRejected, SoarError
from soar.ingest.dead_letters import DeadLetterProducer, Source, dead_letter_headers
from soar.ingest.kafka import client_options, start_client
from soar.ingest.limits import Limits
from soar.ingest.normalize import normalize
from soar.store.base import Change
from soar.telemetry.propagation import extract

_log = logging.getLogger("soar.ingest")
_POLL_MS = 200
_RETRY_FIRST_S = 0.2
_RETRY_MAX_S = 30.0
_MIN_FETCH_BYTES = 4 * 1_048_576
_ENVELOPE_ROOM = 65_536


class Offsets:
    """Per partition: the offsets handed out and not yet finished, and the next to fetch. What
    may be committed is the lowest unfinished offset, or the next one when none is."""

    def __init__(self) -> None:
        self._pending: dict[TopicPartition, set[int]] = {}
        self._next: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}

    def fetched(self, partition: TopicPartition, offset: int) -> None:
        self._pending.setdefault(partition, set()).add(offset)
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def finished(self, partition: TopicPartition, offset: int) -> None:
        pending = self._pending.get(partition)
        if pending is not None:
            pending.discard(offset)

    def committable(self, partitions: Iterable[TopicPartition] | None = None) -> dict[Any, Any]:
        """Offsets to commit (only those that moved), as aiokafka's `commit` takes them."""
        chosen = self._next if partitions is None else partitions
        moved: dict[Any, Any] = {}
        for partition in chosen:
            if partition not in self._next:
                continue
            pending = self._pending.get(partition)
            offset = min(pending) if pending else self._next[partition]
            if self._committed.get(partition) != offset:
                moved[partition] = OffsetAndMetadata(offset, "")
        return moved

    def committed(self, offsets: dict[Any, Any]) -> None:
        for partition, meta in offsets.items():
            self._committed[partition] = meta.offset

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """A partition given to another worker: what is still in flight here is theirs now."""
        for partition in partitions:
            self._pending.pop(partition, None)
            self._next.pop(partition, None)
            self._committed.pop(partition, None)

    def next_offset(self, partition: TopicPartition) -> int | None:
        """The offset after the last one fetched from `partition`, if any was."""
        return self._next.get(partition)

    def in_flight(self) -> int:
        return sum(len(p) for p in self._pending.values())


class Worker:
    """Reads `kafka.topics` in the consumer group `kafka.group` into `engine`."""

    def __init__(self, engine: Engine, kafka: KafkaSettings, ingest: IngestSettings) -> None:
        self.engine = engine
        self.kafka = kafka
        self.formats = dict(ingest.formats)
        self.limits = Limits(
            max_bytes=ingest.max_message_bytes,
            max_depth=ingest.max_depth,
            max_batch=ingest.max_batch,
        )
        self.offsets = Offsets()
        self.consumed = 0
        self.dead_lettered = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._consumer: Any = None
        # a message of any size the broker gave out is fetched whole, to be dead-lettered whole
        self._fetch_bytes = max(_MIN_FETCH_BYTES, self.limits.max_bytes * 4)
        self.dead_letters = DeadLetterProducer(
            kafka, max_request_size=self._fetch_bytes + _ENVELOPE_ROOM
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; then finish the messages in flight (their runs are
        recorded; the runs themselves go on, or are parked by `engine.stop`) and commit.

        A worker started while its brokers are unreachable (a restart of both at once) waits for
        them, retrying with backoff, until `stop`.

        Raises:
            ConfigError: the settings cannot be used, or a broker refused the login.
        """
        if not await _until_reached(self.dead_letters.start, stop):
            return
        try:
            await self._consume_until(stop)
        finally:
            await self.dead_letters.stop()

    async def _consume_until(self, stop: asyncio.Event) -> None:
        self._consumer = AIOKafkaConsumer(
            group_id=self.kafka.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.kafka.max_poll_records,
            fetch_max_wait_ms=self.kafka.fetch_max_wait_ms,
            session_timeout_ms=self.kafka.session_timeout_ms,
            heartbeat_interval_ms=self.kafka.heartbeat_interval_ms,
            rebalance_timeout_ms=self.kafka.session_timeout_ms,
            max_partition_fetch_bytes=self._fetch_bytes,
            **client_options(self.kafka),
        )
        self._consumer.subscribe(self.kafka.topics, listener=_Revoked(self))
        consumer = self._consumer
        if not await _until_reached(lambda: start_client(consumer, self.kafka), stop):
            return
        try:
            await self._consume(stop)
        finally:
            await self._drain()
            await self._consumer.stop()

    async def _consume(self, stop: asyncio.Event) -> None:
        consumer = self._consumer
        last_commit = time.monotonic()
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                free = self.kafka.max_in_flight - len(self._tasks)
                if free <= 0:
                    await self._wait_for_room(stopping)
                    continue
                batches = await consumer.getmany(timeout_ms=_POLL_MS, max_records=free)
                for partition, records in batches.items():
                    for record in records:
                        self.offsets.fetched(partition, record.offset)
                        task = asyncio.ensure_future(self._handle(partition, record))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
                if time.monotonic() - last_commit >= self.kafka.commit_interval:
                    await self._commit()
                    last_commit = time.monotonic()
        finally:
            stopping.cancel()

    async def _wait_for_room(self, stopping: asyncio.Future[Any]) -> None:
        """Backpressure: fetch nothing more until a message in flight is done (the consumer
        stays in its group: heartbeats go on without polls)."""
        consumer = self._consumer
        assigned = list(consumer.assignment())
        consumer.pause(*assigned)
        try:
            await asyncio.wait(
                [*self._tasks, stopping],
                timeout=self.kafka.commit_interval,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            consumer.resume(*[p for p in assigned if p in consumer.assignment()])
        await self._commit()

    async def _drain(self) -> None:
        """Let the messages in flight finish (for at most `drain_timeout`: one stuck on an
        unreachable store is given up and read again by the next owner), then commit."""
        if self._tasks:
            _, stuck = await asyncio.wait(set(self._tasks), timeout=self.kafka.drain_timeout)
            for task in stuck:
                task.cancel()
            if stuck:
                _log.warning(
                    "%d message(s) not taken in before shutdown: read again later", len(stuck)
                )
                await asyncio.gather(*stuck, return_exceptions=True)
        await self._commit()

    def _report_lag(self) -> None:
        consumer = self._consumer
        instruments = self.engine.instruments
        for partition in consumer.assignment():
            end = consumer.highwater(partition)
            fetched = self.offsets.next_offset(partition)
            if end is not None and fetched is not None:
                instruments.consumer_lag(partition.topic, partition.partition, end - fetched)

    async def _commit(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        if partitions is None:
            self._report_lag()
        offsets = self.offsets.committable(partitions)
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:  # a rebalance in progress: the next commit carries them
            _log.warning("offset commit failed, will retry: %s", exc)
            return
        self.offsets.committed(offsets)

    async def _handle(self, partition: TopicPartition, record: Any) -> None:
        """Turn one message into its runs or its dead letter, retrying (with backoff, until the
        worker stops) whatever fails for reasons that are not the message's."""
        source = Source(record.topic, record.partition, record.offset, record.timestamp)
        delay = _RETRY_FIRST_S
        while True:
            try:
                await self._take(record, source)
            except (SoarError, KafkaError, OSError) as exc:
                _log.warning(
                    "%s: not taken in yet (%s); retrying in %.1fs", source.origin(), exc, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_S)
                continue
            self.offsets.finished(partition, record.offset)
            return

    async def _take(self, record: Any, source: Source) -> None:
        value: bytes = record.value if record.value is not None else b""
        try:
            alerts = normalize(value, format=self.formats.get(record.topic), limits=self.limits)
        except AlertRejected as rejection:
            await self._dead_letter(record, value, source, rejection)
            return
        trace = extract(record.headers)  # the W3C trace context the producer sent, if any
        for index, alert in enumerate(alerts):
            await self.engine.submit_alert(alert, trace=trace, origin=f"{source.origin()}#{index}")
        self.engine.instruments.alert_consumed(record.topic)
        self.consumed += 1

    async def _dead_letter(
        self, record: Any, value: bytes, source: Source, rejection: AlertRejected
    ) -> None:
        engine = self.engine
        message = str(engine.evidence.redact(rejection.message))
        now = engine.clock.now()
        headers = dead_letter_headers(
            rejection,
            source,
            now,
            worker=self.kafka.client_id,
            message=message,
        )
        await self.dead_letters.send(
            value, record.key, headers, original=tuple(record.headers or ())
        )
        event = engine.evidence.alert_rejected(
            value, now, source=source.origin(), reason=rejection.code.value, message=message
        )
        if event is not None:
            await engine.store.apply(Change(audit=[event]))
        engine.instruments.alert_dead_lettered(rejection.code.value)
        self.dead_lettered += 1
        _log.info("%s dead-lettered: %s: %s", source.origin(), rejection.code.value, message)


async def _until_reached(start: Callable[[], Awaitable[None]], stop: asyncio.Event) -> bool:
    """Run `start` until no broker is unreachable; False when `stop` came first."""
    delay = _RETRY_FIRST_S
    while not stop.is_set():
        try:
            await start()
        except KafkaConnectionError as exc:
            _log.warning("kafka is not reachable (%s); trying again in %.1fs", exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, _RETRY_MAX_S)
            continue
        return True
    return False


class _Revoked(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commit what is durable of the partitions this worker is losing, then let them go."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.worker._commit(revoked)
        self.worker.offsets.forget(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        _log.info("partitions assigned: %s", sorted(f"{p.topic}/{p.partition}" for p in assigned))
