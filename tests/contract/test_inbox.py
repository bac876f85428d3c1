"""The inbox contract: requests for a run are recorded by any process, read by the worker that
holds the run, and marked done in the same write as what carries them out, on every backend."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from soar.errors import ConflictError
from soar.models.run import RunStatus
from soar.store import Change, SqliteStore, Store, open_store
from soar.store.base import InboxItem, Lease
from soar.store.sqlite import _INBOX_FOR
from tests.contract.backends import BACKENDS, open_backend
from tests.contract.runs import T0, a_run, a_step, a_transition

OK = {"ok": True}
FINISHED = {"ok": False, "code": "conflict", "error": "the run has finished"}


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with open_backend(request, tmp_path) as opened:
        yield opened


def a_request(
    item_id: str, run_id: str = "r1", *, kind: str = "decide", seconds: int = 0
) -> InboxItem:
    return InboxItem(
        id=item_id,
        run_id=run_id,
        kind=kind,
        body={"step": "ask", "approved": True, "by": "ana", "comment": None, "digest": None},
        actor="user:ana",
        at=T0 + timedelta(seconds=seconds),
    )


async def held(store: Store, run_id: str, owner: str) -> None:
    """A run recorded with its lease, as the engine records one."""
    await store.apply(
        Change(
            runs=[a_run(run_id)],
            transitions=[a_transition(run_id, 1)],
            leases=[Lease(run_id, owner, 1, 0)],
        )
    )


def finished(run_id: str, seq: int) -> Change:
    """A run's last write, as the engine makes it: final, released, its pending requests closed."""
    return Change(
        runs=[a_run(run_id, status=RunStatus.COMPLETED)],
        transitions=[a_transition(run_id, seq)],
        fence=[(run_id, 1)],
        leases=[Lease(run_id, "", 1, 1)],
        close_inbox=[(run_id, T0 + timedelta(minutes=1), FINISHED)],
    )


async def test_a_request_round_trips_every_field(store: Store) -> None:
    await held(store, "r1", "w1")
    item = replace(
        a_request("i1"),
        body={"nested": [1, 2.5, None, "Zoë"], "none": None},
        kind="event",
    )
    await store.apply(Change(inbox=[item]))
    assert await store.inbox_item("i1") == item
    assert await store.inbox_item("nope") is None


async def test_a_worker_reads_the_pending_requests_of_its_runs_in_the_order_recorded(
    store: Store,
) -> None:
    await held(store, "r1", "w1")
    await held(store, "r2", "w1")
    await held(store, "r3", "w2")
    # recorded later but stamped earlier (another process's clock): the order recorded counts
    await store.apply(Change(inbox=[a_request("b", "r2", seconds=5)]))
    await store.apply(Change(inbox=[a_request("a", "r1", seconds=1)]))
    await store.apply(Change(inbox=[a_request("c", "r3"), a_request("d", "r1", seconds=9)]))
    assert [i.id for i in await store.inbox_for("w1", 10)] == ["b", "a", "d"]
    assert [i.id for i in await store.inbox_for("w1", 2)] == ["b", "a"]
    assert [i.id for i in await store.inbox_for("w2", 10)] == ["c"]
    assert await store.inbox_for("w3", 10) == []
    assert await store.inbox_for("", 10) == []


async def test_a_request_follows_its_run_to_the_worker_that_takes_it_over(store: Store) -> None:
    await held(store, "r1", "w1")
    await store.apply(Change(inbox=[a_request("i1")]))
    await store.apply(Change(leases=[Lease("r1", "w2", 2, 1)]))
    assert await store.inbox_for("w1", 10) == []
    assert [i.id for i in await store.inbox_for("w2", 10)] == ["i1"]
    await store.apply(Change(leases=[Lease("r1", "", 2, 2)]))  # released: nobody's
    assert await store.inbox_for("w2", 10) == []
    assert await store.inbox_for("", 10) == []


