"""The worker on the broker production runs, Apache Kafka (`tests/apache_kafka.py`): it connects
with the settings docs/ingestion.md gives for SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, in the
clear and over TLS) and mutual TLS; a wrong password or an untrusted broker stops it at once
with an error that says why and never shows the password; a broker restart mid-stream loses no
alert and starts no run twice; dead letters land once each, from an idempotent producer, with
the documented headers. And, for contrast, tansu, which refuses an idempotent producer: the
worker warns and writes plain dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import tomllib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]
from aiokafka.client import AIOKafkaClient  # type: ignore[import-untyped]
from aiokafka.errors import SaslAuthenticationFailed  # type: ignore[import-untyped]
from aiokafka.protocol.fetch import FetchRequest  # type: ignore[import-untyped]
from aiokafka.record.memory_records import MemoryRecords  # type: ignore[import-untyped]
from aiokafka.structs import TopicPartition  # type: ignore[import-untyped]

from soar.config import IngestSettings, KafkaSettings, Settings
from soar.engine import Engine
from soar.engine.engine import origin_run_id
from soar.errors import ConfigError
from soar.ingest.dead_letters import ENVELOPE_HEADER, VALUE_OMITTED_HEADER
from soar.ingest.worker import Worker
from soar.models.audit import AuditFilter
from soar.store import RunFilter, SqliteStore
from tests.apache_kafka import SASL_MECHANISMS, ApacheKafka
from tests.integration.ingest.kafka_tools import (
    MAX_BYTES,
    committed_offsets,
    end_offsets,
    good_mixed,
    playbooks,
    produce,
    read_all,
    run_worker_until,
)
from tests.kafka_broker import KafkaBroker

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

# Apache Kafka's default message.max.bytes is 1 MiB + 12: the source topic is made to take
# 2 MiB, the dead-letter topic refuses such a letter, which goes without its value
TWO_MIB = b'{"title": "' + b"y" * 2 * 1_048_576 + b'", "severity": "low"}'
# each bad message with the rejection code it gets
BAD: list[tuple[bytes, str]] = [
    (b"this is not json {", "not_json"),
    (b'{"title": "\xff\xfe bad bytes", "severity": "high"}', "not_utf8"),
    # third: letters to the same partition (one key) go before and after it, so a gap it left in
    # the producer's sequence numbers would stall the later ones
    (TWO_MIB, "too_large"),
    (json.dumps({"title": "x" * (MAX_BYTES + 10), "severity": "low"}).encode(), "too_large"),
    (b"[" * 10_000 + b"]" * 10_000, "too_deep"),
    (b"42", "not_an_object"),
    (b"", "not_json"),
]
ENVELOPE_KEYS = {"error", "source", "time", "worker"}
SOAR_HEADERS = [
    ENVELOPE_HEADER,
    "soar-error-code",
    "soar-source-topic",
    "soar-source-partition",
    "soar-source-offset",
]


def local(kafka: ApacheKafka) -> ApacheKafka:
    if not kafka.is_local:
        pytest.skip("KAFKA_BOOTSTRAP_SERVERS: an external cluster has no SASL listener or restart")
    return kafka


def worker_settings(bootstrap: str, name: str, **changes: Any) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=bootstrap,
        topics=[f"alerts-{name}"],
        group=f"soar-{name}",
        dead_letter_topic=f"dead-{name}",
        client_id=f"worker-{name}",
        commit_interval=0.1,
        drain_timeout=5,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        request_timeout_ms=10_000,
        **changes,
    )


async def create_topic(bootstrap: str, topic: str, *, max_message_bytes: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        config = {"max.message.bytes": str(max_message_bytes)}
        await admin.create_topics([NewTopic(topic, 3, 1, topic_configs=config)])
    finally:
        await admin.close()


async def producer_ids(bootstrap: str, topic: str) -> list[int]:
    """The producer id of every record batch of `topic`, read raw (a consumer does not show
    it): -1 for a batch written by a producer that is not idempotent."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await client.bootstrap()
    found: list[int] = []
    try:
        await client.add_topic(topic)
        for partition in sorted(client.cluster.partitions_for_topic(topic) or ()):
            leader = client.cluster.leader_for_partition(TopicPartition(topic, partition))
            request = FetchRequest(
                max_wait_time=0,
                min_bytes=1,
                max_bytes=16 * 1_048_576,
                isolation_level=0,
                topics=[(topic, [(partition, 0, 16 * 1_048_576)])],
            )
            response = await client.send(leader, request)
            for _, partitions in response.topics:
                for _, error_code, _, *data in partitions:
                    assert error_code == 0
                    records = MemoryRecords(data[-1])
                    while (batch := records.next_batch()) is not None:
                        found.append(batch.producer_id)
    finally:
        await client.close()
    return found


