"""`soar bench ingest`: alerts through Kafka into runs of a four-step playbook, taken in by N
worker processes in one consumer group on one store, beside the raw consume rate of the broker.

Each worker is an OS process of its own (`python -m soar.ingest.benchmark CONFIG`), as `soar
worker` runs: its own event loop, store connections, `Engine` and `Worker`. `measure_ingest`
makes the topic (2 partitions per worker), starts the workers, waits until the group is stable,
warms them up, then measures a backlog of N alerts (from the first message produced to the last
run finished), the raw consume rate of the same messages, and alerts produced at a steady rate
(latency: from the producer's send to the run's first action), and counts the runs in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import signal
import statistics
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]
from aiokafka.structs import TopicPartition  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict

from soar.config import IngestSettings, KafkaSettings
from soar.connectors.core import core
from soar.connectors.registry import Registry
from soar.engine import Engine, RunExecutor
from soar.ingest.worker import Worker
from soar.models.run import Transition, TransitionKind
from soar.playbook.validate import LoadedPlaybook, validate_text
from soar.store import RunFilter, Store, open_store

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
WARMUP_PER_WORKER = 50
"""Alerts each worker takes in before the clock starts (connections, caches, first imports)."""
_WAIT_S = 300.0  # for any one phase; a benchmark that takes longer is broken
_STOP_S = 60.0  # for the workers to drain and exit after SIGTERM
_REPORT_S = 0.02  # how often a worker reports its progress (the figures use its own clock)
Phase = Literal["warmup", "backlog", "latency"]
_PHASES: tuple[Phase, ...] = ("warmup", "backlog", "latency")


@dataclass(frozen=True, slots=True)
class IngestFigures:
    """What one measurement found. Rates are per second of wall time; latencies in ms."""

    workers: int
    partitions: int
    alerts: int
    alerts_per_s: float
    """Backlog alerts / (last backlog run finished - first backlog alert produced)."""
    per_worker: tuple[int, ...]
    """Backlog runs each worker finished."""
    raw_consume_per_s: float
    latency_alerts: int
    latency_rate_per_s: float
    p50_ms: float
    p99_ms: float
    runs_expected: int
    """Warm-up, backlog and latency alerts: one run each."""
    runs_recorded: int
    alerts_recorded: int
    """Distinct alert ids among the runs recorded."""
    runs_completed: int
    changes_per_commit: float | None
    """Changes per write transaction over the workers' stores (group commit), if they count."""


def _playbook(registry: Registry) -> LoadedPlaybook:
    result = validate_text(PLAYBOOK, file="bench-ingest.yaml", registry=registry)
    assert result.loaded is not None, result.diagnostics  # noqa: S101
    return result.loaded


def _alert(number: int, phase: Phase, sent: float) -> bytes:
    body = {
        "title": f"bench alert {number}",
        "severity": "medium",
        "time": "2026-11-29T10:00:00Z",
        "id": f"bench-{number}",
        "phase": phase,
        "sent": sent,  # kept in the alert's raw fields: where the latency is measured from
    }
    return json.dumps(body).encode()


# -- one worker process -------------------------------------------------------------------------


