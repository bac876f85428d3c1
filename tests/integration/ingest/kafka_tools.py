"""What the worker's Kafka tests share: two playbooks, sample alerts, and a client's view of a
topic (produce, read back, end and committed offsets), plus a worker run until a condition."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.structs import TopicPartition  # type: ignore[import-untyped]

from soar.config import IngestSettings, KafkaSettings
from soar.connectors import Registry
from soar.connectors.core import core
from soar.engine import Engine
from soar.ingest.worker import Worker
from soar.playbook.validate import LoadedPlaybook, validate_text

PLAYBOOKS = [
    """\
    id: note-every-alert
    name: Note every alert
    trigger: {match: 'true'}
    steps:
      - {id: note, action: core.log, with: {message: "{{ alert.title }}"}}
    """,
    """\
    id: high-only
    name: Only high alerts
    trigger: {match: 'alert.severity == "high"'}
    steps:
      - {id: mark, action: core.noop}
    """,
]
MAX_BYTES = 65_536
TIME = "2026-11-29T10:00:00Z"


def playbooks() -> tuple[Registry, list[LoadedPlaybook]]:
    registry = Registry.of([core])
    loaded = []
    for text in PLAYBOOKS:
        result = validate_text(textwrap.dedent(text), file="p.yaml", registry=registry)
        assert result.loaded is not None, [str(d) for d in result.diagnostics]
        loaded.append(result.loaded)
    return registry, loaded


def good(n: int, severity: str = "medium") -> bytes:
    return json.dumps(
        {"title": f"alert {n}", "severity": severity, "id": f"a-{n}", "time": TIME}
    ).encode()


def good_mixed(n: int) -> bytes:
    """Alert `n`, high for every third `n` (0, 3, 6, ...) and medium otherwise."""
    return good(n, "high" if n % 3 == 0 else "medium")


async def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, list[Any]]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_request_size=4 * 1_048_576
    )
    await producer.start()
    try:
        for value, headers in messages:
            await producer.send_and_wait(topic, value=value, key=b"k", headers=headers)
    finally:
        await producer.stop()


async def read_all(
    bootstrap: str, topic: str, count: int, *, within: float = 30, linger: float = 0
) -> list[Any]:
    """The records of `topic` once `count` have arrived (in `within` seconds at most), plus,
    with `linger`, any that come in the next `linger` seconds (so a duplicate shows)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1_048_576,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        async with asyncio.timeout(within):
            while len(records) < count:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    records.extend(batch)
        if linger:
            for batch in (await consumer.getmany(timeout_ms=int(linger * 1000))).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # every topic's, not only subscribed ones
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items() if offset > 0}


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        found = {}
        for partition in consumer.partitions_for_topic(topic) or ():
            offset = await consumer.committed(TopicPartition(topic, partition))
            if offset:
                found[partition] = offset
    finally:
        await consumer.stop()
    return found


async def run_worker_until(
    engine: Engine,
    kafka: KafkaSettings,
    done: Callable[[Worker], Awaitable[bool]],
    *,
    within: float = 30,
) -> Worker:
    """A worker run until `done(worker)` holds (in `within` seconds at most), then stopped."""
    worker = Worker(engine, kafka, IngestSettings(max_message_bytes=MAX_BYTES))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        async with asyncio.timeout(within):
            while not await done(worker):
                assert not task.done(), task.exception()
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        async with asyncio.timeout(20):
            await task
    return worker