@contextlib.asynccontextmanager
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[tuple[Engine, SqliteStore]]:
    registry, loaded = playbooks()
    store = await SqliteStore.open(tmp_path / "soar.db")
    try:
        engine = Engine(store, registry, loaded)
        yield engine, store
        await engine.wait_idle()
        await engine.stop()
    finally:
        await store.close()


def taken(count: int) -> Callable[[Worker], Awaitable[bool]]:
    async def done(worker: Worker) -> bool:
        return worker.consumed + worker.dead_lettered >= count

    return done


# how the worker reaches the fixture's broker: the security_protocol of a block of
# docs/ingestion.md, and the mechanism when it differs from the block's
SASL = {f"SASL_PLAINTEXT {m}": ("SASL_PLAINTEXT", m) for m in SASL_MECHANISMS}
SASL["SASL_SSL SCRAM-SHA-512"] = ("SASL_SSL", None)
CONNECTIONS = {**SASL, "SSL with a client certificate": ("SSL", None)}
DOCS = Path(__file__).resolve().parents[3] / "docs" / "ingestion.md"
SECTION = "## Connecting to a real cluster: TLS and SASL"


def docs_blocks(kind: str) -> list[str]:
    """The ```KIND blocks of the docs' section on TLS and SASL."""
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n## ", len(SECTION))]
    return re.findall(rf"^```{kind}\n(.*?)^```", section, re.MULTILINE | re.DOTALL)


def docs_kafka_settings() -> dict[str, dict[str, Any]]:
    """The `[kafka]` table of each TOML block of that section, by security_protocol."""
    tables = [tomllib.loads(block)["kafka"] for block in docs_blocks("toml")]
    return {table["security_protocol"]: table for table in tables}


def connection_settings(
    kafka: ApacheKafka, name: str, connection: str, *, password: str | None = None
) -> KafkaSettings:
    """The worker's settings for `connection`: the docs' block as written, with the fixture's
    listener, files and login in place of the docs' hosts, paths and user (only where the
    block names them), and the password (the docs have it in the environment)."""
    protocol, mechanism = CONNECTIONS[connection]
    tls = kafka.tls
    assert tls is not None
    listeners = {
        "SASL_PLAINTEXT": kafka.sasl_bootstrap,
        "SASL_SSL": kafka.sasl_ssl_bootstrap,
        "SSL": kafka.ssl_bootstrap,
    }
    ours: dict[str, Any] = {
        "ssl_cafile": tls.ca,
        "ssl_certfile": tls.client_cert,
        "ssl_keyfile": tls.client_key,
        "sasl_username": kafka.username,
    }
    block = docs_kafka_settings()[protocol]
    changes = {key: ours.get(key, value) for key, value in block.items()}
    del changes["bootstrap_servers"]
    if mechanism is not None:
        changes["sasl_mechanism"] = mechanism
    if protocol.startswith("SASL"):
        changes["sasl_password"] = password or kafka.password
    bootstrap = listeners[protocol]
    assert bootstrap is not None
    return worker_settings(bootstrap, name, **changes)


