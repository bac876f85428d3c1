"""The §4 constructs, run by the engine on a memory store with a fake clock."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from soar.connectors import Registry
from soar.connectors.core import core
from soar.engine import Engine
from soar.engine.backoff import MAX_RETRY_AFTER
from soar.ingest.normalize import normalize
from soar.models import Alert
from soar.models.run import RunStatus, StepStatus, TransitionKind
from soar.store import RunFilter
from soar.store.memory import MemoryStore
from tests.unit.engine.conftest import World
from tests.unit.test_alert_status import fixture

HEAD = """\
id: p
name: P
trigger: {manual: true}
"""


async def finish(world: World, text: str, **kwargs: object) -> tuple[str, RunStatus]:
    loaded = world.load(text)
    run_id = await world.engine.start_run(loaded, **kwargs)  # type: ignore[arg-type]
    run = await world.engine.wait_run(run_id)
    return run_id, run.status


async def states(world: World, run_id: str) -> dict[str, StepStatus]:
    snapshot = await world.store.load_run(run_id)
    assert snapshot is not None
    return {k: s.status for k, s in snapshot.steps.items()}


async def test_outputs_feed_later_steps_in_order(world: World) -> None:
    run_id, status = await finish(
        world,
        HEAD
        + """
steps:
  - id: first
    action: fx.do
    with: {name: one}
  - id: second
    action: fx.do
    with: {name: "after {{ steps.first.output.name }}"}
""",
    )
    assert status is RunStatus.COMPLETED
    assert world.effects.order == ["one", "after one"]
    snapshot = await world.store.load_run(run_id)
    assert snapshot is not None
    assert snapshot.steps["second"].inputs == {"name": "after one"}
    assert snapshot.run.playbook_digest.startswith("sha256:")


async def test_a_false_when_skips_and_later_steps_see_skipped(world: World) -> None:
    run_id, status = await finish(
        world,
        HEAD
        + """
steps:
  - id: maybe
    when: run.dry_run
    action: fx.do
    with: {name: never}
  - id: after
    action: fx.do
    with: {name: "{{ steps.maybe.status }}"}
""",
    )
    assert status is RunStatus.COMPLETED
    assert world.effects.order == ["skipped"]
    assert (await states(world, run_id))["maybe"] is StepStatus.SKIPPED


async def test_a_branch_runs_the_first_case_that_holds(world: World) -> None:
    _, status = await finish(
        world,
        HEAD
        + """
steps:
  - id: route
    branch:
      - when: 1 > 2
        steps: [{id: a, action: fx.do, with: {name: a}}]
      - when: 2 > 1
        steps: [{id: b, action: fx.do, with: {name: b}}]
      - else: [{id: c, action: fx.do, with: {name: c}}]
  - id: after
    action: fx.do
    with: {name: "a={{ steps.a.status }} b={{ steps.b.status }}"}
""",
    )
    assert status is RunStatus.COMPLETED
    assert world.effects.order == ["b", "a=skipped b=succeeded"]


async def test_needs_and_parallel_groups_run_independent_steps_together(world: World) -> None:
    _, status = await finish(
        world,
        HEAD
        + """
steps:
  - id: slow
    action: fx.do
    with: {name: slow, seconds: 0.05}
  - id: quick
    needs: []
    action: fx.do
    with: {name: quick}
  - id: group
    needs: [slow, quick]
    parallel:
      - {id: p1, action: fx.do, with: {name: p1, seconds: 0.02}}
      - {id: p2, action: fx.do, with: {name: p2}}
  - id: last
    action: fx.do
    with: {name: last}
""",
    )
    assert status is RunStatus.COMPLETED
    assert world.effects.order == ["quick", "slow", "p2", "p1", "last"]


async def test_for_each_runs_every_item_and_collects_outputs_in_order(world: World) -> None:
    run_id, status = await finish(
        world,
        HEAD
        + """
