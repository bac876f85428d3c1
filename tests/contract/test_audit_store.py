"""The audit side of the Store contract: events are sealed into one chain, in commit order, in
the same transaction as the change they record."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from soar.errors import ConflictError, StoreError
from soar.models.audit import (
    ZERO_HASH,
    AuditEvent,
    AuditFilter,
    AuditKind,
    StoredCheckpoint,
)
from soar.store import Change, SqliteStore, Store
from tests.contract.backends import BACKENDS, open_backend
from tests.contract.runs import T0, a_run, a_transition, an_event, expected_hash


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with open_backend(request, tmp_path) as opened:
        yield opened


async def test_an_empty_log_has_the_zero_head(store: Store) -> None:
    assert await store.audit_head() == (0, ZERO_HASH)
    assert await store.audit_records(0, 10) == []


async def test_events_are_sealed_into_one_chain_in_order(store: Store) -> None:
    await store.apply(Change(audit=[an_event(1), an_event(2)]))
    await store.apply(Change(runs=[a_run()], audit=[an_event(3)]))
    records = await store.audit_records(0, 10)
    assert [r.seq for r in records] == [1, 2, 3]
    prev = ZERO_HASH
    for record in records:
        assert record.prev == prev
        assert record.hash == expected_hash(record.seq, prev, record.event.body)
        prev = record.hash
    assert await store.audit_head() == (3, records[-1].hash)
    assert records[0].event == an_event(1)


async def test_concurrent_writers_still_make_one_chain(store: Store) -> None:
    await asyncio.gather(*(store.apply(Change(audit=[an_event(n)])) for n in range(1, 41)))
    records = await store.audit_records(0, 100)
    assert [r.seq for r in records] == list(range(1, 41))
    assert all(b.prev == a.hash for a, b in itertools.pairwise(records))
    assert sorted(r.event.step for r in records) == sorted(f"s{n}" for n in range(1, 41))


async def test_a_failed_change_writes_no_audit_record_and_leaves_no_gap(store: Store) -> None:
    await store.apply(Change(transitions=[a_transition(seq=1)], audit=[an_event(1)]))
    with pytest.raises(ConflictError):
        await store.apply(Change(transitions=[a_transition(seq=1)], audit=[an_event(2)]))
    await store.apply(Change(audit=[an_event(3)]))
    records = await store.audit_records(0, 10)
    assert [(r.seq, r.event.step) for r in records] == [(1, "s1"), (2, "s3")]
    assert records[1].prev == records[0].hash


async def test_a_naive_time_is_refused_before_anything_is_sealed(store: Store) -> None:
    naive = AuditEvent(
        kind=AuditKind.RUN_STARTED, time=T0.replace(tzinfo=None), actor="engine", body=b"{}"
    )
    with pytest.raises(StoreError):
        await store.apply(Change(audit=[an_event(1), naive]))
    assert await store.audit_head() == (0, ZERO_HASH)


async def test_queries_filter_on_every_field(store: Store) -> None:
    await store.apply(
        Change(
            audit=[
                an_event(1, run_id="run-a"),
                an_event(2, run_id="run-b", actor="user:alice"),
                an_event(3, run_id="run-a"),
            ]
        )
    )

    async def steps(**given: object) -> list[str | None]:
        found = await store.query_audit(AuditFilter(**given))  # type: ignore[arg-type]
        return [r.event.step for r in found]

    assert await steps(run_id="run-a") == ["s1", "s3"]
    assert await steps(actor="user:alice") == ["s2"]
    assert await steps(target="host-3") == ["s3"]
    assert await steps(since=T0 + timedelta(seconds=2)) == ["s2", "s3"]
    assert await steps(until=T0 + timedelta(seconds=2)) == ["s1"]
    assert await steps(kind="step.started", action="core.noop", limit=2) == ["s1", "s2"]
    assert await steps(after_seq=1, run_id="run-a") == ["s3"]
    assert await steps(kind="run.started") == []


async def test_checkpoints_are_kept_once_per_tree_size(store: Store) -> None:
    checkpoint = StoredCheckpoint(
        tree_size=2,
        time=T0,
        key_id="0123456789abcdef",
        line='{"type":"checkpoint"}',
        frontier=("aa" * 32,),
    )
    await store.apply(Change(checkpoints=[checkpoint]))
    assert await store.checkpoints() == [checkpoint]
    assert await store.checkpoints(after_size=2) == []
    with pytest.raises(ConflictError):
        await store.apply(Change(checkpoints=[checkpoint]))


async def test_two_sqlite_stores_on_one_file_append_to_one_chain(tmp_path: Path) -> None:
    """A CLI command (say, `soar keys rotate`) appends while a worker does."""
    first = await SqliteStore.open(tmp_path / "soar.db")
    second = await SqliteStore.open(tmp_path / "soar.db")
    try:
        # each store remembers the head it wrote last, which the other has moved on from
        for n in range(1, 13, 2):
            writer = first if n % 4 == 1 else second
            await writer.apply(Change(audit=[an_event(n), an_event(n + 1)]))
        records = await first.audit_records(0, 20)
    finally:
        await first.close()
        await second.close()
    assert [r.seq for r in records] == list(range(1, 13))
    assert [r.event.step for r in records] == [f"s{n}" for n in range(1, 13)]
    assert all(b.prev == a.hash for a, b in itertools.pairwise(records))
