"""Requests for a run driven by another process: recorded in the run's inbox, carried out by the
engine that holds the run, answered in the same write. Two engines on one store (memory, or one
SQLite file as two processes would share it); every wait is bounded."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import JsonValue

from soar.connectors import Registry
from soar.connectors.core import core
from soar.engine import Engine, FakeClock
from soar.errors import ConflictError
from soar.models import Alert
from soar.models.run import Run, RunStatus, StepStatus, TransitionKind
from soar.playbook.validate import LoadedPlaybook, validate_text
from soar.store import Store, open_store
from soar.store.base import InboxItem
from tests.unit.engine.conftest import Effects, effect_connector

BOUND = 5.0
"""Seconds any one wait in these tests may take before it fails."""

WAITING = """\
id: w
name: W
trigger: {manual: true}
steps:
  - id: done
    action: fx.do
    with: {name: done}
    compensate: {action: fx.undo, with: {name: undo}}
  - id: ask
    approval: {approvers: [ana, bo], timeout: 1h, on_timeout: approve}
  - id: after
    action: fx.do
    with: {name: after}
"""

HELD = (
    WAITING
    + """\
  - id: hold
    wait: {duration: 1h}
"""
)
"""The run stays on after its approval, until the clock moves an hour."""

WAIT_FOR_EVENT = """\
id: e
name: E
trigger: {manual: true}
steps:
  - id: resolved
    wait: {match: event.status == "resolved", timeout: 1h, on_timeout: fail}
  - id: after
    action: fx.do
    with: {name: "after {{ steps.resolved.output.event.status }}"}
"""

DEDUPED = """\
id: brute
name: Brute
trigger:
  match: alert.category == "credential_access"
  dedup: {key: "{{ alert.users[0].name }}", window: 30m}
steps:
  - id: hold
    wait: {match: 'event.raw.n == 2', timeout: 1h, on_timeout: fail}
  - id: after
    action: fx.do
    with: {name: "joined"}
