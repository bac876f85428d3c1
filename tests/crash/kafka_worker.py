"""A soar worker for the Kafka crash test: it reads alerts from a topic into runs of a playbook
whose connector records each effect by idempotency key in a separate SQLite file, until SIGTERM.

    python kafka_worker.py STORE EFFECTS BOOTSTRAP TOPIC GROUP DEAD_LETTER_TOPIC
"""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import timedelta
from pathlib import Path

from soar.audit.keys import Keyring
from soar.config import IngestSettings, KafkaSettings
from soar.connectors import Registry
from soar.connectors.core import core
from soar.engine import Engine
from soar.engine.checkpointer import Checkpointer
from soar.ingest.worker import Worker
from soar.playbook.validate import validate_text
from soar.store import open_store
from tests.crash.worker import connector

PLAYBOOK = """\
id: contain
name: Contain on every alert
trigger: {match: 'true'}
steps:
  - id: one
    action: crashfx.apply
    with: {name: "one-{{ alert.id }}"}
  - id: stamp
    action: crashfx.stamp
    with: {name: "stamp-{{ alert.id }}"}
  - id: charge
    action: crashfx.charge
    with: {name: "charge-{{ alert.id }}"}
"""
EFFECT_STEPS = ["one", "stamp", "charge"]


async def main(
    store_path: Path, effects: Path, bootstrap: str, topic: str, group: str, dead: str
) -> int:
    registry = Registry.of([core, connector(effects)])
    result = validate_text(PLAYBOOK, file="contain.yaml", registry=registry)
    assert result.loaded is not None, [str(d) for d in result.diagnostics]
    keys = store_path.parent / "keys"
    keyring = Keyring.open(keys) if keys.exists() else Keyring.create(keys)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with open_store(f"sqlite:///{store_path}") as store:
        engine = Engine(store, registry, [result.loaded])
        checkpointer = Checkpointer(store, keyring, every=timedelta(milliseconds=200), records=100)
        checkpointer.start()
        await engine.start(cron=False)
        kafka = KafkaSettings(
            bootstrap_servers=bootstrap,
            topics=[topic],
            group=group,
            dead_letter_topic=dead,
            commit_interval=0.1,
            max_in_flight=32,
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
        )
        print("worker started", flush=True)
        try:
            await Worker(engine, kafka, IngestSettings()).run(stop)
        finally:
            await engine.stop()
            await checkpointer.stop()
    print("worker stopped", flush=True)
    return 0


if __name__ == "__main__":
    store_arg, effects_arg, bootstrap_arg, topic_arg, group_arg, dead_arg = sys.argv[1:7]
    sys.exit(
        asyncio.run(
            main(Path(store_arg), Path(effects_arg), bootstrap_arg, topic_arg, group_arg, dead_arg)
        )
    )
