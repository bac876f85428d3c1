"""The Store contract: every backend keeps runs the same way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import JsonValue

from soar.errors import ConflictError, StoreError
from soar.models.run import (
    AttachedAlert,
    DedupEntry,
    Run,
    RunStatus,
    StepState,
    StepStatus,
    TimerKind,
    Transition,
    TransitionKind,
    TriggerKind,
)
from soar.store import Change, RunFilter, Store
from tests.contract.backends import BACKENDS, open_backend
from tests.contract.runs import T0, a_run, a_step, a_timer, a_transition

CEST = timezone(timedelta(hours=2))


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with open_backend(request, tmp_path) as opened:
        yield opened


async def test_a_run_round_trips_every_field(store: Store) -> None:
    run = Run(
        id="run-1",
        playbook_id="compromised-account",
        playbook_version=7,
        playbook_digest="sha256:ff",
        status=RunStatus.COMPENSATING,
        trigger=TriggerKind.WEBHOOK,
        created_at=datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=CEST),
        updated_at=datetime(2026, 3, 1, 10, 31, tzinfo=UTC),
        alert={"user": "Zoë", "nested": {"list": [1, 2.5, None, True, "日本"]}, "none": None},
        inputs={"hosts": ["a", "b"], "depth": {"x": {"y": []}}},
        parent_run="run-0",
        parent_step="call_child",
        error="LDAP unreachable — gave up",
        dry_run=True,
        trace="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )
    await store.apply(Change(runs=[run]))
    snapshot = await store.load_run("run-1")
    assert snapshot is not None
    assert snapshot.run == run
    assert snapshot.run.created_at.tzinfo == UTC
    assert snapshot.run.created_at.hour == 10
    assert type(snapshot.run.status) is RunStatus
    assert type(snapshot.run.trigger) is TriggerKind


@pytest.mark.parametrize(
    "alert",
    [None, "text", 0, [], {}, {"k": [{"deep": [[None]]}]}, "emoji 🚨 and \u0000 nul"],
    ids=["none", "string", "zero", "empty-list", "empty-object", "nested", "unicode"],
)
async def test_json_values_round_trip(store: Store, alert: object) -> None:
    run = replace(a_run(), alert=alert)  # type: ignore[arg-type]
    await store.apply(Change(runs=[run]))
    snapshot = await store.load_run(run.id)
    assert snapshot is not None
    assert snapshot.run.alert == alert


async def test_a_step_round_trips_every_field(store: Store) -> None:
    step = StepState(
        run_id="run-1",
        key="isolate_host[2]",
        status=StepStatus.COMPENSATED,
        attempt=4,
        idempotency_key="run-1/isolate_host[2]/4",
        inputs={"host": "ws-01"},
        output={"isolated": True, "ids": [1, 2]},
        error="timeout",
        retryable=True,
        started_at=datetime(2026, 1, 5, 11, 0, tzinfo=CEST),
        finished_at=T0 + timedelta(microseconds=1),
        due_at=T0 + timedelta(days=400),
        order=12,
    )
    bare = StepState(
        run_id="run-1",
        key="notify",
        status=StepStatus.SKIPPED,
        attempt=0,
        idempotency_key="",
    )
    await store.apply(Change(runs=[a_run()], steps=[step, bare]))
    snapshot = await store.load_run("run-1")
    assert snapshot is not None
    assert snapshot.steps == {"isolate_host[2]": step, "notify": bare}
    assert type(snapshot.steps["notify"].status) is StepStatus


async def test_a_snapshot_holds_attached_alerts_in_order_and_pending_timers(store: Store) -> None:
    alerts = [AttachedAlert("run-1", 2, {"n": 2}), AttachedAlert("run-1", 1, None)]
    timers = [a_timer("t-late", T0 + timedelta(hours=1)), a_timer("t-soon", T0)]
    other_run = a_timer("t-other", T0, run_id="run-2")
    await store.apply(Change(runs=[a_run()], alerts=alerts, timers=[*timers, other_run]))
    snapshot = await store.load_run("run-1")
    assert snapshot is not None
    assert snapshot.alerts == [alerts[1], alerts[0]]
    assert snapshot.timers == [timers[1], timers[0]]
    assert type(snapshot.timers[0].kind) is TimerKind


async def test_an_unknown_run_loads_as_none(store: Store) -> None:
    await store.apply(Change(runs=[a_run()]))
    assert await store.load_run("no-such-run") is None


async def test_a_later_apply_overwrites_by_key(store: Store) -> None:
    await store.apply(
        Change(
            runs=[a_run()],
            steps=[a_step(attempt=1)],
            alerts=[AttachedAlert("run-1", 1, "first")],
            dedup=[DedupEntry("pb", "k", "run-1", T0 + timedelta(hours=1))],
        )
    )
    finished = replace(a_run(), status=RunStatus.COMPLETED, error=None, alert=[1])
    await store.apply(
        Change(
            runs=[finished],
            steps=[a_step(attempt=2)],
            alerts=[AttachedAlert("run-1", 1, "second")],
            dedup=[DedupEntry("pb", "k", "run-9", T0 + timedelta(hours=1))],
        )
    )
    snapshot = await store.load_run("run-1")
    assert snapshot is not None
    assert snapshot.run == finished
    assert snapshot.steps == {"disable_account": a_step(attempt=2)}
    assert snapshot.alerts == [AttachedAlert("run-1", 1, "second")]
    assert await store.find_dedup("pb", "k", T0) == "run-9"


async def test_a_recorded_transition_seq_is_a_conflict_and_nothing_of_the_change_is_written(
    store: Store,
) -> None:
    await store.apply(Change(runs=[a_run()], transitions=[a_transition(seq=1)]))
    with pytest.raises(ConflictError):
        await store.apply(
            Change(
                runs=[replace(a_run(), status=RunStatus.FAILED)],
                steps=[a_step()],
                transitions=[a_transition(seq=2), a_transition(seq=1)],
                timers=[a_timer("t", T0)],
                dedup=[DedupEntry("pb", "k", "run-1", T0 + timedelta(hours=1))],
                alerts=[AttachedAlert("run-1", 1, None)],
                cron_marks={"pb": T0},
            )
        )
    snapshot = await store.load_run("run-1")
    assert snapshot is not None
    assert (snapshot.run.status, snapshot.steps, snapshot.alerts) == (RunStatus.RUNNING, {}, [])
    assert [t.seq for t in await store.transitions("run-1")] == [1]
    assert snapshot.last_seq == 1
    assert await store.next_timer_due() is None
    assert await store.find_dedup("pb", "k", T0) is None
    assert await store.cron_marks() == {}


async def test_a_seq_repeated_within_one_change_is_a_conflict(store: Store) -> None:
    with pytest.raises(ConflictError):
        await store.apply(
            Change(runs=[a_run()], transitions=[a_transition(seq=1), a_transition(seq=1)])
        )
    assert await store.load_run("run-1") is None


async def test_the_same_seq_in_two_runs_is_no_conflict(store: Store) -> None:
    await store.apply(Change(transitions=[a_transition("run-1", 1), a_transition("run-2", 1)]))
    assert len(await store.transitions("run-2")) == 1


async def test_transitions_come_back_in_seq_order_and_last_seq_is_the_highest(
    store: Store,
) -> None:
    data: JsonValue = {"output": {"ok": True}, "text": "ünïcode"}
    rich = Transition("run-1", 3, T0, TransitionKind.STEP_SUCCEEDED, step="s", attempt=2, data=data)
    await store.apply(Change(runs=[a_run()], transitions=[rich, a_transition(seq=1)]))
    await store.apply(Change(transitions=[a_transition(seq=2), a_transition("run-2", 9)]))
    timeline = await store.transitions("run-1")
    assert [t.seq for t in timeline] == [1, 2, 3]
    assert timeline[2] == rich
    assert type(timeline[2].kind) is TransitionKind
    snapshot = await store.load_run("run-1")
    assert snapshot is not None
    assert snapshot.last_seq == 3


async def test_last_seq_is_zero_without_transitions(store: Store) -> None:
    await store.apply(Change(runs=[a_run()]))
    snapshot = await store.load_run("run-1")
    assert snapshot is not None
    assert snapshot.last_seq == 0
    assert await store.transitions("run-1") == []


async def test_unfinished_runs_skip_terminal_statuses_and_come_oldest_first(store: Store) -> None:
    runs = [
        a_run(f"run-{status}", status=status, created_at=T0 - timedelta(minutes=i))
        for i, status in enumerate(RunStatus)
    ]
    await store.apply(Change(runs=runs))
    # created 0, 1, 2 minutes before T0: running, waiting, compensating; oldest first
    assert await store.unfinished_runs() == ["run-compensating", "run-waiting", "run-running"]


async def test_a_run_that_finishes_leaves_the_unfinished_list(store: Store) -> None:
    await store.apply(Change(runs=[a_run()]))
    await store.apply(Change(runs=[replace(a_run(), status=RunStatus.ABORTED)]))
    assert await store.unfinished_runs() == []


async def _three_playbooks(store: Store) -> None:
    await store.apply(
        Change(
            runs=[
                a_run("a1", playbook_id="a", created_at=T0),
                a_run("a2", playbook_id="a", created_at=T0 + timedelta(minutes=2)),
                a_run("a3", playbook_id="a", created_at=T0 + timedelta(minutes=1)),
                a_run("b1", playbook_id="b", created_at=T0 + timedelta(minutes=3)),
                a_run(
                    "a4",
                    playbook_id="a",
                    status=RunStatus.FAILED,
                    created_at=T0 + timedelta(minutes=4),
                ),
            ]
        )
    )


@pytest.mark.parametrize(
    ("run_filter", "expected"),
    [
        (RunFilter(), ["a4", "b1", "a2", "a3", "a1"]),
        (RunFilter(playbook_id="a"), ["a4", "a2", "a3", "a1"]),
        (RunFilter(statuses=(RunStatus.FAILED, RunStatus.COMPLETED)), ["a4"]),
        (RunFilter(playbook_id="a", statuses=(RunStatus.RUNNING,)), ["a2", "a3", "a1"]),
        (RunFilter(since=T0 + timedelta(minutes=2)), ["a4", "b1", "a2"]),
        (RunFilter(before=T0 + timedelta(minutes=2), limit=1), ["a3"]),
        (RunFilter(limit=2), ["a4", "b1"]),
        (RunFilter(limit=0), []),
        (RunFilter(playbook_id="c"), []),
    ],
    ids=[
        "all",
        "playbook",
        "statuses",
        "playbook-and-status",
        "since",
        "before",
        "limit",
        "zero",
        "none",
    ],
)
async def test_list_runs_filters_and_returns_newest_first(
    store: Store, run_filter: RunFilter, expected: list[str]
) -> None:
    await _three_playbooks(store)
    assert [r.id for r in await store.list_runs(run_filter)] == expected


async def test_list_runs_returns_whole_runs(store: Store) -> None:
    await store.apply(Change(runs=[a_run()]))
    assert await store.list_runs(RunFilter()) == [a_run()]


async def test_due_timers_come_earliest_first_without_cancelled_or_future_ones(
    store: Store,
) -> None:
    timers = [
        a_timer("t3", T0 - timedelta(seconds=1)),
        a_timer("t1", T0 - timedelta(minutes=5)),
        a_timer("t2", T0 - timedelta(minutes=5)),
        a_timer("t-now", T0),
        a_timer("t-future", T0 + timedelta(microseconds=1)),
        a_timer("t-cancelled", T0 - timedelta(hours=1)),
    ]
    await store.apply(Change(timers=timers))
    await store.apply(Change(cancel_timers=["t-cancelled", "never-set"]))
    due = await store.due_timers(T0, 10)
    assert [t.id for t in due] == ["t1", "t2", "t3", "t-now"]
    assert due[0] == timers[1]
    assert [t.id for t in await store.due_timers(T0, 2)] == ["t1", "t2"]


async def test_next_timer_due_is_the_earliest_pending_timer(store: Store) -> None:
    assert await store.next_timer_due() is None
    await store.apply(Change(timers=[a_timer("a", T0), a_timer("b", T0 + timedelta(minutes=1))]))
    assert await store.next_timer_due() == T0
    await store.apply(Change(cancel_timers=["a"]))
    assert await store.next_timer_due() == T0 + timedelta(minutes=1)
    await store.apply(Change(cancel_timers=["b"]))
    assert await store.next_timer_due() is None


async def test_a_cancelled_timer_leaves_the_snapshot(store: Store) -> None:
    await store.apply(Change(runs=[a_run()], timers=[a_timer("a", T0), a_timer("b", T0)]))
    await store.apply(Change(cancel_timers=["a"]))
    snapshot = await store.load_run("run-1")
    assert snapshot is not None
    assert [t.id for t in snapshot.timers] == ["b"]


async def test_a_timer_cancelled_and_set_in_one_change_is_pending(store: Store) -> None:
    await store.apply(Change(timers=[a_timer("t", T0)]))
    moved = a_timer("t", T0 + timedelta(minutes=5))
    await store.apply(Change(timers=[moved], cancel_timers=["t"]))
    assert await store.due_timers(T0 + timedelta(hours=1), 10) == [moved]


async def test_a_dedup_entry_joins_only_while_its_window_is_open(store: Store) -> None:
    expires = T0 + timedelta(minutes=10)
    await store.apply(Change(dedup=[DedupEntry("pb", "jdoe", "run-1", expires)]))
    assert await store.find_dedup("pb", "jdoe", T0) == "run-1"
    assert await store.find_dedup("pb", "jdoe", expires - timedelta(microseconds=1)) == "run-1"
    assert await store.find_dedup("pb", "jdoe", expires) is None
    assert await store.find_dedup("other", "jdoe", T0) is None
    assert await store.find_dedup("pb", "other", T0) is None


async def test_cron_marks_merge_per_playbook(store: Store) -> None:
    assert await store.cron_marks() == {}
    await store.apply(Change(cron_marks={"monthly": T0, "daily": T0}))
    later = datetime(2026, 2, 1, 2, 0, tzinfo=CEST)
    await store.apply(Change(cron_marks={"daily": later}))
    marks = await store.cron_marks()
    assert marks == {"monthly": T0, "daily": later}
    assert marks["daily"].tzinfo == UTC


async def test_a_naive_datetime_is_refused_and_nothing_written(store: Store) -> None:
    naive = replace(a_transition(seq=2), at=datetime(2026, 1, 5, 9, 0))  # noqa: DTZ001
    with pytest.raises(StoreError):
        await store.apply(Change(runs=[a_run()], transitions=[naive]))
    assert await store.load_run("run-1") is None


async def test_a_value_json_cannot_hold_is_refused(store: Store) -> None:
    run = replace(a_run(), alert={"when": T0})  # type: ignore[dict-item]
    with pytest.raises(StoreError):
        await store.apply(Change(runs=[run]))
    assert await store.load_run("run-1") is None


async def test_an_empty_change_writes_nothing(store: Store) -> None:
    await store.apply(Change())
    assert await store.list_runs(RunFilter()) == []


async def test_a_closed_store_refuses_writes(store: Store) -> None:
    await store.close()
    with pytest.raises(StoreError):
        await store.apply(Change(runs=[a_run()]))


async def test_has_run_says_whether_a_run_is_recorded(store: Store) -> None:
    assert await store.has_run("run-1") is False
    await store.apply(Change(runs=[a_run("run-1")]))
    assert await store.has_run("run-1") is True
    assert await store.has_run("run-2") is False