steps:
  - id: each
    for_each: ["x", "y", "z"]
    concurrency: 2
    action: fx.do
    with: {name: "{{ item }}#{{ index }}"}
  - id: after
    action: fx.do
    with: {name: "{{ steps.each.output | pluck('name') | join(',') }}"}
""",
    )
    assert status is RunStatus.COMPLETED
    assert world.effects.order[-1] == "x#0,y#1,z#2"
    assert set(world.effects.effects) == {f"{run_id}:each[{i}]" for i in range(3)} | {
        f"{run_id}:after"
    }


async def test_retry_waits_its_backoff_and_keeps_the_idempotency_key(world: World) -> None:
    loaded = world.load(
        HEAD
        + """
steps:
  - id: flaky
    action: fx.do
    with: {name: flaky, fail_times: 2}
    retry: {attempts: 3, backoff: 10s, jitter: false}
"""
    )
    run_id = await world.engine.start_run(loaded)
    await world.until(lambda: world.clock.next_wake is not None)  # the backoff timer is set
    assert world.effects.calls[f"{run_id}:flaky"] == 1
    await world.clock.advance(timedelta(seconds=9))
    assert world.effects.calls[f"{run_id}:flaky"] == 1
    await world.clock.advance(timedelta(seconds=1))
    await world.until(lambda: world.effects.calls[f"{run_id}:flaky"] == 2)
    await world.until(lambda: world.clock.next_wake is not None)
    await world.clock.advance(timedelta(seconds=19))
    assert world.effects.calls[f"{run_id}:flaky"] == 2  # the second backoff is doubled
    await world.clock.advance(timedelta(seconds=1))
    run = await world.engine.wait_run(run_id)
    assert run.status is RunStatus.COMPLETED
    assert world.effects.calls == {f"{run_id}:flaky": 3}
    kinds = [t.kind for t in await world.store.transitions(run_id) if t.step == "flaky"]
    assert kinds.count(TransitionKind.STEP_STARTED) == 3
    assert kinds.count(TransitionKind.STEP_FAILED) == 2


async def test_a_retry_waits_as_long_as_the_system_asked(world: World) -> None:
    """A 429's Retry-After outlasts the policy's backoff: the next attempt waits for it."""
    loaded = world.load(
        HEAD
        + """
steps:
  - id: limited
    action: fx.do
    with: {name: limited, fail_times: 1, retry_after: 45}
    retry: {attempts: 2, backoff: 5s, jitter: false}
"""
    )
    run_id = await world.engine.start_run(loaded)
    await world.until(lambda: world.clock.next_wake is not None)
    await world.clock.advance(timedelta(seconds=44))
    assert world.effects.calls[f"{run_id}:limited"] == 1  # the 5 s backoff alone would be over
    await world.clock.advance(timedelta(seconds=1))
    run = await world.engine.wait_run(run_id)
    assert run.status is RunStatus.COMPLETED
    assert world.effects.calls[f"{run_id}:limited"] == 2


async def test_a_retry_after_past_the_cap_waits_the_cap(world: World) -> None:
    loaded = world.load(
        HEAD
        + """
steps:
  - id: parked
    action: fx.do
    with: {name: parked, fail_times: 1, retry_after: 1000000}
    retry: {attempts: 2, backoff: 1s, jitter: false}
"""
    )
    run_id = await world.engine.start_run(loaded)
    await world.until(lambda: world.clock.next_wake is not None)
    snapshot = await world.store.load_run(run_id)
    assert snapshot is not None
    due = snapshot.steps["parked"].due_at
    assert due is not None
    assert due - world.clock.now() == MAX_RETRY_AFTER
    await world.clock.advance(MAX_RETRY_AFTER)
    assert (await world.engine.wait_run(run_id)).status is RunStatus.COMPLETED


async def test_an_action_knows_how_long_its_attempt_has_left(world: World) -> None:
    run_id, status = await finish(
        world,
        HEAD
        + """
steps:
  - id: timed
    action: fx.do
    with: {name: timed}
    timeout: 20s