async def test_a_request_done_with_the_runs_transitions_leaves_the_inbox(store: Store) -> None:
    await held(store, "r1", "w1")
    await store.apply(Change(inbox=[a_request("i1"), a_request("i2")]))
    done_at = T0 + timedelta(seconds=30)
    await store.apply(
        Change(
            steps=[a_step("r1", "ask")],
            transitions=[a_transition("r1", 2)],
            inbox_done=[("i1", done_at, OK)],
            fence=[("r1", 1)],
        )
    )
    item = await store.inbox_item("i1")
    assert item is not None
    assert (item.done_at, item.outcome) == (done_at, OK)
    assert [i.id for i in await store.inbox_for("w1", 10)] == ["i2"]


@pytest.mark.parametrize("why", ["transition", "fence"])
async def test_a_request_is_not_done_when_what_carries_it_out_is_refused(
    store: Store, why: str
) -> None:
    await held(store, "r1", "w1")
    await store.apply(Change(inbox=[a_request("i1")]))
    change = Change(
        steps=[a_step("r1", "ask")],
        transitions=[a_transition("r1", 1 if why == "transition" else 2)],
        inbox_done=[("i1", T0, OK)],
        fence=[("r1", 1 if why == "transition" else 7)],
    )
    with pytest.raises(ConflictError):
        await store.apply(change)
    item = await store.inbox_item("i1")
    assert item is not None
    assert item.done_at is None
    assert [i.id for i in await store.inbox_for("w1", 10)] == ["i1"]


@pytest.mark.parametrize("item_id", ["done", "unknown"])
async def test_a_request_is_carried_out_once_a_second_answer_writes_nothing(
    store: Store, item_id: str
) -> None:
    await held(store, "r1", "w1")
    await store.apply(Change(inbox=[a_request("done")]))
    await store.apply(Change(inbox_done=[("done", T0, OK)]))
    again = Change(
        transitions=[a_transition("r1", 2)],
        inbox_done=[(item_id, T0 + timedelta(seconds=1), {"ok": False})],
    )
    with pytest.raises(ConflictError, match="not pending"):
        await store.apply(again)
    assert [t.seq for t in await store.transitions("r1")] == [1]
    item = await store.inbox_item("done")
    assert item is not None
    assert (item.done_at, item.outcome) == (T0, OK)


async def test_an_item_recorded_and_done_in_one_change_is_done(store: Store) -> None:
    await held(store, "r1", "w1")
    await store.apply(Change(inbox=[a_request("i1")], inbox_done=[("i1", T0, OK)]))
    item = await store.inbox_item("i1")
    assert item is not None
    assert item.outcome == OK


@pytest.mark.parametrize(
    ("status", "match"),
    [(None, "no run r1"), (RunStatus.COMPLETED, "has already completed")],
    ids=["unknown-run", "finished-run"],
)
async def test_a_request_for_a_run_that_is_not_open_writes_nothing(
    store: Store, status: RunStatus | None, match: str
) -> None:
    if status is not None:
        await store.apply(Change(runs=[a_run("r1", status=status)]))
    await held(store, "r2", "w1")
    change = Change(
        inbox=[a_request("i2", "r2"), a_request("i1", "r1")], steps=[a_step("r2", "ask")]
    )
    with pytest.raises(ConflictError, match=match):
        await store.apply(change)
    assert await store.inbox_item("i1") is None
    assert await store.inbox_item("i2") is None
    snapshot = await store.load_run("r2")
    assert snapshot is not None
    assert snapshot.steps == {}


async def test_a_request_may_ride_with_the_runs_own_record(store: Store) -> None:
    await store.apply(
        Change(runs=[a_run("r1")], leases=[Lease("r1", "w1", 1, 0)], inbox=[a_request("i1")])
    )
    assert [i.id for i in await store.inbox_for("w1", 10)] == ["i1"]


async def test_a_refused_request_among_concurrent_ones_fails_alone(store: Store) -> None:
    await held(store, "r1", "w1")
    asked = [a_request(f"i{n}", "nope" if n == 7 else "r1", seconds=n) for n in range(20)]
    outcomes = await asyncio.gather(
        *(store.apply(Change(inbox=[item])) for item in asked), return_exceptions=True
    )
    assert [type(o).__name__ for o in outcomes if o is not None] == ["ConflictError"]
    assert outcomes[7] is not None
    assert len(await store.inbox_for("w1", 100)) == 19


