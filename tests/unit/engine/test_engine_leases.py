"""Many engines on one store: each run is driven by one of them, a dead one's runs are taken
over by another, and a worker presumed dead that comes back cannot write."""

from __future__ import annotations

import asyncio
import socket
from datetime import timedelta

from soar.engine import Engine
from soar.models import Alert
from soar.models.run import RunStatus, TransitionKind
from soar.store.base import Change, Heartbeat, Lease
from tests.unit.engine.conftest import World

TTL = 0.3  # seconds: engines beat every 0.1 s of real time, and expire after TTL of clock time

PLAYBOOK = """\
id: p
name: P
trigger: {manual: true}
steps:
  - id: a
    action: fx.do
    with: {name: a}
  - id: slow
    action: fx.do
    with: {name: slow, seconds: 0.6}
  - id: c
    action: fx.stubborn
    with: {name: c}
"""
"""`c` is not idempotent: its start is written, fenced, before it is called."""

WAITING = """\
id: w
name: W
trigger: {manual: true}
steps:
  - id: ask
    approval: {group: leads, timeout: 1h, on_timeout: approve}
  - id: c
    action: fx.do
    with: {name: c}
"""

ALERTED = """\
id: alerted
name: Alerted
trigger: {match: 'alert.severity >= "high"'}
steps:
  - id: a
    action: fx.do
    with: {name: a}
"""


def another(world: World, name: str) -> Engine:
    """A second worker on the same store and clock."""
    return Engine(
        world.store,
        world.registry,
        world.engine.playbooks.values(),
        clock=world.clock,
        worker=name,
        lease_ttl=TTL,
    )


def first(world: World) -> Engine:
    world.engine = Engine(world.store, world.registry, [], clock=world.clock, lease_ttl=TTL)
    return world.engine


async def eventually(condition: object, *, seconds: float = 5.0) -> None:
    assert callable(condition)
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


def freeze(engine: Engine) -> None:
    """The worker stops beating (a long GC pause, a partition) but its runs go on."""
    assert engine._leases is not None
    engine._leases.cancel()


async def test_a_dead_workers_run_is_taken_over_and_its_late_write_refused(world: World) -> None:
    a = first(world)
    loaded = world.load(PLAYBOOK)
    await a.start()
    run_id = await a.start_run(loaded)
    await eventually(lambda: world.effects.by_name["slow"] == 1)
    freeze(a)
    b = another(world, "b")
    assert await b.start() == []  # a's heartbeat has not expired: b leaves its run alone
    await world.clock.advance(timedelta(seconds=1))  # ...now it has
    await eventually(lambda: run_id in b.executors)
    run = await b.wait_run(run_id)
    await eventually(lambda: run_id not in a.executors)  # a's write was refused: it let go
    await b.stop()
    await a.stop()
    assert run.status is RunStatus.COMPLETED
    assert b.taken_over == 1
    assert world.effects.by_name["a"] == 1  # recorded before the take-over: not repeated
    assert world.effects.by_name["slow"] == 2  # in flight: issued again by b...
    assert len({k for k in world.effects.effects if k.endswith(":slow")}) == 1  # ...same key
    # a went no further than `slow`: its write of c's start was refused, so c ran once
    assert [n for k, n in world.effects.calls.items() if k.endswith(":c")] == [1]
    timeline = await world.store.transitions(run_id)
    finished = [t for t in timeline if t.kind is TransitionKind.RUN_FINISHED]
    assert len(finished) == 1
    assert [t.seq for t in timeline] == list(range(1, len(timeline) + 1))


async def test_a_live_worker_keeps_its_runs(world: World) -> None:
    a = first(world)
    loaded = world.load(PLAYBOOK)
    await a.start()
    run_id = await a.start_run(loaded)
    b = another(world, "b")
    await b.start()
    await asyncio.sleep(4 * TTL)  # b looks for orphans every TTL/3 of real time
    assert run_id not in b.executors
    assert b.taken_over == 0
    run = await a.wait_run(run_id)
    await b.stop()
    assert run.status is RunStatus.COMPLETED
    assert world.effects.by_name["slow"] == 1


async def test_a_worker_restarted_on_this_host_takes_over_at_once(world: World) -> None:
    a = first(world)
    ended = await asyncio.create_subprocess_exec("true")  # a process id no longer alive
    await ended.wait()
    a.worker_id = f"soar@{socket.gethostname()}:{ended.pid}:0badc0de"
    loaded = world.load(WAITING)
    await a.start()
    run_id = await a.start_run(loaded)
    await eventually(lambda: "ask" in a.executors[run_id].states)
    freeze(a)
    a._let_go()  # a's process is gone: nothing of it runs any more
    b = another(world, "b")
    assert await b.start() == [run_id]  # no need to wait for a's heartbeat to expire
    await b.decide(run_id, "ask", approved=True, by="ana")
    run = await b.wait_run(run_id)
    await b.stop()
    assert run.status is RunStatus.COMPLETED
    assert [w.worker for w in await world.store.workers()] == []  # both gone, a forgotten


async def test_a_worker_lets_go_of_a_run_taken_over_behind_its_back(world: World) -> None:
    a = first(world)
    loaded = world.load(WAITING)
    await a.start()
    run_id = await a.start_run(loaded)
    await eventually(lambda: "ask" in a.executors[run_id].states)
    token = a.executors[run_id].token
    await world.store.apply(
        Change(
            leases=[Lease(run_id, "thief", token + 1, token)],
            heartbeats=[Heartbeat("thief", world.clock.now() + timedelta(hours=1))],
        )
    )
    await eventually(lambda: run_id not in a.executors)
    await a.stop()
    assert await world.store.held_runs("thief") == {run_id: token + 1}
    assert world.effects.order == []


async def test_two_workers_given_the_same_delivery_record_one_run(world: World) -> None:
    a = first(world)
    world.load(ALERTED)
    b = another(world, "b")
    await a.start()
    await b.start()
    alert = Alert.model_validate(
        {
            "id": "al-1",
            "source": "edr",
            "format": "generic",
            "title": "Malware",
            "severity": "high",
            "category": "malware",
            "time": "2026-01-05T09:00:00Z",
            "raw": {},
        }
    )
    origin = "kafka:alerts/0@41#0"
    first_ids, second_ids = await asyncio.gather(
        a.submit_alert(alert, origin=origin), b.submit_alert(alert, origin=origin)
    )
    assert first_ids == second_ids
    assert len(first_ids) == 1
    await eventually(lambda: world.effects.order.count("a") >= 1)
    await a.wait_idle()
    await b.wait_idle()
    await a.stop()
    await b.stop()
    runs = await world.store.unfinished_runs()
    assert runs == []
    snapshot = await world.store.load_run(first_ids[0])
    assert snapshot is not None
    assert snapshot.run.status is RunStatus.COMPLETED
    assert len(world.effects.effects) == 1  # one effect, whoever called it
    timeline = await world.store.transitions(first_ids[0])
    assert sum(t.kind is TransitionKind.RUN_STARTED for t in timeline) == 1