""",
    )
    assert status is RunStatus.COMPLETED
    assert 19 < world.effects.time_left[f"{run_id}:timed"] <= 20


async def test_a_failure_that_is_not_retryable_is_not_retried(world: World) -> None:
    run_id, status = await finish(
        world,
        HEAD
        + """
steps:
  - id: broken
    action: fx.do
    with: {name: broken, fail_times: 5, retryable: false}
    retry: {attempts: 3, backoff: 1s}
""",
    )
    assert status is RunStatus.FAILED
    assert world.effects.calls[f"{run_id}:broken"] == 1


async def test_retry_inside_for_each_retries_only_the_failing_item(world: World) -> None:
    loaded = world.load(
        HEAD
        + """
steps:
  - id: each
    for_each: [0, 1, 2]
    action: fx.do
    with: {name: "item{{ item }}", fail_times: "{{ 1 if item == 1 else 0 }}"}
    retry: {attempts: 2, backoff: 5s, jitter: false}
"""
    )
    run_id = await world.engine.start_run(loaded)
    await world.until(lambda: world.clock.next_wake is not None)
    await world.clock.advance(timedelta(seconds=5))
    run = await world.engine.wait_run(run_id)
    assert run.status is RunStatus.COMPLETED
    assert world.effects.calls == {
        f"{run_id}:each[0]": 1,
        f"{run_id}:each[1]": 2,
        f"{run_id}:each[2]": 1,
    }


async def test_on_error_fallbacks_let_the_run_continue(world: World) -> None:
    _, status = await finish(
        world,
        HEAD
        + """
steps:
  - id: risky
    action: fx.do
    with: {name: risky, fail_times: 1, retryable: false}
    on_error:
      - action: fx.do
        with: {name: "fallback after {{ steps.risky.error }}"}
  - id: after
    action: fx.do
    with: {name: "risky was {{ steps.risky.status }}"}
""",
    )
    assert status is RunStatus.COMPLETED
    assert world.effects.order == ["fallback after risky failed on call 1", "risky was failed"]


async def test_a_failed_run_compensates_completed_steps_newest_first(world: World) -> None:
    _, status = await finish(
        world,
        HEAD
        + """
steps:
  - id: a
    action: fx.do
    with: {name: a}
    compensate: {action: fx.undo, with: {name: "undo {{ steps.a.output.name }}"}}
  - id: b
    action: fx.do
    with: {name: b}
    compensate: {action: fx.undo, with: {name: "undo b"}}
  - id: boom
    action: fx.do
    with: {name: boom, fail_times: 9, retryable: false}
""",
    )
    assert status is RunStatus.FAILED
    assert world.effects.undone == ["undo b", "undo a"]


async def test_a_partly_done_for_each_compensates_only_the_items_that_succeeded(
    world: World,
) -> None:
    run_id, status = await finish(
        world,
        HEAD
        + """
steps:
  - id: each
    for_each: [0, 1, 2, 3]
    action: fx.do
    with: {name: "item{{ item }}", fail_times: "{{ 9 if item == 2 else 0 }}", retryable: false}
    compensate: {action: fx.undo, with: {name: "undo item{{ item }}"}}
""",
    )
    assert status is RunStatus.FAILED
    assert world.effects.undone == ["undo item1", "undo item0"]
    found = await states(world, run_id)
    assert found["each[0]"] is StepStatus.COMPENSATED
    assert found["each[2]"] is StepStatus.FAILED
    assert "each[3]" not in found


async def test_an_approval_that_times_out_takes_its_default(world: World) -> None:
    loaded = world.load(
        HEAD
        + """
steps:
  - id: ask
    approval: {group: leads, timeout: 15m, on_timeout: approve}
  - id: go
    when: steps.ask.output.approved and steps.ask.output.timed_out
    action: fx.do
    with: {name: went}