def test_the_environment_example_is_the_sasl_ssl_example(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no soar.toml
    monkeypatch.delenv("SOAR_CONFIG", raising=False)
    (environment,) = docs_blocks("sh")
    for line in environment.splitlines():
        name, value = line.split("=", 1)
        monkeypatch.setenv(name, value)
    from_environment = Settings().kafka
    password = os.environ["SOAR_KAFKA__SASL_PASSWORD"]
    from_file = KafkaSettings(**docs_kafka_settings()["SASL_SSL"], sasl_password=password)
    assert from_environment == from_file


@pytest.mark.parametrize("connection", CONNECTIONS)
async def test_a_worker_connects_takes_alerts_in_and_dead_letters_a_bad_one(
    apache_kafka: ApacheKafka, tmp_path: Path, caplog: pytest.LogCaptureFixture, connection: str
) -> None:
    kafka = local(apache_kafka)
    assert kafka.password is not None
    caplog.set_level(logging.DEBUG)
    settings = connection_settings(kafka, uuid.uuid4().hex[:8], connection)
    topic = settings.topics[0]
    messages = [(good_mixed(n), []) for n in range(5)]
    messages.insert(2, (b"not json {", []))
    await produce(kafka.bootstrap, topic, messages)

    async with sqlite_engine(tmp_path) as (engine, store):
        worker = await run_worker_until(engine, settings, taken(len(messages)))
        await engine.wait_idle()
        runs = await store.list_runs(RunFilter(limit=100))
    assert Counter(r.playbook_id for r in runs) == {"note-every-alert": 5, "high-only": 2}
    assert worker.dead_letters.idempotent
    letters = await read_all(kafka.bootstrap, settings.dead_letter_topic, 1, within=20, linger=0.5)
    assert [(r.value, dict(r.headers)["soar-error-code"]) for r in letters] == [
        (b"not json {", b"not_json")
    ]
    assert await committed_offsets(kafka.bootstrap, settings.group, topic) == await end_offsets(
        kafka.bootstrap, topic
    )
    assert kafka.password not in caplog.text  # aiokafka's DEBUG log shows PLAIN's exchange


@pytest.mark.parametrize("connection", SASL)
async def test_a_wrong_password_stops_the_worker_at_once_with_an_error_naming_the_refusal(
    apache_kafka: ApacheKafka, tmp_path: Path, caplog: pytest.LogCaptureFixture, connection: str
) -> None:
    kafka = local(apache_kafka)
    caplog.set_level(logging.DEBUG)
    wrong = f"wrong-{uuid.uuid4().hex}"
    settings = connection_settings(kafka, uuid.uuid4().hex[:8], connection, password=wrong)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with sqlite_engine(tmp_path) as (engine, _):
        worker = Worker(engine, settings, IngestSettings())
        with pytest.raises(ConfigError) as refused:
            async with asyncio.timeout(30):
                await worker.run(asyncio.Event())
    assert loop.time() - started < 5
    text = str(refused.value)
    assert f"refused the {settings.sasl_mechanism} login of user 'soar'" in text
    assert isinstance(refused.value.__cause__, SaslAuthenticationFailed)
    shown = [text, repr(refused.value), repr(refused.value.__cause__), caplog.text]
    assert [wrong in s for s in shown] == [False] * len(shown)


async def test_a_worker_that_does_not_trust_the_broker_stops_with_an_error_naming_tls(
    apache_kafka: ApacheKafka, tmp_path: Path
) -> None:
    """Without `ssl_cafile` the system's CAs are used, and the session's CA is not one."""
    kafka = local(apache_kafka)
    settings = connection_settings(kafka, uuid.uuid4().hex[:8], "SSL with a client certificate")
    settings = settings.model_copy(update={"ssl_cafile": None})
    async with sqlite_engine(tmp_path) as (engine, _):
        worker = Worker(engine, settings, IngestSettings())
        with pytest.raises(ConfigError) as refused:
            async with asyncio.timeout(30):
                await worker.run(asyncio.Event())
    assert "TLS with 127.0.0.1:" in str(refused.value)
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)