class WorkerConfig(BaseModel):
    """What `measure_ingest` tells each worker process (its one argument, as JSON)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bootstrap: str
    store: str
    topic: str
    group: str
    name: str
    max_in_flight: int
    count: bool
    """Count the runs in the store before closing it (a memory store dies with the worker)."""


@dataclass
class _Tally:
    """What one worker saw of its runs, on its own clock (`time.time()`, shared by the host)."""

    finished: Counter[str] = field(default_factory=Counter)
    last_backlog: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def observe(self, executor: RunExecutor, transitions: list[Transition]) -> None:
        alert = executor.run.alert
        raw = alert.get("raw") if isinstance(alert, dict) else None
        phase = raw.get("phase") if isinstance(raw, dict) else None
        for transition in transitions:
            if transition.kind is TransitionKind.RUN_FINISHED:
                self.finished[str(phase)] += 1
                if phase == "backlog":
                    self.last_backlog = time.time()
            elif (
                transition.kind is TransitionKind.STEP_STARTED
                and transition.step == "s1"
                and phase == "latency"
                and isinstance(raw, dict)
                and isinstance(sent := raw.get("sent"), float)
            ):
                self.latencies.append(time.time() - sent)

    def progress(self) -> dict[str, Any]:
        return {"finished": dict(self.finished), "last_backlog": self.last_backlog}


def _emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def _report(tally: _Tally) -> None:
    sent: dict[str, Any] = {}
    while True:
        progress = tally.progress()
        if progress != sent:
            _emit(progress)
            sent = progress
        await asyncio.sleep(_REPORT_S)


async def work(config: WorkerConfig) -> None:
    """One worker: an Engine and a Worker on the store and topic `config` names, until SIGTERM;
    prints its progress as JSON lines, and a last line with its latencies and counts."""
    registry = Registry.of([core])
    tally = _Tally()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with open_store(config.store) as store:
        engine = Engine(store, registry, [_playbook(registry)], worker=config.name)
        engine.observe(tally.observe)
        await engine.start(cron=False)
        kafka = KafkaSettings(
            bootstrap_servers=config.bootstrap,
            topics=[config.topic],
            group=config.group,
            dead_letter_topic=f"{config.topic}-dead",
            client_id=config.name,
            max_in_flight=config.max_in_flight,
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
        )
        reporter = asyncio.create_task(_report(tally))
        try:
            await Worker(engine, kafka, IngestSettings()).run(stop)
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
            await engine.stop()
        counted = await count_runs(store, limit=1_000_000) if config.count else None
        # the durable stores count their write transactions and the changes in them
        commits: int | None = getattr(store, "commits", None)
        changes: int | None = getattr(store, "changes", None)
    _emit(
        {
            **tally.progress(),
            "final": True,
            "latencies": tally.latencies,
            "counted": counted,
            "commits": commits,
            "changes": changes,
        }
    )


async def count_runs(store: Store, *, limit: int) -> tuple[int, int, int]:
    """Runs in `store` (at most `limit`), distinct alert ids among them, and runs completed."""
    runs = await store.list_runs(RunFilter(limit=limit))
    ids = {run.alert.get("id") for run in runs if isinstance(run.alert, dict)}
    completed = sum(1 for run in runs if run.status.value == "completed")
    return len(runs), len(ids), completed


# -- the group, from the parent ---------------------------------------------------------------


@dataclass
class _Member:
    name: str
    process: asyncio.subprocess.Process
    log: Path
    finished: dict[str, int] = field(default_factory=dict)
    last_backlog: float = 0.0
    final: dict[str, Any] | None = None

    async def read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None  # noqa: S101 - started with a pipe
        async for raw in stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                continue  # not ours: a library printing
            if not isinstance(line, dict):
                continue
            self.finished = line.get("finished", self.finished)
            self.last_backlog = line.get("last_backlog", self.last_backlog)
            if line.get("final"):
                self.final = line

    def failure(self) -> str | None:
        """Why this worker is gone, if it is."""
        code = self.process.returncode
        if code is None:
            return None
        tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        return f"bench worker {self.name} exited with status {code}; its log {self.log}:\n{tail}"


class _Group:
    """N worker processes in one consumer group."""

    def __init__(self, members: list[_Member]) -> None:
        self.members = members
        self._readers = [asyncio.create_task(m.read()) for m in members]

    @classmethod
    async def start(cls, configs: list[WorkerConfig], scratch: Path) -> _Group:
        members = []
        for config in configs:
            log = scratch / f"{config.name}.log"
            with log.open("wb") as err:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "soar.ingest.benchmark",
                    config.model_dump_json(),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=err,
                )
            members.append(_Member(config.name, process, log))
        return cls(members)

    def finished(self, phase: Phase) -> int:
        return sum(m.finished.get(phase, 0) for m in self.members)

    async def until(self, phase: Phase, count: int) -> None:
        deadline = time.monotonic() + _WAIT_S
        while self.finished(phase) < count:
            self.check()
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.finished(phase)} of {count} {phase} runs finished in {_WAIT_S:.0f} s"
                )
            await asyncio.sleep(_REPORT_S)  # the figures use the workers' stamps, not this poll

    def check(self) -> None:
        for member in self.members:
            if (failure := member.failure()) is not None:
                raise RuntimeError(failure)

    async def stop(self) -> list[dict[str, Any]]:
        """SIGTERM every worker (they drain, commit and exit); their last reports."""
        for member in self.members:
            member.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(_STOP_S):
                for member in self.members:
                    await member.process.wait()
                await asyncio.gather(*self._readers)
        except TimeoutError:
            raise RuntimeError(f"the bench workers did not stop within {_STOP_S:.0f} s") from None
        finals = []
        for member in self.members:
            if member.final is None or member.process.returncode != 0:
                raise RuntimeError(member.failure() or f"{member.name} sent no last report")
            finals.append(member.final)
        return finals

    async def kill(self) -> None:
        """Whatever is still running, SIGKILLed (after a failure)."""
        for member in self.members:
            if member.process.returncode is None:
                member.process.kill()
                await member.process.wait()
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


async def _create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, replication_factor=1)])
    finally:
        await admin.close()


async def _until_stable(bootstrap: str, group_id: str, group: _Group) -> None:
    """Until the consumer group is stable with every worker in it (each then has partitions)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    deadline = time.monotonic() + _WAIT_S
    try:
        while True:
            group.check()
            described = await admin.describe_consumer_groups([group_id])
            # (error_code, group, state, protocol_type, protocol, members, ...)
            found = described[0].groups[0]
            if found[2] == "Stable" and len(found[5]) == len(group.members):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"consumer group {group_id} not stable with {len(group.members)} members "
                    f"in {_WAIT_S:.0f} s: {found[2]}, {len(found[5])} members"
                )
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def _produce(producer: Any, topic: str, phase: Phase, numbers: range) -> None:
    sends = [await producer.send(topic, _alert(n, phase, time.time())) for n in numbers]
    await asyncio.gather(*sends)


