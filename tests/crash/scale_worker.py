"""One of several soar workers for the scale-out crash test: a consumer-group member on a shared
store (PostgreSQL) whose playbook calls a slow, sometimes failing connector and records each
effect by idempotency key in a SQLite file shared by all workers. Runs until SIGTERM.

    python scale_worker.py STORE_URL DIR BOOTSTRAP TOPIC GROUP DEAD_LETTER_TOPIC NAME CHECKPOINTS

DIR holds `effects.db` and `keys` (created before the workers start). CHECKPOINTS is 1 for
the worker that signs audit checkpoints.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
import sys
import threading
from datetime import timedelta
from pathlib import Path

from soar.audit.keys import Keyring
from soar.config import IngestSettings, KafkaSettings
from soar.connectors import ActionContext, ActionFailed, Connector, Registry
from soar.connectors.core import core
from soar.engine import Engine
from soar.engine.checkpointer import Checkpointer
from soar.ingest.worker import Worker
from soar.playbook.validate import validate_text
from soar.store import open_store
from tests.crash.worker import Applied, Apply, connector, effect_db

LEASE_TTL = 3.0

PLAYBOOK = """\
id: contain
name: Contain on every alert
trigger: {match: 'true'}
steps:
  - id: one
    action: crashfx.apply
    with: {name: "one-{{ alert.id }}"}
  - id: flaky
    action: chaosfx.flaky
    with: {name: "flaky-{{ alert.id }}"}
    retry: {attempts: 5, backoff: 50ms, exponential: false}
  - id: charge
    action: crashfx.charge
    with: {name: "charge-{{ alert.id }}"}
"""
EFFECT_STEPS = ["one", "flaky", "charge"]


def chaos(effects: Path) -> Connector:
    """A slow connector that fails (retryably) on the first call for one alert in four."""
    fx = Connector("chaosfx", doc="slow, and failing at times")
    db = effect_db(effects)
    lock = threading.Lock()

    def write(sql: str, *args: str) -> int:
        with lock:
            return db.execute(sql, args).rowcount

    @fx.action(idempotent=True)
    async def flaky(ctx: ActionContext, params: Apply) -> Applied:
        key = ctx.idempotency_key
        digest = hashlib.sha256(key.encode()).digest()
        await asyncio.sleep(digest[1] / 255 * 0.05)  # up to 50 ms
        first = await asyncio.to_thread(
            write, "INSERT OR IGNORE INTO undone VALUES (?, 'flaky-first-call')", key
        )
        if first and digest[0] % 4 == 0:
            raise ActionFailed("the EDR answered 503", retryable=True)
        await asyncio.to_thread(
            write, "INSERT OR IGNORE INTO effects VALUES (?, ?)", key, params.name
        )
        return Applied(name=params.name)

    return fx


async def main(argv: list[str]) -> int:
    url, directory, bootstrap, topic, group, dead, name, checkpoints = argv
    effects = Path(directory) / "effects.db"
    registry = Registry.of([core, connector(effects), chaos(effects)])
    result = validate_text(PLAYBOOK, file="contain.yaml", registry=registry)
    assert result.loaded is not None, [str(d) for d in result.diagnostics]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with open_store(url) as store:
        engine = Engine(store, registry, [result.loaded], worker=name, lease_ttl=LEASE_TTL)
        checkpointer = None
        if checkpoints == "1":
            keyring = Keyring.open(Path(directory) / "keys")
            checkpointer = Checkpointer(store, keyring, every=timedelta(milliseconds=300))
            checkpointer.start()
        taken = await engine.start(cron=False)
        kafka = KafkaSettings(
            bootstrap_servers=bootstrap,
            topics=[topic],
            group=group,
            dead_letter_topic=dead,
            client_id=name,
            commit_interval=0.1,
            max_in_flight=32,
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
        )
        print(f"worker started {engine.worker_id} took over {len(taken)}", flush=True)
        try:
            await Worker(engine, kafka, IngestSettings()).run(stop)
        finally:
            await engine.stop()
            if checkpointer is not None:
                await checkpointer.stop()
    print(f"worker stopped {name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:9])))