"""
    )
    run_id = await world.engine.start_run(loaded)
    await world.until(lambda: "ask" in world.engine.executors[run_id].states)
    await world.clock.advance(timedelta(minutes=15))
    run = await world.engine.wait_run(run_id)
    assert run.status is RunStatus.COMPLETED
    assert world.effects.order == ["went"]


async def test_an_approval_decided_by_a_person_records_who(world: World) -> None:
    loaded = world.load(
        HEAD
        + """
steps:
  - id: ask
    approval: {approvers: [ana], timeout: 15m}
  - id: go
    when: steps.ask.output.approved
    action: fx.do
    with: {name: "by {{ steps.ask.output.decided_by | join(',') }}"}
"""
    )
    run_id = await world.engine.start_run(loaded)
    await world.until(lambda: "ask" in world.engine.executors[run_id].states)
    await world.engine.decide(run_id, "ask", approved=True, by="ana", comment="ok")
    run = await world.engine.wait_run(run_id)
    assert run.status is RunStatus.COMPLETED
    assert world.effects.order == ["by ana"]
    kinds = [t.kind for t in await world.store.transitions(run_id)]
    assert TransitionKind.APPROVAL_DECIDED in kinds


async def test_an_escalation_fires_when_the_run_is_slow(world: World) -> None:
    loaded = world.load(
        HEAD
        + """
steps:
  - id: ask
    approval: {group: leads, timeout: 1h}
escalate:
  - after: 30m
    unless: run.status == "completed"
    steps: [{action: fx.do, with: {name: paged}}]
"""
    )
    run_id = await world.engine.start_run(loaded)
    await world.until(lambda: "ask" in world.engine.executors[run_id].states)
    await world.clock.advance(timedelta(minutes=30))
    await world.until(lambda: world.effects.order == ["paged"])
    await world.clock.advance(timedelta(minutes=30))
    assert (await world.engine.wait_run(run_id)).status is RunStatus.COMPLETED


async def test_an_escalation_is_cancelled_when_the_run_finishes_first(world: World) -> None:
    loaded = world.load(
        HEAD
        + """
steps:
  - id: quick
    action: fx.do
    with: {name: quick}
escalate:
  - after: 30m
    steps: [{action: fx.do, with: {name: paged}}]
"""
    )
    run_id = await world.engine.start_run(loaded)
    assert (await world.engine.wait_run(run_id)).status is RunStatus.COMPLETED
    await world.clock.advance(timedelta(hours=1))
    assert world.effects.order == ["quick"]
    assert world.clock.next_wake is None


async def test_a_wait_ends_on_a_matching_later_alert(world: World) -> None:
    loaded = world.load(
        HEAD
        + """
steps:
  - id: resolved
    wait: {match: event.status == "resolved", timeout: 2h}
  - id: after
    action: fx.do
    with: {name: "timed out: {{ steps.resolved.output.timed_out }}"}
"""
    )
    run_id = await world.engine.start_run(loaded)
    await world.until(lambda: "resolved" in world.engine.executors[run_id].states)
    await world.engine.attach(run_id, {"status": "firing"})
    await world.engine.attach(run_id, {"status": "resolved"})
    assert (await world.engine.wait_run(run_id)).status is RunStatus.COMPLETED
    assert world.effects.order == ["timed out: false"]


async def test_a_step_that_ignores_cancellation_cannot_hold_the_run(world: World) -> None:
    run_id, status = await finish(
        world,
        HEAD
        + """
steps:
  - id: stuck
    action: fx.stubborn
    with: {name: stuck, seconds: 1.0}
    timeout: 50ms
""",
    )
    assert status is RunStatus.FAILED
    snapshot = await world.store.load_run(run_id)
    assert snapshot is not None
    assert snapshot.steps["stuck"].error == "timed out after 0.05s"


async def test_an_end_step_ends_the_run(world: World) -> None:
    _, status = await finish(
        world,
        HEAD
        + """
steps:
  - id: first
    action: fx.do
    with: {name: first}
  - id: stop
    when: steps.first.status == "succeeded"
    end: failed
  - id: never
    action: fx.do
    with: {name: never}