"""


@dataclass
class Pair:
    """Engine `a` drives the runs; engine `b` (an API server, another worker) asks."""

    store: Store
    effects: Effects
    registry: Registry
    clock: FakeClock = field(default_factory=FakeClock)
    a: Engine = field(init=False)
    b: Engine = field(init=False)

    def __post_init__(self) -> None:
        self.a = self.engine("a")
        self.b = self.engine("b")

    def engine(self, name: str, *, inbox_interval: float = 0.01) -> Engine:
        return Engine(
            self.store,
            self.registry,
            [],
            clock=self.clock,
            worker=name,
            inbox_interval=inbox_interval,
        )

    def load(self, text: str) -> LoadedPlaybook:
        result = validate_text(textwrap.dedent(text), file="t.yaml", registry=self.registry)
        assert result.loaded is not None, [str(d) for d in result.diagnostics]
        self.a.add_playbook(result.loaded)
        self.b.add_playbook(result.loaded)
        return result.loaded


@pytest.fixture(params=["memory", "sqlite"])
async def pair(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Pair]:
    effects = Effects()
    registry = Registry.of([core, effect_connector(effects)])
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'soar.db'}"
    async with open_store(url) as store:
        pair = Pair(store, effects, registry)
        try:
            yield pair
        finally:
            await pair.b.stop()
            await pair.a.stop()


async def eventually(condition: Callable[[], bool]) -> None:
    for _ in range(int(BOUND / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


def asking(engine: Engine, run_id: str, step: str = "ask") -> Callable[[], bool]:
    def waiting() -> bool:
        executor = engine.executors.get(run_id)
        state = None if executor is None else executor.states.get(step)
        return state is not None and state.status is StepStatus.WAITING

    return waiting


async def ended(engine: Engine, run_id: str) -> Run:
    return await asyncio.wait_for(engine.wait_run(run_id), BOUND)


async def answer(engine: Engine, item_id: str) -> JsonValue:
    item = await engine.outcome(item_id, wait=BOUND)
    assert item is not None
    assert item.done_at is not None, "not carried out in time"
    return item.outcome


def digest_of(engine: Engine, run_id: str, step: str = "ask") -> str:
    inputs = engine.executors[run_id].states[step].inputs
    assert isinstance(inputs, dict)
    digest = inputs["digest"]
    assert isinstance(digest, str)
    return digest


def decision(digest: str | None = None, *, by: str = "ana", approved: bool = True) -> JsonValue:
    return {"step": "ask", "approved": approved, "by": by, "comment": "ok", "digest": digest}


async def test_a_decision_asked_elsewhere_is_carried_out_by_the_runs_worker_once(
    pair: Pair,
) -> None:
    loaded = pair.load(HELD)
    await pair.a.start()
    run_id = await pair.a.start_run(loaded)
    await eventually(asking(pair.a, run_id))
    digest = digest_of(pair.a, run_id)
    item_id = await pair.b.request(run_id, "decide", decision(digest), actor="user:ana")
    assert await answer(pair.b, item_id) == {"ok": True}
    again = await pair.b.request(run_id, "decide", decision(digest), actor="user:ana")
    refused = await answer(pair.b, again)
    assert isinstance(refused, dict)
    assert (refused["ok"], refused["code"]) == (False, "conflict")
    await eventually(asking(pair.a, run_id, "hold"))
    await pair.clock.advance(timedelta(hours=1))
    run = await ended(pair.a, run_id)
    assert run.status is RunStatus.COMPLETED
    assert pair.effects.order == ["done", "after"]
    assert run_id not in pair.b.executors  # b asked; it never drove the run
    timeline = await pair.store.transitions(run_id)
    decided = [t for t in timeline if t.kind is TransitionKind.APPROVAL_DECIDED]
    assert [t.data for t in decided] == [{"approved": True, "by": "ana", "comment": "ok"}]
    snapshot = await pair.store.load_run(run_id)
    assert snapshot is not None
    output = snapshot.steps["ask"].output
    assert isinstance(output, dict)
    assert (output["approved"], output["decided_by"], output["comment"]) == (True, ["ana"], "ok")
    with pytest.raises(ConflictError, match="has already completed"):
        await pair.b.request(run_id, "decide", decision(digest), actor="user:ana")


async def test_each_approver_counts_once(pair: Pair) -> None:
    loaded = pair.load(WAITING.replace("on_timeout: approve", "min_approvals: 2"))
    await pair.a.start()
    run_id = await pair.a.start_run(loaded)
    await eventually(asking(pair.a, run_id))
    first = await pair.b.request(run_id, "decide", decision(), actor="user:ana")
    assert await answer(pair.b, first) == {"ok": True}
    second = await pair.b.request(run_id, "decide", decision(), actor="user:ana")
    refused = await answer(pair.b, second)
    assert isinstance(refused, dict)
    assert (refused["ok"], refused["code"]) == (False, "conflict")
    assert "already approved" in str(refused["error"])
    assert asking(pair.a, run_id)()  # one vote of two
    third = await pair.b.request(run_id, "decide", decision(by="bo"), actor="user:bo")
    assert await answer(pair.b, third) == {"ok": True}
    run = await ended(pair.a, run_id)
    snapshot = await pair.store.load_run(run.id)
    assert snapshot is not None
    output = snapshot.steps["ask"].output
    assert isinstance(output, dict)
    assert output["decided_by"] == ["ana", "bo"]


async def test_an_abort_asked_elsewhere_compensates_on_the_runs_worker(pair: Pair) -> None:
    loaded = pair.load(WAITING)
    await pair.a.start()
    run_id = await pair.a.start_run(loaded)
    await eventually(asking(pair.a, run_id))
    await pair.b.abort(run_id, "false positive", actor="user:bob")
    run = await ended(pair.a, run_id)
    assert run.status is RunStatus.ABORTED
    assert run.error == "false positive"
    assert pair.effects.undone == ["undo"]
    assert pair.effects.order == ["done"]
    timeline = await pair.store.transitions(run_id)
    requested = [t for t in timeline if t.kind is TransitionKind.RUN_ABORT_REQUESTED]
    assert [t.data for t in requested] == [{"reason": "false positive"}]


async def test_an_event_sent_elsewhere_wakes_a_wait_on_the_runs_worker(pair: Pair) -> None:
    loaded = pair.load(WAIT_FOR_EVENT)
    await pair.a.start()
    run_id = await pair.a.start_run(loaded)
    await eventually(asking(pair.a, run_id, "resolved"))
    await pair.b.attach(run_id, {"status": "firing"})
    await pair.b.attach(run_id, {"status": "resolved"})
    run = await ended(pair.a, run_id)
    assert run.status is RunStatus.COMPLETED
    assert pair.effects.order == ["after resolved"]
    snapshot = await pair.store.load_run(run_id)
    assert snapshot is not None
    assert [a.alert for a in snapshot.alerts] == [{"status": "firing"}, {"status": "resolved"}]
    seqs = [t.seq for t in await pair.store.transitions(run_id)]
    assert seqs == list(range(1, len(seqs) + 1))  # one writer: no gap, no race


async def test_an_alert_delivered_elsewhere_joins_the_deduplicated_run_once(pair: Pair) -> None:
    def alert(n: int) -> Alert:
        return Alert.model_validate(
            {
                "id": f"a-{n}",
                "source": "test",
                "format": "generic",
                "title": "Brute force",
                "severity": "high",
                "category": "credential_access",
                "time": "2026-01-05T09:00:00Z",
                "users": [{"name": "ana"}],
                "raw": {"n": n},
            }
        )

    pair.load(DEDUPED)
    await pair.a.start()
    first = await pair.a.submit_alert(alert(0), origin="kafka:a/0@1#0")
    await eventually(asking(pair.a, first[0], "hold"))
    joined = await pair.b.submit_alert(alert(2), origin="kafka:a/0@2#0")
    again = await pair.b.submit_alert(alert(2), origin="kafka:a/0@2#0")  # a redelivery
    assert joined == again == first
    run = await ended(pair.a, first[0])
    assert run.status is RunStatus.COMPLETED
    snapshot = await pair.store.load_run(first[0])
    assert snapshot is not None
    assert [a.seq for a in snapshot.alerts] == [1]


async def test_a_changed_approval_or_a_stranger_is_refused_and_nothing_is_recorded(
    pair: Pair,
) -> None:
    loaded = pair.load(WAITING)
    await pair.a.start()
    run_id = await pair.a.start_run(loaded)
    await eventually(asking(pair.a, run_id))
    stale = await pair.b.request(run_id, "decide", decision("sha256:0ld"), actor="user:ana")
    stranger = await pair.b.request(run_id, "decide", decision(by="mallory"), actor="mallory")
    changed = await answer(pair.b, stale)
    assert isinstance(changed, dict)
    assert (changed["ok"], changed["code"]) == (False, "approval_changed")
    denied = await answer(pair.b, stranger)
    assert isinstance(denied, dict)
    assert (denied["ok"], denied["code"]) == (False, "denied")
    assert "mallory" in str(denied["error"])
    timeline = await pair.store.transitions(run_id)
    assert TransitionKind.APPROVAL_DECIDED not in [t.kind for t in timeline]
    assert asking(pair.a, run_id)()


async def test_a_request_for_a_run_that_ended_or_never_was_is_refused(pair: Pair) -> None:
    pair.load(
        """\
        id: quick
        name: Quick
        trigger: {manual: true}
        steps:
          - {id: one, action: fx.do, with: {name: one}}
        """
    )
    run = await pair.a.run_to_end("quick")
    assert run.status is RunStatus.COMPLETED
    with pytest.raises(ConflictError, match="has already completed"):
        await pair.b.request(run.id, "abort", {"reason": "x"}, actor="user:bob")
    with pytest.raises(ConflictError, match="no run nope"):
        await pair.b.decide("nope", "ask", approved=True, by="ana")
    with pytest.raises(ValueError, match="unknown request kind"):
        await pair.b.request(run.id, "retry", {}, actor="user:bob")
    with pytest.raises(ValueError, match="'approved'"):
        await pair.b.request(run.id, "decide", {"step": "ask", "by": "ana"}, actor="user:bob")


async def test_a_request_left_pending_when_the_run_ends_is_answered_conflict(pair: Pair) -> None:
    loaded = pair.load(WAITING)
    pair.a = pair.engine("a", inbox_interval=3600)  # never looks at its inbox in this test
    await pair.a.start()
    run_id = await pair.a.start_run(loaded)
    await eventually(asking(pair.a, run_id))
    item_id = await pair.b.request(run_id, "decide", decision(), actor="user:ana")
    await pair.clock.advance(timedelta(hours=2))  # nobody decided: approved on timeout
    run = await ended(pair.a, run_id)
    assert run.status is RunStatus.COMPLETED
    refused = await answer(pair.b, item_id)
    assert refused == {
        "ok": False,
        "code": "conflict",
        "error": f"run {run_id} has already completed",
    }
    with pytest.raises(ConflictError, match="has already completed"):
        await pair.b.abort(run_id)


async def test_a_request_for_a_run_nobody_drives_waits_for_the_worker_that_takes_it_over(
    pair: Pair,
) -> None:
    loaded = pair.load(WAITING)
    await pair.a.start()
    run_id = await pair.a.start_run(loaded)
    await eventually(asking(pair.a, run_id))
    await pair.a.stop()  # gives the run up: nobody drives it now
    item_id = await pair.b.request(run_id, "decide", decision(), actor="user:ana")
    pending = await pair.b.outcome(item_id, wait=0.05)
    assert isinstance(pending, InboxItem)
    assert pending.done_at is None
    assert await pair.b.start() == [run_id]  # b takes the run over, and its request with it
    assert await answer(pair.b, item_id) == {"ok": True}
    assert (await ended(pair.b, run_id)).status is RunStatus.COMPLETED
    assert await pair.b.outcome("unknown", wait=0.0) is None