async def test_a_broker_restart_mid_stream_loses_no_alert_and_starts_no_run_twice(
    apache_kafka: ApacheKafka, tmp_path: Path
) -> None:
    """A producer sends alerts (one in ten bad) steadily while the worker takes them in; the
    broker is restarted in the middle. Afterwards every good message has exactly its runs
    (their ids derive from the message's topic, partition and offset), every bad one its dead
    letter, and every offset is committed."""
    kafka = local(apache_kafka)
    name = uuid.uuid4().hex[:8]
    settings = worker_settings(kafka.bootstrap, name)
    topic = settings.topics[0]
    sent: list[bytes] = []
    producing = asyncio.Event()
    producing.set()

    async def send_steadily() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap, enable_idempotence=True, request_timeout_ms=10_000
        )
        await producer.start()
        try:
            n = 0
            while producing.is_set():
                value = b"not json {%d" % n if n % 10 == 9 else good_mixed(n)
                await producer.send_and_wait(topic, value=value, key=b"%d" % n)
                sent.append(value)
                n += 1
                await asyncio.sleep(0.01)
        finally:
            await producer.stop()

    async with sqlite_engine(tmp_path) as (engine, store):
        worker = Worker(engine, settings, IngestSettings(max_message_bytes=MAX_BYTES))
        stop = asyncio.Event()
        consuming = asyncio.create_task(worker.run(stop))
        sending = asyncio.create_task(send_steadily())
        try:
            async with asyncio.timeout(40):
                while worker.consumed < 30:
                    assert not consuming.done(), consuming.exception()
                    await asyncio.sleep(0.05)
                before = len(sent)
                await asyncio.to_thread(kafka.restart)
                while worker.consumed < before + 30 or len(sent) < before + 60:
                    assert not consuming.done(), consuming.exception()
                    await asyncio.sleep(0.05)
                producing.clear()
                await sending
                goods = [json.loads(v) for v in sent if not v.startswith(b"not json")]
                runs_due = sum(2 if a["severity"] == "high" else 1 for a in goods)
                while len(await store.list_runs(RunFilter(limit=10_000))) < runs_due:
                    assert not consuming.done(), consuming.exception()
                    await asyncio.sleep(0.1)
        finally:
            producing.clear()
            stop.set()
            async with asyncio.timeout(20):
                await consuming
            await sending
        await engine.wait_idle()
        runs = await store.list_runs(RunFilter(limit=10_000))

    records = await read_all(kafka.bootstrap, topic, len(sent), within=20, linger=0.5)
    assert sorted(r.value for r in records) == sorted(sent)  # the producer was idempotent too
    expected = {
        origin_run_id(f"kafka:{topic}/{r.partition}@{r.offset}#0", playbook)
        for r in records
        if not r.value.startswith(b"not json")
        for playbook in ("note-every-alert", "high-only")
        if playbook == "note-every-alert" or json.loads(r.value)["severity"] == "high"
    }
    assert len(runs) == len(expected)
    assert {r.id for r in runs} == expected
    assert {r.status.value for r in runs} == {"completed"}
    bad = {(r.partition, r.offset) for r in records if r.value.startswith(b"not json")}
    letters = await read_all(
        kafka.bootstrap, settings.dead_letter_topic, len(bad), within=20, linger=0.5
    )
    # at least once: a message read again after a rebalance is dead-lettered again, under the
    # same soar-source-* headers
    lettered = {
        (int(dict(r.headers)["soar-source-partition"]), int(dict(r.headers)["soar-source-offset"]))
        for r in letters
    }
    assert lettered == bad
    assert await committed_offsets(kafka.bootstrap, settings.group, topic) == await end_offsets(
        kafka.bootstrap, topic
    )