async def _raw_consume_rate(bootstrap: str, topic: str, count: int) -> float:
    """Messages/s a bare consumer reads the topic's first `count` messages at (no group, no
    processing)."""
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
    store_url: str,
    *,
    scratch: Path,
    alerts: int,
    workers: int = 1,
    partitions: int | None = None,
    latency_alerts: int = 500,
    rate_per_s: float = 200.0,
    max_in_flight: int = 256,
) -> IngestFigures:
    """Measure `workers` worker processes taking alerts from a fresh topic of `partitions`
    (default 2 per worker) into runs on the store `store_url` (which all of them open; a
    `memory://` store is each worker's own). Worker logs go to `scratch`.

    Raises:
        RuntimeError: a worker failed (its log's tail is in the message), or a phase took more
            than 300 s.
        StoreError, ConfigError: the store cannot be opened.
    """
    partitions = partitions or 2 * workers
    warmup = WARMUP_PER_WORKER * workers
    expected = warmup + alerts + latency_alerts
    async with open_store(store_url):
        pass  # created (migrated) once, before the workers open it together
    tag = uuid.uuid4().hex[:8]
    topic, group_id = f"soar-bench-{tag}", f"soar-bench-{tag}-group"
    await _create_topic(bootstrap, topic, partitions)
    memory = store_url == "memory://"
    configs = [
        WorkerConfig(
            bootstrap=bootstrap,
            store=store_url,
            topic=topic,
            group=group_id,
            name=f"bench-{n}",
            max_in_flight=max_in_flight,
            count=memory,
        )
        for n in range(workers)
    ]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    group = await _Group.start(configs, scratch)
    try:
        await _until_stable(bootstrap, group_id, group)
        await _produce(producer, topic, "warmup", range(warmup))
        await group.until("warmup", warmup)
        await _until_stable(bootstrap, group_id, group)  # no rebalance pending

        first_sent = time.time()
        await _produce(producer, topic, "backlog", range(warmup, warmup + alerts))
        await group.until("backlog", alerts)
        seconds = max(m.last_backlog for m in group.members) - first_sent
        per_worker = tuple(m.finished.get("backlog", 0) for m in group.members)
        raw_rate = await _raw_consume_rate(bootstrap, topic, warmup + alerts)

        interval = 1 / rate_per_s
        started = time.monotonic()
        for index, number in enumerate(range(warmup + alerts, expected)):
            await asyncio.sleep(max(0.0, started + index * interval - time.monotonic()))
            await producer.send(topic, _alert(number, "latency", time.time()))
        await group.until("latency", latency_alerts)
        finals = await group.stop()
    finally:
        await group.kill()
        await producer.stop()
    if memory:
        recorded, distinct, completed = finals[0]["counted"]
    else:
        async with open_store(store_url) as store:
            recorded, distinct, completed = await count_runs(store, limit=expected * 2)
    latencies = sorted(s for final in finals for s in final["latencies"])
    commits = sum(final["commits"] or 0 for final in finals)
    changes = sum(final["changes"] or 0 for final in finals)
    return IngestFigures(
        workers=workers,
        partitions=partitions,
        alerts=alerts,
        alerts_per_s=alerts / seconds,
        per_worker=per_worker,
        raw_consume_per_s=raw_rate,
        latency_alerts=len(latencies),
        latency_rate_per_s=rate_per_s,
        p50_ms=statistics.median(latencies) * 1000 if latencies else math.nan,
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        if latencies
        else math.nan,
        runs_expected=expected,
        runs_recorded=recorded,
        alerts_recorded=distinct,
        runs_completed=completed,
        changes_per_commit=changes / commits if commits else None,
    )


if __name__ == "__main__":
    asyncio.run(work(WorkerConfig.model_validate_json(sys.argv[1])))
