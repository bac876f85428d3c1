"""The Apache Kafka fixture with the project's client, aiokafka: consumer groups and committed
offsets, idempotent and transactional producers (which tansu lacks), data kept across a broker
restart, and the worker's SASL PLAIN and SCRAM-SHA-256 settings against a real listener."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.conn import create_conn  # type: ignore[import-untyped]
from aiokafka.errors import SaslAuthenticationFailed  # type: ignore[import-untyped]
from aiokafka.structs import TopicPartition  # type: ignore[import-untyped]

from soar.config import KafkaSettings
from soar.ingest.kafka import client_options
from tests.apache_kafka import ApacheKafka

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

MECHANISMS = ["PLAIN", "SCRAM-SHA-256"]


def _name(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex}"


def _local(kafka: ApacheKafka) -> ApacheKafka:
    if not kafka.is_local:
        pytest.skip("KAFKA_BOOTSTRAP_SERVERS: an external cluster has no SASL listener or restart")
    return kafka


async def _produce(bootstrap: str, topic: str, values: list[bytes], **options: object) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=10_000, **options)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, partition=0)
    finally:
        await producer.stop()


async def _consume(consumer: AIOKafkaConsumer, count: int, *, within: float = 20) -> list[bytes]:
    """Exactly the values that arrive until `count` have, or `within` seconds have passed."""
    received: list[bytes] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while len(received) < count and loop.time() < deadline:
        batches = await consumer.getmany(timeout_ms=200)
        for records in batches.values():
            received.extend(record.value for record in records)
    return received


def _group_consumer(bootstrap: str, topic: str, group: str, **options: object) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        request_timeout_ms=10_000,
        **options,
    )


async def test_a_consumer_group_resumes_after_its_committed_offset(
    apache_kafka: ApacheKafka,
) -> None:
    topic, group = _name("orders"), _name("group")
    await _produce(apache_kafka.bootstrap, topic, [b"a", b"b", b"c"])

    first = _group_consumer(apache_kafka.bootstrap, topic, group)
    await first.start()
    try:
        assert await _consume(first, 3) == [b"a", b"b", b"c"]
        await first.commit()
        assert await first.committed(TopicPartition(topic, 0)) == 3
    finally:
        await first.stop()

    await _produce(apache_kafka.bootstrap, topic, [b"d", b"e"])
    second = _group_consumer(apache_kafka.bootstrap, topic, group)
    await second.start()
    try:
        assert await _consume(second, 2) == [b"d", b"e"]
        assert await _consume(second, 1, within=1) == []
    finally:
        await second.stop()


async def test_an_idempotent_producer_writes_each_message_once(
    apache_kafka: ApacheKafka,
) -> None:
    topic = _name("idempotent")
    values = [f"m{i}".encode() for i in range(20)]
    producer = AIOKafkaProducer(
        bootstrap_servers=apache_kafka.bootstrap, enable_idempotence=True, request_timeout_ms=10_000
    )
    await producer.start()
    try:
        sent = await asyncio.gather(*[await producer.send(topic, v, partition=0) for v in values])
    finally:
        await producer.stop()
    assert [metadata.offset for metadata in sent] == list(range(20))

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=apache_kafka.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        assert await _consume(consumer, 20) == values
        assert await _consume(consumer, 1, within=1) == []
    finally:
        await consumer.stop()


async def test_a_read_committed_consumer_skips_an_aborted_transaction(
    apache_kafka: ApacheKafka,
) -> None:
    topic = _name("transactions")
    producer = AIOKafkaProducer(
        bootstrap_servers=apache_kafka.bootstrap,
        transactional_id=_name("txn"),
        request_timeout_ms=10_000,
    )
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"kept", partition=0)
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"aborted", partition=0)
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send_and_wait(topic, b"kept too", partition=0)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=apache_kafka.bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        assert await _consume(consumer, 2) == [b"kept", b"kept too"]
        assert await _consume(consumer, 1, within=1) == []
    finally:
        await consumer.stop()


async def test_messages_and_committed_offsets_survive_a_broker_restart(
    apache_kafka: ApacheKafka,
) -> None:
    kafka = _local(apache_kafka)
    topic, group = _name("durable"), _name("group")
    await _produce(kafka.bootstrap, topic, [b"one", b"two", b"three"])
    consumer = _group_consumer(kafka.bootstrap, topic, group)
    await consumer.start()
    try:
        await consumer.commit({TopicPartition(topic, 0): 2})
    finally:
        await consumer.stop()

    await asyncio.to_thread(kafka.restart)

    everything = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka.bootstrap, auto_offset_reset="earliest"
    )
    await everything.start()
    try:
        assert await _consume(everything, 3) == [b"one", b"two", b"three"]
    finally:
        await everything.stop()
    resumed = _group_consumer(kafka.bootstrap, topic, group)
    await resumed.start()
    try:
        assert await _consume(resumed, 1) == [b"three"]
        assert await _consume(resumed, 1, within=1) == []
    finally:
        await resumed.stop()


def _sasl_settings(kafka: ApacheKafka, mechanism: str, password: str) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=kafka.sasl_bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=mechanism,
        sasl_username=kafka.username,
        sasl_password=password,
        request_timeout_ms=10_000,
    )


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_the_worker_sasl_settings_log_in_produce_and_consume(
    apache_kafka: ApacheKafka, mechanism: str
) -> None:
    kafka = _local(apache_kafka)
    assert kafka.password is not None
    options = client_options(_sasl_settings(kafka, mechanism, kafka.password))
    topic, group = _name("sasl"), _name("group")
    producer = AIOKafkaProducer(**options)
    await producer.start()
    try:
        await producer.send_and_wait(topic, mechanism.encode(), partition=0)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False, **options
    )
    await consumer.start()
    try:
        assert await _consume(consumer, 1) == [mechanism.encode()]
    finally:
        await consumer.stop()


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_a_wrong_password_is_refused(apache_kafka: ApacheKafka, mechanism: str) -> None:
    kafka = _local(apache_kafka)
    options = client_options(_sasl_settings(kafka, mechanism, "not-the-password"))
    host, port = options.pop("bootstrap_servers").split(":")
    with pytest.raises(SaslAuthenticationFailed):
        await create_conn(host, int(port), **options)
