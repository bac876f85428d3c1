"""`soar bench ingest`: alerts through Kafka and `soar worker` into runs of a four-step playbook
on the durable store, beside the raw consume rate of the same broker measured in the same run.

Two phases on one worker: a backlog of N alerts (throughput, from the first run's start to the
last run's end), then alerts produced at a steady rate while the worker keeps up (latency, from
the producer's send to the run's first action).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.structs import TopicPartition  # type: ignore[import-untyped]

from soar.config import IngestSettings, KafkaSettings
from soar.connectors.core import core
from soar.connectors.registry import Registry
from soar.engine import Engine, RunExecutor
from soar.ingest.worker import Worker
from soar.models.run import Transition, TransitionKind
from soar.playbook.validate import LoadedPlaybook, validate_text
from soar.store.base import Store

PLAYBOOK = """\
id: bench-ingest
name: Four no-op steps for every alert
trigger: {match: 'true'}
steps:
  - {id: s1, action: core.noop}
  - {id: s2, action: core.noop, when: 'steps.s1.status == "succeeded"'}
  - {id: s3, action: core.noop}
  - {id: s4, action: core.noop}
"""
_WAIT_S = 300.0


@dataclass(frozen=True, slots=True)
class IngestFigures:
    alerts: int
    alerts_per_s: float
    raw_consume_per_s: float
    latency_alerts: int
    latency_rate_per_s: float
    p50_ms: float
    p99_ms: float


def _playbook(registry: Registry) -> LoadedPlaybook:
    result = validate_text(PLAYBOOK, file="bench-ingest.yaml", registry=registry)
    assert result.loaded is not None, result.diagnostics  # noqa: S101
    return result.loaded


def _alert(number: int, sent: float) -> bytes:
    body = {
        "title": f"bench alert {number}",
        "severity": "medium",
        "time": "2026-11-29T10:00:00Z",
        "id": f"bench-{number}",
        "sent": sent,  # kept in the alert's raw fields: where the latency is measured from
    }
    return json.dumps(body).encode()


async def _produce(producer: Any, topic: str, numbers: range) -> None:
    sends = [await producer.send(topic, _alert(n, time.time())) for n in numbers]
    await asyncio.gather(*sends)


async def _raw_consume_rate(bootstrap: str, topic: str, count: int) -> float:
    """Messages/s a bare consumer reads the backlog at (no group, no processing)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        read = 0
        started = time.perf_counter()
        async with asyncio.timeout(_WAIT_S):
            while read < count:
                batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
                read += sum(len(b) for b in batches.values())
        return read / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def measure_ingest(
    bootstrap: str,
    store: Store,
    *,
    alerts: int,
    latency_alerts: int = 500,
    rate_per_s: float = 200.0,
    max_in_flight: int = 256,
) -> IngestFigures:
    registry = Registry.of([core])
    engine = Engine(store, registry, [_playbook(registry)])
    topic = f"soar-bench-{uuid.uuid4().hex[:8]}"
    started: list[float] = []
    finished: list[float] = []
    latencies: list[float] = []

    def observe(executor: RunExecutor, transitions: list[Transition]) -> None:
        for transition in transitions:
            if transition.kind is TransitionKind.RUN_FINISHED:
                finished.append(time.perf_counter())
            elif transition.kind is TransitionKind.STEP_STARTED and transition.step == "s1":
                if not started:
                    started.append(time.perf_counter())
                alert = executor.run.alert
                raw = alert.get("raw") if isinstance(alert, dict) else None
                sent = raw.get("sent") if isinstance(raw, dict) else None
                if isinstance(sent, float):
                    latencies.append(time.time() - sent)

    engine.observe(observe)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        await _produce(producer, topic, range(alerts))
        raw_rate = await _raw_consume_rate(bootstrap, topic, alerts)
        kafka = KafkaSettings(
            bootstrap_servers=bootstrap,
            topics=[topic],
            group=f"{topic}-group",
            dead_letter_topic=f"{topic}-dead",
            max_in_flight=max_in_flight,
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
        )
        worker = Worker(engine, kafka, IngestSettings())
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            await _until(lambda: len(finished) >= alerts, task)
            seconds = finished[alerts - 1] - started[0]
            latencies.clear()
            total = alerts + latency_alerts
            interval = 1 / rate_per_s
            for number in range(alerts, total):
                await producer.send(topic, _alert(number, time.time()))
                await asyncio.sleep(interval)
            await _until(lambda: len(finished) >= total, task)
        finally:
            stop.set()
            await task
    finally:
        await producer.stop()
        await engine.stop()
    latencies.sort()
    return IngestFigures(
        alerts=alerts,
        alerts_per_s=alerts / seconds,
        raw_consume_per_s=raw_rate,
        latency_alerts=len(latencies),
        latency_rate_per_s=rate_per_s,
        p50_ms=statistics.median(latencies) * 1000 if latencies else float("nan"),
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        if latencies
        else float("nan"),
    )


async def _until(condition: Any, task: asyncio.Task[None]) -> None:
    async with asyncio.timeout(_WAIT_S):
        while not condition():
            if task.done():
                task.result()  # the worker failed: say why
                raise RuntimeError("the worker stopped before the alerts were taken in")
            await asyncio.sleep(0.01)