async def test_dead_letters_land_once_each_from_an_idempotent_producer_with_their_headers(
    apache_kafka: ApacheKafka, tmp_path: Path
) -> None:
    name = uuid.uuid4().hex[:8]
    settings = worker_settings(apache_kafka.bootstrap, name)
    topic = settings.topics[0]
    messages: list[tuple[bytes, list[Any]]] = []
    for n, (value, _) in enumerate(BAD):
        messages.append((value, [("origin", b"test"), ("n", b"%d" % n)]))
        messages.append((good_mixed(n), []))
    await create_topic(apache_kafka.bootstrap, topic, max_message_bytes=4 * 1_048_576)
    await produce(apache_kafka.bootstrap, topic, messages)
    sources = {
        (r.partition, r.offset): r
        for r in await read_all(apache_kafka.bootstrap, topic, len(messages), within=20, linger=0.5)
    }

    async with sqlite_engine(tmp_path) as (engine, store):
        worker = await run_worker_until(engine, settings, taken(len(messages)))
        rejected = await store.query_audit(AuditFilter(kind="alert.rejected", limit=100))
    assert worker.dead_letters.idempotent
    assert worker.dead_letters.producer_id is not None
    assert worker.dead_lettered == len(BAD)
    assert len(rejected) == len(BAD)

    letters = await read_all(
        apache_kafka.bootstrap, settings.dead_letter_topic, len(BAD), within=20, linger=0.5
    )
    assert len(letters) == len(BAD)  # once each
    found: dict[bytes, bytes] = {}
    for letter in letters:
        names = [header for header, _ in letter.headers]
        headers = dict(letter.headers)
        envelope = json.loads(headers[ENVELOPE_HEADER])
        assert set(envelope) == ENVELOPE_KEYS
        assert set(envelope["error"]) == {"code", "message", "field", "index"}
        assert envelope["worker"] == settings.client_id
        assert envelope["time"].endswith("Z")
        where = envelope["source"]
        source = sources[(where["partition"], where["offset"])]
        assert where == {
            "topic": topic,
            "partition": source.partition,
            "offset": source.offset,
            "timestamp": source.timestamp,
        }
        assert headers["soar-error-code"] == envelope["error"]["code"].encode()
        assert headers["soar-source-topic"] == topic.encode()
        assert headers["soar-source-partition"] == b"%d" % source.partition
        assert headers["soar-source-offset"] == b"%d" % source.offset
        assert letter.key == source.key
        if letter.value == b"" and source.value != b"":
            assert source.value == TWO_MIB
            assert names == [*SOAR_HEADERS, VALUE_OMITTED_HEADER, "origin", "n"]
            assert headers[VALUE_OMITTED_HEADER] == b"%d" % len(TWO_MIB)
        else:
            assert letter.value == source.value  # byte for byte
            assert names == [*SOAR_HEADERS, "origin", "n"]
        found[headers["n"]] = headers["soar-error-code"]
    assert found == {b"%d" % n: code.encode() for n, (_, code) in enumerate(BAD)}
    # the broker's view: every letter came from a producer with a producer id
    ids = await producer_ids(apache_kafka.bootstrap, settings.dead_letter_topic)
    assert ids
    assert min(ids) >= 0


async def test_a_broker_that_refuses_an_idempotent_producer_gets_plain_dead_letters(
    kafka_broker: KafkaBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """tansu answers InitProducerId with UNKNOWN: the worker says so once and goes on."""
    settings = worker_settings(kafka_broker.bootstrap, uuid.uuid4().hex[:8])
    await produce(kafka_broker.bootstrap, settings.topics[0], [(b"not json {", [])])
    async with sqlite_engine(tmp_path) as (engine, _):
        worker = await run_worker_until(engine, settings, taken(1))
    assert not worker.dead_letters.idempotent
    assert worker.dead_letters.producer_id is None
    warnings = [r.getMessage() for r in caplog.records if r.name == "soar.ingest"]
    assert [w for w in warnings if "idempotent_dead_letters" in w] != []
    letters = await read_all(
        kafka_broker.bootstrap, settings.dead_letter_topic, 1, within=20, linger=0.5
    )
    assert [r.value for r in letters] == [b"not json {"]
