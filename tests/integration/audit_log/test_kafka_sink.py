"""Checkpoints published to a Kafka topic, on a real Kafka-protocol broker (tansu)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped]

from soar.audit.kafka_sink import KafkaSink
from soar.audit.sinks import Publisher
from tests.kafka_broker import KafkaBroker

pytestmark = pytest.mark.kafka


def _checkpoint(seq: int) -> str:
    return json.dumps(
        {"type": "checkpoint", "log": "soar-test", "seq": seq, "head": f"{seq:064x}"},
        separators=(",", ":"),
    )


async def _consume(bootstrap: str, topic: str, count: int) -> list[tuple[int, bytes | None, bytes]]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        request_timeout_ms=5_000,
    )
    await consumer.start()
    received: list[tuple[int, bytes | None, bytes]] = []
    try:
        async with asyncio.timeout(10):
            while len(received) < count:
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    received.extend((r.partition, r.key, r.value) for r in records)
    finally:
        await consumer.stop()
    return received


async def test_checkpoints_arrive_in_order_under_the_log_key(kafka_broker: KafkaBroker) -> None:
    topic = f"checkpoints-{uuid.uuid4().hex}"
    sink = KafkaSink(kafka_broker.bootstrap, topic, key="log-7", request_timeout_ms=5_000)
    lines = [_checkpoint(seq) for seq in (1, 2, 3)]
    try:
        for line in lines:
            await sink.publish(line)
    finally:
        await sink.close()

    received = await _consume(kafka_broker.bootstrap, topic, len(lines))

    assert [value.decode("utf-8") for _, _, value in received] == lines
    assert {key for _, key, _ in received} == {b"log-7"}
    assert len({partition for partition, _, _ in received}) == 1
    assert sink.name == f"kafka:{kafka_broker.bootstrap}/{topic}"


async def test_the_sink_reopens_after_close(kafka_broker: KafkaBroker) -> None:
    topic = f"checkpoints-{uuid.uuid4().hex}"
    sink = KafkaSink(kafka_broker.bootstrap, topic, request_timeout_ms=5_000)
    try:
        await sink.publish(_checkpoint(1))
        await sink.close()
        await sink.publish(_checkpoint(2))
    finally:
        await sink.close()

    received = await _consume(kafka_broker.bootstrap, topic, 2)

    assert [value.decode() for _, _, value in received] == [_checkpoint(1), _checkpoint(2)]
    assert {key for _, key, _ in received} == {b"soar"}


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens once the socket is closed


async def test_an_unreachable_broker_raises_oserror_quickly() -> None:
    sink = KafkaSink(f"127.0.0.1:{_closed_port()}", "checkpoints", request_timeout_ms=1_000)
    started = time.monotonic()
    try:
        with pytest.raises(OSError, match="checkpoint not delivered"):
            await sink.publish(_checkpoint(1))
    finally:
        await sink.close()
    assert time.monotonic() - started < 3.0


async def test_the_publisher_keeps_a_refused_line_in_its_backlog() -> None:
    sink = KafkaSink(f"127.0.0.1:{_closed_port()}", "checkpoints", request_timeout_ms=1_000)
    publisher = Publisher([sink])
    try:
        await publisher.publish(_checkpoint(1))
        assert publisher.backlog == 1
        await publisher.publish(_checkpoint(2))
        assert publisher.backlog == 2
    finally:
        await sink.close()