""",
    )
    assert status is RunStatus.FAILED
    assert world.effects.order == ["first"]


async def test_abort_compensates_and_ends_the_run(world: World) -> None:
    loaded = world.load(
        HEAD
        + """
steps:
  - id: done
    action: fx.do
    with: {name: done}
    compensate: {action: fx.undo, with: {name: undo}}
  - id: ask
    approval: {group: leads, timeout: 1h}
"""
    )
    run_id = await world.engine.start_run(loaded)
    await world.until(lambda: "ask" in world.engine.executors[run_id].states)
    await world.engine.abort(run_id, "false positive")
    run = await world.engine.wait_run(run_id)
    assert run.status is RunStatus.ABORTED
    assert run.error == "false positive"
    assert world.effects.undone == ["undo"]


async def test_a_sub_playbook_runs_and_reports_back(world: World) -> None:
    world.load("""
id: child
name: Child
trigger: {manual: true}
inputs:
  who: {required: true}
steps:
  - id: hello
    action: fx.do
    with: {name: "hello {{ inputs.who }}"}
""")
    _, status = await finish(
        world,
        HEAD
        + """
steps:
  - id: call
    playbook: child
    with: {who: ana}
  - id: after
    action: fx.do
    with: {name: "child {{ steps.call.output.status }}"}
""",
    )
    assert status is RunStatus.COMPLETED
    assert world.effects.order == ["hello ana", "child completed"]


def an_alert(user: str, **extra: object) -> Alert:
    return Alert.model_validate(
        {
            "id": f"a-{user}-{extra.get('n', 0)}",
            "source": "test",
            "format": "generic",
            "title": "Brute force",
            "severity": "high",
            "category": "credential_access",
            "time": "2026-01-05T09:00:00Z",
            "users": [{"name": user}],
            "raw": {"n": extra.get("n", 0)},
        }
    )


async def test_an_alert_without_a_dedup_key_still_runs_on_its_own(world: World) -> None:
    """A dedup key the alert cannot fill is no reason to drop (or endlessly retry) it."""
    world.load("""
id: brute
name: Brute
trigger:
  match: alert.category == "credential_access"
  dedup: {key: "{{ alert.users[0].name }}", window: 30m}
steps:
  - {id: note, action: fx.do, with: {name: noted}}
""")
    alert = an_alert("ana").model_copy(update={"users": []})
    first = await world.engine.submit_alert(alert)
    again = await world.engine.submit_alert(alert.model_copy(update={"id": "a-2"}))
    assert len(first) == 1
    assert len(again) == 1
    assert first != again  # no key, no window to join
    await world.engine.wait_idle()
    assert world.effects.order == ["noted", "noted"]


async def test_alerts_inside_the_dedup_window_join_the_first_run(world: World) -> None:
    world.load("""
id: brute
name: Brute
trigger:
  match: alert.category == "credential_access"
  dedup: {key: "{{ alert.users[0].name }}", window: 30m}
steps:
  - id: hold
    wait: {match: 'event.raw.n == 2', timeout: 1h}
""")
    first = await world.engine.submit_alert(an_alert("ana", n=0))
    again = await world.engine.submit_alert(an_alert("ana", n=1))
    other = await world.engine.submit_alert(an_alert("bo", n=0))
    assert first == again
    assert other != first
    await world.engine.submit_alert(an_alert("ana", n=2))
    assert (await world.engine.wait_run(first[0])).status is RunStatus.COMPLETED
    snapshot = await world.store.load_run(first[0])
    assert snapshot is not None
    assert [a.seq for a in snapshot.alerts] == [1, 2]
    await world.clock.advance(timedelta(minutes=31))
    later = await world.engine.submit_alert(an_alert("ana", n=3))
    assert later != first


async def test_a_failed_run_starts_the_error_handling_playbook(world: World) -> None:
    world.load("""
id: on-failure
name: On failure
trigger:
  event: run.failed
  match: event.playbook == "p"
