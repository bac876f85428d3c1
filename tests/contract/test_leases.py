"""The lease contract: every backend fences writes, takes leases only from the token it
expects, and names the runs nobody drives, the same way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from soar.errors import LeaseLost
from soar.models.run import RunStatus
from soar.store import Change, Store
from soar.store.base import Heartbeat, Lease
from tests.contract.backends import BACKENDS, open_backend
from tests.contract.runs import T0, a_run, a_step, a_transition


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with open_backend(request, tmp_path) as opened:
        yield opened


def recorded(run_id: str, owner: str) -> Change:
    """A new run's first write, as the engine makes it: the run with its lease."""
    return Change(
        runs=[a_run(run_id)],
        transitions=[a_transition(run_id, 1)],
        leases=[Lease(run_id, owner, 1, 0)],
        fence=[(run_id, 1)],
    )


async def test_a_run_is_recorded_once_the_second_recording_writes_nothing(store: Store) -> None:
    await store.apply(recorded("r1", "w1"))
    second = recorded("r1", "w2")
    second.runs = [a_run("r1", status=RunStatus.FAILED)]
    second.steps = [a_step("r1", "ldap")]
    with pytest.raises(LeaseLost):
        await store.apply(second)
    snapshot = await store.load_run("r1")
    assert snapshot is not None
    assert snapshot.run.status is RunStatus.RUNNING
    assert snapshot.steps == {}
    assert await store.held_runs("w1") == {"r1": 1}
    assert await store.held_runs("w2") == {}


async def test_a_fenced_write_with_an_old_token_writes_nothing(store: Store) -> None:
    await store.apply(recorded("r1", "w1"))
    await store.apply(Change(leases=[Lease("r1", "w2", 2, 1)]))  # w2 takes it over
    stale = Change(
        steps=[a_step("r1", "ldap")], transitions=[a_transition("r1", 2)], fence=[("r1", 1)]
    )
    with pytest.raises(LeaseLost):
        await store.apply(stale)
    assert [t.seq for t in await store.transitions("r1")] == [1]
    await store.apply(
        Change(steps=[a_step("r1", "ldap")], transitions=[a_transition("r1", 2)], fence=[("r1", 2)])
    )
    assert [t.seq for t in await store.transitions("r1")] == [1, 2]
    assert await store.held_runs("w2") == {"r1": 2}
    assert await store.held_runs("w1") == {}


async def test_a_take_over_from_a_token_that_moved_on_fails(store: Store) -> None:
    await store.apply(recorded("r1", "w1"))
    await store.apply(Change(leases=[Lease("r1", "w2", 2, 1)]))
    with pytest.raises(LeaseLost):
        await store.apply(Change(leases=[Lease("r1", "w3", 2, 1)]))
    assert await store.held_runs("w2") == {"r1": 2}


async def test_concurrent_writes_fail_alone_when_fenced_off(store: Store) -> None:
    """Group commit: one change refused by its fence fails alone, the others are written."""
    for n in range(20):
        await store.apply(recorded(f"r{n}", "w1"))
    await store.apply(Change(leases=[Lease("r7", "w2", 2, 1)]))
    changes = [
        Change(transitions=[a_transition(f"r{n}", 2)], fence=[(f"r{n}", 1)]) for n in range(20)
    ]
    outcomes = await asyncio.gather(*(store.apply(c) for c in changes), return_exceptions=True)
    assert [n for n, o in enumerate(outcomes) if isinstance(o, LeaseLost)] == [7]
    assert all(o is None for n, o in enumerate(outcomes) if n != 7)
    assert [t.seq for t in await store.transitions("r7")] == [1]
    assert [t.seq for t in await store.transitions("r8")] == [1, 2]


async def test_orphans_are_the_unfinished_runs_whose_holder_is_gone(store: Store) -> None:
    now = T0 + timedelta(minutes=5)
    await store.apply(
        Change(
            heartbeats=[
                Heartbeat("alive", now + timedelta(seconds=10)),
                Heartbeat("expired", now - timedelta(seconds=1)),
                Heartbeat("crashed", now + timedelta(seconds=10)),
                Heartbeat("forgotten", now + timedelta(seconds=10)),
            ]
        )
    )
    for n, owner in enumerate(["alive", "expired", "crashed", "forgotten", "released"]):
        change = recorded(f"r{n}", owner)
        change.runs = [a_run(f"r{n}", created_at=T0 + timedelta(seconds=n))]
        await store.apply(change)
    await store.apply(Change(leases=[Lease("r4", "", 1, 1)]))  # released
    await store.apply(Change(runs=[a_run("r5", created_at=T0 + timedelta(seconds=5))]))  # no lease
    finished = recorded("r6", "expired")
    finished.runs = [a_run("r6", status=RunStatus.COMPLETED)]
    await store.apply(finished)
    await store.apply(Change(forget_workers=["forgotten"]))

    orphans = await store.orphaned_runs(now, ["crashed"], 100)
    assert orphans == [("r1", 1), ("r2", 1), ("r3", 1), ("r4", 1), ("r5", 0)]
    assert await store.orphaned_runs(now, ["crashed"], 2) == [("r1", 1), ("r2", 1)]
    assert [w.worker for w in await store.workers()] == ["alive", "crashed", "expired"]


async def test_a_heartbeat_moves_its_expiry(store: Store) -> None:
    await store.apply(Change(heartbeats=[Heartbeat("w1", T0)]))
    await store.apply(recorded("r1", "w1"))
    assert await store.orphaned_runs(T0, [], 10) == [("r1", 1)]
    await store.apply(Change(heartbeats=[Heartbeat("w1", T0 + timedelta(seconds=15))]))
    assert await store.workers() == [Heartbeat("w1", T0 + timedelta(seconds=15))]
    assert await store.orphaned_runs(T0, [], 10) == []


async def test_a_released_run_keeps_its_token_and_cannot_be_recorded_anew(store: Store) -> None:
    await store.apply(recorded("r1", "w1"))
    await store.apply(
        Change(
            runs=[a_run("r1", status=RunStatus.COMPLETED)],
            leases=[Lease("r1", "", 1, 1)],
            fence=[("r1", 1)],
        )
    )
    assert await store.held_runs("w1") == {}
    with pytest.raises(LeaseLost):  # the same alert, delivered again, starts nothing
        await store.apply(recorded("r1", "w2"))
    snapshot = await store.load_run("r1")
    assert snapshot is not None
    assert snapshot.run.status is RunStatus.COMPLETED