async def test_a_repeated_item_id_is_a_conflict(store: Store) -> None:
    await held(store, "r1", "w1")
    await store.apply(Change(inbox=[a_request("i1")]))
    with pytest.raises(ConflictError):
        await store.apply(Change(inbox=[a_request("i1", seconds=3)]))
    with pytest.raises(ConflictError):
        await store.apply(Change(inbox=[a_request("i2"), a_request("i2")]))
    assert await store.inbox_item("i2") is None
    assert [(i.id, i.at) for i in await store.inbox_for("w1", 10)] == [("i1", T0)]


async def test_a_runs_last_write_closes_its_pending_requests_only(store: Store) -> None:
    await held(store, "r1", "w1")
    await held(store, "r2", "w1")
    await store.apply(Change(inbox=[a_request("done"), a_request("p1"), a_request("other", "r2")]))
    await store.apply(Change(inbox_done=[("done", T0, OK)]))
    await store.apply(finished("r1", 2))
    closed = await store.inbox_item("p1")
    assert closed is not None
    assert (closed.done_at, closed.outcome) == (T0 + timedelta(minutes=1), FINISHED)
    kept = await store.inbox_item("done")
    assert kept is not None
    assert (kept.done_at, kept.outcome) == (T0, OK)
    assert [i.id for i in await store.inbox_for("w1", 10)] == ["other"]
    with pytest.raises(ConflictError, match="has already completed"):
        await store.apply(Change(inbox=[a_request("late")]))


async def test_no_request_is_left_pending_for_a_run_that_ends_meanwhile(store: Store) -> None:
    """A request racing a run's last write is either refused or closed by it: never left for a
    worker that will not come (the run's lease row orders the two on PostgreSQL)."""
    runs = [f"r{n}" for n in range(12)]
    for run_id in runs:
        await held(store, run_id, "w1")

    async def ask(run_id: str) -> bool:
        try:
            await store.apply(Change(inbox=[a_request(f"i-{run_id}", run_id)]))
        except ConflictError:
            return False
        return True

    outcomes = await asyncio.gather(
        *(task for r in runs for task in (ask(r), store.apply(finished(r, 2))))
    )
    for run_id, recorded in zip(runs, outcomes[::2], strict=True):
        item = await store.inbox_item(f"i-{run_id}")
        if recorded:
            assert item is not None
            assert item.outcome == FINISHED
        else:
            assert item is None


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def two_stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one database, as two processes (an API server, a worker) open it."""
    async with AsyncExitStack() as stack:
        if request.param == "postgres":
            server = request.getfixturevalue("postgres_server")
            url = await stack.enter_async_context(server.database())
        else:
            url = f"sqlite:///{tmp_path / 'soar.db'}"
        first = await stack.enter_async_context(open_store(url))
        second = await stack.enter_async_context(open_store(url))
        yield first, second


async def test_no_request_from_another_process_is_left_pending_for_a_run_that_ended(
    two_stores: tuple[Store, Store],
) -> None:
    api, worker = two_stores
    runs = [f"r{n}" for n in range(30)]
    for run_id in runs:
        await held(worker, run_id, "w1")

    async def ask(run_id: str) -> bool:
        try:
            await api.apply(Change(inbox=[a_request(f"i-{run_id}", run_id)]))
        except ConflictError:
            return False
        return True

    async def finish(run_id: str) -> None:
        await worker.apply(finished(run_id, 2))

    outcomes = await asyncio.gather(*(task for r in runs for task in (ask(r), finish(r))))
    for run_id, recorded in zip(runs, outcomes[::2], strict=True):
        item = await worker.inbox_item(f"i-{run_id}")
        assert (item is not None) is recorded
        assert item is None or item.outcome == FINISHED
    assert await worker.inbox_for("w1", 100) == []


async def test_reading_the_inbox_uses_the_indexes(tmp_path: Path) -> None:
    await (await SqliteStore.open(tmp_path / "soar.db")).close()
    connection = sqlite3.connect(tmp_path / "soar.db")
    try:
        plan = [r[3] for r in connection.execute(f"EXPLAIN QUERY PLAN {_INBOX_FOR}", ("w", 5))]
    finally:
        connection.close()
    assert any(p.startswith("SEARCH l USING COVERING INDEX leases_owner") for p in plan), plan
    assert any(p.startswith("SEARCH i USING INDEX inbox_pending") for p in plan), plan