steps:
  - id: tell
    action: fx.do
    with: {name: "{{ event.playbook }} failed: {{ event.error }}"}
""")
    _, status = await finish(
        world,
        HEAD
        + """
steps:
  - id: boom
    action: fx.do
    with: {name: boom, fail_times: 1, retryable: false}
""",
    )
    assert status is RunStatus.FAILED
    await world.engine.wait_idle()
    assert world.effects.order[-1].startswith("p failed: step 'boom' failed")


async def test_a_dry_run_lists_effects_and_calls_nothing(world: World) -> None:
    loaded = world.load(
        HEAD
        + """
steps:
  - id: first
    action: fx.do
    with: {name: one}
  - id: second
    action: fx.do
    with: {name: "{{ steps.first.output.name }}"}
"""
    )
    seen: list[object] = []
    world.engine.observe(lambda executor, _: seen.append(executor))
    run_id = await world.engine.start_run(loaded, dry_run=True)
    assert (await world.engine.wait_run(run_id)).status is RunStatus.COMPLETED
    executor = seen[0]
    assert world.effects.calls == {}
    assert [(e["action"], e["inputs"]) for e in executor.effects] == [  # type: ignore[attr-defined]
        ("fx.do", {"name": "one"}),
        ("fx.do", {"name": "<steps.first.output.name>"}),
    ]


async def test_a_dry_run_computes_pure_steps_so_later_steps_see_their_values(
    world: World,
) -> None:
    loaded = world.load(
        HEAD
        + """
steps:
  - id: names
    action: core.set
    with: {values: {host: "web-{{ 1 + 1 }}"}}
  - id: act
    action: fx.do
    with: {name: "isolate {{ steps.names.output.values.host }}"}
"""
    )
    seen: list[object] = []
    world.engine.observe(lambda executor, _: seen.append(executor))
    run_id = await world.engine.start_run(loaded, dry_run=True)
    assert (await world.engine.wait_run(run_id)).status is RunStatus.COMPLETED
    assert world.effects.calls == {}
    effects = seen[0].effects  # type: ignore[attr-defined]
    assert [(e["action"], e["inputs"]) for e in effects] == [("fx.do", {"name": "isolate web-2"})]


async def test_a_cron_playbook_starts_on_schedule(world: World) -> None:
    world.load("""
id: nightly
name: Nightly
trigger: {cron: "0 * * * *"}
steps:
  - id: tick
    action: fx.do
    with: {name: "tick {{ run.scheduled_for }}"}
""")
    await world.engine.start()
    await world.until(lambda: world.clock.next_wake is not None)  # the scheduler is waiting
    await world.clock.advance(timedelta(hours=1))
    await world.until(lambda: len(world.effects.order) == 1)
    assert world.effects.order == ["tick 2026-01-05T10:00:00Z"]
    assert (await world.store.cron_marks())["nightly"].hour == 10


async def test_a_duration_wait_pauses_until_its_time(world: World) -> None:
    loaded = world.load(
        HEAD
        + """
steps:
  - id: pause
    wait: {duration: 10m}
  - id: after
    action: fx.do
    with: {name: after}
"""
    )
    run_id = await world.engine.start_run(loaded)
    await world.until(lambda: world.clock.next_wake is not None)
    await world.clock.advance(timedelta(minutes=9))
    assert world.effects.order == []
    await world.clock.advance(timedelta(minutes=1))
    assert (await world.engine.wait_run(run_id)).status is RunStatus.COMPLETED
    assert world.effects.order == ["after"]


async def test_an_abort_ends_a_retry_backoff_and_no_attempt_follows(world: World) -> None:
    loaded = world.load(
        HEAD
        + """
steps:
  - id: flaky
    action: fx.do
    with: {name: flaky, fail_times: 9}
    retry: {attempts: 5, backoff: 1h, jitter: false}
