"""Three workers in one consumer group on one PostgreSQL store, reading alerts from Apache
Kafka through a slow connector that fails at times: SIGKILL workers at random moments (some
come back at once, one stays dead for a while), restart the broker and then PostgreSQL
mid-stream. In the end every alert has exactly one run and it finished, every effect happened
once (counted by idempotency key), the dead-letter topic holds exactly the bad messages, and
the audit log verifies offline."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]

from soar.audit.keys import Keyring
from tests.apache_kafka import ApacheKafka
from tests.crash.scale_worker import EFFECT_STEPS
from tests.integration.ingest.kafka_tools import TIME, read_all
from tests.postgres_server import PostgresServer

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

HERE = Path(__file__).parent
ALERTS = 2000
WORKERS = 3
BAD = [b"not json", b'{"title": "no severity", "time": "' + TIME.encode() + b'"}', b"[]", b"\xff"]


def alert(n: int) -> bytes:
    return json.dumps(
        {"title": f"alert {n}", "severity": "high", "id": f"a{n:05d}", "time": TIME}
    ).encode()


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        sent = [
            await producer.send(topic, value=value, key=f"k{n}".encode())
            for n, value in enumerate(values)
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


class Fleet:
    """The worker processes, by name, with their shared log."""

    def __init__(self, tmp_path: Path, url: str, bootstrap: str, names: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        self.url = url
        self.bootstrap = bootstrap
        self.names = names
        self.log = tmp_path / "workers.log"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(HERE.parents[1])}
        with self.log.open("ab") as log:
            self.procs[name] = subprocess.Popen(  # noqa: S603 - our own worker script
                [
                    sys.executable,
                    str(HERE / "scale_worker.py"),
                    self.url,
                    str(self.tmp_path),
                    self.bootstrap,
                    self.names["topic"],
                    self.names["group"],
                    self.names["dead"],
                    name,
                    "1" if name == "w0" else "0",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                pytest.fail(f"{name} exited {proc.returncode}: {self.log.read_text()[-4000:]}")

    def stop_all(self) -> list[int]:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(timeout=60) for proc in self.procs.values()]
        self.procs.clear()
        return codes

    def kill_all(self) -> None:
        for name in list(self.procs):
            self.kill(name)


async def finished(url: str) -> int:
    try:
        db = await asyncpg.connect(url, timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return -1  # PostgreSQL is restarting
    try:
        count: int = await db.fetchval("SELECT count(*) FROM runs WHERE status = 'completed'")
        return count
    except asyncpg.UndefinedTableError:  # no worker has migrated the database yet
        return 0
    finally:
        await db.close()


async def until(url: str, count: int, fleet: Fleet, *, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    done = await finished(url)
    while done < count and time.monotonic() < deadline:
        fleet.check_alive()
        await asyncio.sleep(0.2)
        done = await finished(url)
    return done


async def test_killed_workers_and_restarted_servers_lose_nothing_and_repeat_nothing(
    apache_kafka: ApacheKafka, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    rng = random.Random(int(os.environ.get("SOAR_CRASH_SEED", "23")))
    tag = uuid.uuid4().hex[:8]
    names = {"topic": f"scale-{tag}", "group": f"scale-{tag}", "dead": f"scale-dead-{tag}"}
    values = [alert(n) for n in range(ALERTS)]
    for index, bad in enumerate(BAD):
        values.insert(400 * (index + 1), bad)
    Keyring.create(tmp_path / "keys")
    async with postgres_server.database() as url:
        fleet = Fleet(tmp_path, url, apache_kafka.bootstrap, names)
        try:
            await produce(apache_kafka.bootstrap, names["topic"], values)
            for n in range(WORKERS):
                fleet.start(f"w{n}")
            progress = [await until(url, 50, fleet, seconds=90)]

            # SIGKILL at random moments; most come back at once, the last stays dead a while
            # (its runs are taken over by the others once its heartbeat expires)
            for round_ in range(4):
                await asyncio.sleep(rng.uniform(0.2, 1.5))
                victim = f"w{rng.randrange(WORKERS)}"
                fleet.kill(victim)
                progress.append(await finished(url))
                if round_ < 3:
                    fleet.start(victim)
            await asyncio.sleep(4.0)
            fleet.start(victim)

            # the broker restarts while the worker just restarted may still be connecting: it
            # waits for the broker, as it waits for the database below
            await asyncio.sleep(rng.uniform(0.5, 1.5))
            await asyncio.to_thread(apache_kafka.restart)  # the broker goes and comes back
            progress.append(await finished(url))

            await asyncio.sleep(rng.uniform(0.5, 1.5))
            await asyncio.to_thread(postgres_server.restart)  # and so does PostgreSQL
            progress.append(await finished(url))

            done = await until(url, ALERTS, fleet, seconds=240)
            assert done == ALERTS, f"{done} of {ALERTS}: {fleet.log.read_text()[-4000:]}"
            codes = fleet.stop_all()
            assert codes == [0] * WORKERS, fleet.log.read_text()[-6000:]
        finally:
            fleet.kill_all()
        print("runs finished at each event:", progress)
        assert any(0 < p < ALERTS for p in progress[1:]), f"nothing landed mid-stream: {progress}"

        db = await asyncpg.connect(url)
        try:
            runs = await db.fetch("SELECT id, status, alert::json->>'id' AS alert FROM runs")
            leases = await db.fetch(
                "SELECT l.run_id, l.owner, l.token, r.status FROM leases AS l "
                "LEFT JOIN runs AS r ON r.id = l.run_id WHERE l.owner <> ''"
            )
        finally:
            await db.close()
        lines = await export(url)

    # exactly one run per alert, each finished, and none held any more
    assert sorted(r["alert"] for r in runs) == [f"a{n:05d}" for n in range(ALERTS)]
    assert {r["status"] for r in runs} == {"completed"}
    assert [dict(r) for r in leases] == []
    # every effect once: one row per idempotency key, none outside the expected ones
    effects = sqlite3.connect(tmp_path / "effects.db")
    done_keys = {key for (key,) in effects.execute("SELECT key FROM effects")}
    assert done_keys == {f"{r['id']}:{step}" for r in runs for step in EFFECT_STEPS}
    # the dead-letter topic holds exactly the bad messages; a message dead-lettered just before
    # a SIGKILL, whose offset was not committed yet, is dead-lettered again on redelivery (at
    # least once, docs/ingestion.md): such copies name the same source message
    letters = await read_letters(apache_kafka.bootstrap, names["dead"], set(BAD))
    by_source: dict[tuple[bytes, ...], set[bytes]] = {}
    for letter in letters:
        by_source.setdefault(source_of(letter), set()).add(letter.value)
    assert sorted(v for values in by_source.values() for v in values) == sorted(BAD)
    # and the audit log, written by three processes through restarts, verifies offline
    verify(lines, tmp_path / "keys")


async def read_letters(bootstrap: str, topic: str, expected: set[bytes]) -> list[Any]:
    """Every letter on the topic, once each expected value has been seen and no more come."""
    letters: list[Any] = await read_all(bootstrap, topic, len(expected))
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        everything: list[Any] = []
        async with asyncio.timeout(30):
            while not expected <= {r.value for r in everything} or len(everything) < len(letters):
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    everything.extend(batch)
        for batch in (await consumer.getmany(timeout_ms=500)).values():  # and any late ones
            everything.extend(batch)
    finally:
        await consumer.stop()
    return everything


def source_of(letter: Any) -> tuple[bytes, ...]:
    headers = dict(letter.headers)
    return tuple(
        headers[h] for h in ("soar-source-topic", "soar-source-partition", "soar-source-offset")
    )


async def export(url: str) -> list[str]:
    from soar.audit.export import export_lines
    from soar.store import open_store

    async with open_store(url) as store:
        return [line async for line in export_lines(store)]


def verify(lines: list[str], keys: Path) -> None:
    from soar.audit.keys import load_public_keys
    from soar.audit.verify import verify_export

    report = verify_export(lines, load_public_keys(Keyring.open(keys).public_pem()))
    assert report.ok, report.problem
    assert report.checkpoints >= 1
