"""A soar worker for crash tests: it drives N runs of a playbook on a SQLite store, and its
connector writes each effect, keyed by idempotency key, to a separate SQLite file.

    python worker.py STORE EFFECTS PLAYBOOK RUNS

It starts whatever runs are missing, resumes the unfinished ones, and exits 0 when every run
has ended. `SOAR_CRASH_AT=<point>` makes it SIGKILL itself once at a chosen point (a marker
file beside EFFECTS remembers that it did): after_started, after_effect, after_sync_effect,
while_waiting, during_compensation.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import threading
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel

from soar.audit.keys import Keyring
from soar.connectors import ActionContext, ActionFailed, Connector, Registry
from soar.connectors.core import core
from soar.engine import Engine
from soar.engine.checkpointer import Checkpointer
from soar.models.run import TransitionKind
from soar.playbook.validate import validate_text
from soar.store import open_store


class Apply(BaseModel):
    name: str
    fail: bool = False


class Applied(BaseModel):
    name: str


def kill_once(effects: Path, point: str) -> None:
    """SIGKILL this process the first time `point` is reached, if it is the chosen one."""
    if os.environ.get("SOAR_CRASH_AT") != point:
        return
    marker = effects.with_suffix(f".killed-{point}")
    if marker.exists():
        return
    marker.write_text("1")
    os.kill(os.getpid(), signal.SIGKILL)


def effect_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS effects (key TEXT PRIMARY KEY, name TEXT)")
    db.execute("CREATE TABLE IF NOT EXISTS undone (key TEXT PRIMARY KEY, name TEXT)")
    db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT, kind TEXT)")
    return db


def connector(effects: Path) -> Connector:
    fx = Connector("crashfx", doc="effects recorded by idempotency key")
    db = effect_db(effects)
    lock = threading.Lock()

    def write(sql: str, *args: str) -> None:
        with lock:  # one connection, used from worker threads one at a time
            db.execute(sql, args)

    @fx.action(idempotent=True, compensate="crashfx.undo")
    async def apply(ctx: ActionContext, params: Apply) -> Applied:
        await asyncio.to_thread(write, "INSERT INTO calls VALUES (?, 'apply')", ctx.idempotency_key)
        if params.fail:
            raise ActionFailed("failing on purpose", retryable=False)
        await asyncio.to_thread(
            write, "INSERT OR IGNORE INTO effects VALUES (?, ?)", ctx.idempotency_key, params.name
        )
        kill_once(effects, "after_effect")
        return Applied(name=params.name)

    @fx.action(idempotent=True, compensate="crashfx.undo")
    async def stamp(ctx: ActionContext, params: Apply) -> Applied:
        # done without a pause: its start is written with its outcome, after the effect
        write("INSERT INTO calls VALUES (?, 'stamp')", ctx.idempotency_key)
        write("INSERT OR IGNORE INTO effects VALUES (?, ?)", ctx.idempotency_key, params.name)
        kill_once(effects, "after_sync_effect")
        return Applied(name=params.name)

    @fx.action(compensate="crashfx.undo")
    async def charge(ctx: ActionContext, params: Apply) -> Applied:
        # not idempotent: its start is durable before it is called
        await asyncio.to_thread(
            write, "INSERT INTO calls VALUES (?, 'charge')", ctx.idempotency_key
        )
        await asyncio.to_thread(
            write, "INSERT OR IGNORE INTO effects VALUES (?, ?)", ctx.idempotency_key, params.name
        )
        return Applied(name=params.name)

    @fx.action(idempotent=True)
    async def undo(ctx: ActionContext, params: Apply) -> Applied:
        await asyncio.to_thread(write, "INSERT INTO calls VALUES (?, 'undo')", ctx.idempotency_key)
        kill_once(effects, "during_compensation")
        await asyncio.to_thread(
            write, "INSERT OR IGNORE INTO undone VALUES (?, ?)", ctx.idempotency_key, params.name
        )
        return Applied(name=params.name)

    return fx


async def main(store_path: Path, effects: Path, text: str, count: int) -> int:
    registry = Registry.of([core, connector(effects)])
    result = validate_text(text, file="crash.playbook.yaml", registry=registry)
    assert result.loaded is not None, [str(d) for d in result.diagnostics]
    loaded = result.loaded
    keys = store_path.parent / "keys"
    keyring = Keyring.open(keys) if keys.exists() else Keyring.create(keys)
    async with open_store(f"sqlite:///{store_path}") as store:
        engine = Engine(store, registry, [loaded])
        # checkpoints signed often, so that kills land before, during and after signing
        checkpointer = Checkpointer(store, keyring, every=timedelta(milliseconds=100), records=50)
        checkpointer.start()

        def observe(executor: object, transitions: list) -> None:  # type: ignore[type-arg]
            for transition in transitions:
                if transition.kind is TransitionKind.STEP_STARTED:
                    kill_once(effects, "after_started")
                elif transition.kind is TransitionKind.STEP_WAITING:
                    kill_once(effects, "while_waiting")

        engine.observe(observe)
        await engine.start(cron=False)
        for i in range(count):
            run_id = f"run-{i:04d}"
            if await store.load_run(run_id) is None:
                await engine.start_run(loaded, inputs={"fail": i % 4 == 3}, run_id=run_id)
        await engine.wait_idle()
        await engine.stop()
        await checkpointer.stop()
    print("all runs ended", flush=True)
    return 0


if __name__ == "__main__":
    store_arg, effects_arg, playbook_arg, count_arg = sys.argv[1:5]
    text = Path(playbook_arg).read_text()
    sys.exit(asyncio.run(main(Path(store_arg), Path(effects_arg), text, int(count_arg))))