"""
    )
    run_id = await world.engine.start_run(loaded)
    await world.until(lambda: world.clock.next_wake is not None)
    await world.engine.abort(run_id, "analyst: false positive")
    run = await world.engine.wait_run(run_id)
    assert run.status is RunStatus.ABORTED
    assert run.error == "analyst: false positive"
    assert world.effects.calls[f"{run_id}:flaky"] == 1


async def test_only_the_named_approvers_may_decide(world: World) -> None:
    from soar.errors import AccessDenied

    loaded = world.load(
        HEAD
        + """
steps:
  - id: ask
    approval: {approvers: [ana], timeout: 15m}
"""
    )
    run_id = await world.engine.start_run(loaded)
    await world.until(lambda: "ask" in world.engine.executors[run_id].states)
    with pytest.raises(AccessDenied, match="mallory"):
        await world.engine.decide(run_id, "ask", approved=True, by="mallory")
    await world.engine.decide(run_id, "ask", approved=False, by="ana", comment="no")
    run = await world.engine.wait_run(run_id)
    snapshot = await world.store.load_run(run_id)
    assert snapshot is not None
    assert run.status is RunStatus.COMPLETED
    assert snapshot.steps["ask"].output == {
        "approved": False,
        "timed_out": False,
        "decided_by": ["ana"],
        "comment": "no",
        "decided_at": "2026-01-05T09:00:00Z",
    }


async def test_cron_fires_missed_while_down_are_caught_up_once(world: World) -> None:
    from soar.engine import Engine
    from soar.store.base import Change

    loaded = world.load("""
id: hourly
name: Hourly
trigger: {cron: "0 * * * *"}
steps:
  - id: tick
    action: fx.do
    with: {name: "tick {{ run.scheduled_for }}"}
""")
    # the last fire started was 24 hours ago; the engine was down since
    await world.store.apply(Change(cron_marks={"hourly": world.clock.now() - timedelta(hours=24)}))
    engine = Engine(world.store, world.registry, [loaded], clock=world.clock)
    await engine.start()
    await world.until(lambda: len(world.effects.order) >= 1)
    await world.clock.advance(timedelta(minutes=1))
    await engine.stop()
    assert world.effects.order == ["tick 2026-01-05T09:00:00Z"]


async def test_a_delivered_alert_delivered_again_starts_and_joins_nothing_twice(
    world: World,
) -> None:
    """Kafka may deliver a message again after a crash: by its origin the alert finds the run it
    started, or the run it joined, even in an engine started afresh on the same store."""
    loaded = world.load("""
id: brute
name: Brute
trigger:
  match: alert.category == "credential_access"
  dedup: {key: "{{ alert.users[0].name }}", window: 30m}
steps:
  - id: hold
    wait: {match: 'event.raw.n == 9', timeout: 1h}
""")
    first = await world.engine.submit_alert(an_alert("ana", n=0), origin="kafka:a/0@1#0")
    joined = await world.engine.submit_alert(an_alert("ana", n=1), origin="kafka:a/0@2#0")
    assert joined == first
    again = Engine(world.store, world.registry, [loaded], clock=world.clock)
    assert await again.submit_alert(an_alert("ana", n=0), origin="kafka:a/0@1#0") == first
    assert await again.submit_alert(an_alert("ana", n=1), origin="kafka:a/0@2#0") == first
    snapshot = await world.store.load_run(first[0])
    assert snapshot is not None
    assert [a.seq for a in snapshot.alerts] == [1]  # the second alert joined once
    runs = await world.store.list_runs(RunFilter())
    assert [r.id for r in runs] == first
    await again.stop()


async def test_a_resolved_copy_of_the_alert_in_any_format_stops_the_ladder(world: World) -> None:
    """Elastic's `closed` workflow status, normalised to `resolved`, ends the escalations."""

    loaded = world.load(
        HEAD
        + """
steps:
  - id: ask
    approval: {group: leads, timeout: 1h, on_timeout: approve}
escalate:
  - after: 30m
    steps: [{action: fx.do, with: {name: paged}}]
"""
    )
    run_id = await world.engine.start_run(loaded)
    await world.until(lambda: "ask" in world.engine.executors[run_id].states)
    closed = {**fixture("ecs/kibana_8_2_eql_alert.json"), "kibana.alert.workflow_status": "closed"}
    (alert,) = normalize(json.dumps(closed))
    await world.engine.attach(run_id, alert.model_dump(mode="json"))
    await world.clock.advance(timedelta(minutes=30))
    await world.clock.advance(timedelta(minutes=30))
    assert (await world.engine.wait_run(run_id)).status is RunStatus.COMPLETED
    assert world.effects.order == []  # the rung never fired


async def test_a_playbook_calling_an_offline_connector_runs_as_a_dry_run(world: World) -> None:
    """The lab without slapd: `offline` connectors make their playbooks' runs dry runs; the
    others run for real, and every alert taken in is told to the listeners."""
    offline = Engine(world.store, world.registry, [], clock=world.clock, offline=["fx"])
    uses_fx = world.load(
        HEAD.replace("id: p", "id: uses-fx").replace("manual: true", "match: 'true'")
        + """
steps:
  - {id: act, action: fx.do, with: {name: acted}}
"""
    )
    core_only = world.load(
        HEAD.replace("id: p", "id: core-only").replace("manual: true", "match: 'true'")
        + """
steps:
  - {id: note, action: core.log, with: {message: noted}}
"""
    )
    offline.add_playbook(uses_fx)
    offline.add_playbook(core_only)
    heard: list[tuple[str, int]] = []
    offline.on_alert(lambda alert, runs: heard.append((alert.id, len(runs))))
    (alert,) = normalize(json.dumps({"id": "a-1", "title": "t", "severity": "low", "time": 0}))
    run_ids = await offline.submit_alert(alert)
    runs = {(await offline.wait_run(r)).playbook_id: await offline.wait_run(r) for r in run_ids}
    assert runs["uses-fx"].dry_run is True
    assert runs["core-only"].dry_run is False
    assert world.effects.calls == {}  # fx was never called
    assert heard == [("a-1", 2)]
    assert offline.is_offline(uses_fx)
    assert not offline.is_offline(core_only)
    await offline.stop()


async def test_following_rollouts_survives_a_failure_and_the_stop_stays_clean() -> None:
    calls: list[int] = []
    store = MemoryStore()
    engine = Engine(store, Registry.of([core]), [], rollout_interval=0.01)

    async def flaky() -> bool:
        calls.append(1)
        if len(calls) == 2:  # the first is the start's own reading
            raise RuntimeError("a bug in reading the rollouts")
        return False

    engine.refresh_rollouts = flaky  # type: ignore[method-assign]
    await engine.start()
    for _ in range(200):
        if len(calls) >= 4:
            break
        await asyncio.sleep(0.01)
    await engine.stop()  # raises nothing
    assert len(calls) >= 4  # still following after the failure


async def test_alerts_of_one_dedup_key_taken_in_side_by_side_start_one_run(world: World) -> None:
    """A firing and a resolved notification in one Kafka batch: the second joins the first."""
    loaded = world.load(
        HEAD.replace("manual: true", "match: 'true', dedup: {key: '{{ alert.rule }}', window: 1h}")
        + """
steps:
  - {id: note, action: core.log, with: {message: hi}}
"""
    )
    firing, resolved = (
        normalize(
            json.dumps(
                {
                    "id": f"a-{n}",
                    "title": "cpu",
                    "rule": "HostHighCpu",
                    "severity": "high",
                    "time": 0,
                    "status": status,
                }
            )
        )[0]
        for n, status in ((1, "open"), (2, "resolved"))
    )
    first, second = await asyncio.gather(
        world.engine.submit_alert(firing), world.engine.submit_alert(resolved)
    )
    assert len(first) == 1
    assert first == second
    assert len(await world.store.list_runs(RunFilter(playbook_id=loaded.playbook.id))) == 1
