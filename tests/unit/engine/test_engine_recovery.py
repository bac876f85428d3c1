"""A worker that stops at any point loses nothing: a new engine on the same store continues."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from soar.connectors import ActionContext, Registry
from soar.connectors.core import core
from soar.engine import Engine
from soar.models.run import RunStatus, StepStatus, TransitionKind
from tests.unit.engine.conftest import Do, Done, Effects, World, effect_connector

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
    with: {name: slow, seconds: 0.2}
  - id: ask
    approval: {group: leads, timeout: 1h, on_timeout: approve}
  - id: c
    action: fx.do
    with: {name: c}
"""


def restarted(world: World, registry: Registry | None = None) -> Engine:
    """A new engine on the same store and clock: what a restarted worker is."""
    engine = Engine(
        world.store, registry or world.registry, world.engine.playbooks.values(), clock=world.clock
    )
    return engine


async def test_an_attempt_in_flight_is_issued_again_with_the_same_key(world: World) -> None:
    loaded = world.load(PLAYBOOK)
    run_id = await world.engine.start_run(loaded)
    await world.until(lambda: world.effects.calls[f"{run_id}:slow"] == 1)
    await world.engine.stop()  # the worker dies while `slow` is running
    snapshot = await world.store.load_run(run_id)
    assert snapshot is not None
    assert snapshot.steps["slow"].status is StepStatus.RUNNING
    engine = restarted(world)
    assert await engine.start() == [run_id]
    await world.until(lambda: "ask" in engine.executors[run_id].states, spins=100_000)
    await world.clock.advance(timedelta(hours=1))
    run = await engine.wait_run(run_id)
    await engine.stop()
    assert run.status is RunStatus.COMPLETED
    assert world.effects.calls[f"{run_id}:a"] == 1  # finished before the crash: not repeated
    assert world.effects.calls[f"{run_id}:slow"] == 2  # in flight: issued again...
    assert world.effects.effects[f"{run_id}:slow"] == "slow"  # ...with the same key, one effect
    assert world.effects.order.count("c") == 1


async def test_a_pending_approval_timer_fires_after_a_restart(world: World) -> None:
    loaded = world.load(PLAYBOOK)
    run_id = await world.engine.start_run(loaded)
    await world.until(lambda: "ask" in world.engine.executors[run_id].states, spins=100_000)
    await world.engine.stop()
    await world.clock.advance(timedelta(hours=2))  # the deadline passes while nobody runs
    engine = restarted(world)
    await engine.start()
    run = await engine.wait_run(run_id)
    await engine.stop()
    assert run.status is RunStatus.COMPLETED
    snapshot = await world.store.load_run(run_id)
    assert snapshot is not None
    assert snapshot.steps["ask"].output["timed_out"] is True  # type: ignore[index,call-overload]


async def test_verify_stops_a_second_attempt_when_the_effect_is_in_place(world: World) -> None:
    effects = Effects()
    fx = effect_connector(effects)
    probes: list[str] = []

    @fx.verify("do")
    async def already_done(ctx: ActionContext, params: Do) -> Done | None:
        probes.append(ctx.idempotency_key)
        return Done(name=params.name, calls=0) if ctx.idempotency_key in effects.calls else None

    registry = Registry.of([core, fx])
    world.registry = registry
    loaded = world.load(PLAYBOOK)
    first = Engine(world.store, registry, [loaded], clock=world.clock)
    run_id = await first.start_run(loaded)
    await world.until(lambda: effects.calls[f"{run_id}:slow"] == 1)
    await first.stop()
    engine = restarted(world, registry)
    await engine.start()
    await world.until(
        lambda: run_id in engine.executors and "ask" in engine.executors[run_id].states,
        spins=100_000,
    )
    await engine.decide(run_id, "ask", approved=True, by="ana")
    run = await engine.wait_run(run_id)
    await engine.stop()
    assert run.status is RunStatus.COMPLETED
    assert probes == [f"{run_id}:slow"]
    assert effects.calls[f"{run_id}:slow"] == 1  # verified, not issued again
    transitions = await world.store.transitions(run_id)
    verified = [
        t for t in transitions if t.step == "slow" and t.kind is TransitionKind.STEP_SUCCEEDED
    ]
    assert verified[-1].data == {"verified": True}


async def test_retry_from_a_step_does_not_repeat_the_effects_before_it(world: World) -> None:
    text = PLAYBOOK.replace("with: {name: c}", "with: {name: c, fail_times: 1, retryable: false}")
    loaded = world.load(text)
    run_id = await world.engine.start_run(loaded)
    await world.until(
        lambda: run_id in world.engine.executors and "ask" in world.engine.executors[run_id].states,
        spins=100_000,
    )
    await world.engine.decide(run_id, "ask", approved=True, by="ana")
    assert (await world.engine.wait_run(run_id)).status is RunStatus.FAILED
    retry = await world.engine.retry_run(run_id)
    run = await world.engine.wait_run(retry)
    assert run.status is RunStatus.COMPLETED
    assert world.effects.order == ["a", "slow", "c"]
    assert world.effects.calls[f"{run_id}:c"] == 1
    assert world.effects.calls[f"{retry}:c"] == 1
    assert f"{retry}:a" not in world.effects.calls


async def test_many_restarts_in_a_row_still_finish_every_run_once(world: World) -> None:
    loaded = world.load(PLAYBOOK.replace("seconds: 0.2", "seconds: 0.01"))
    ids = [await world.engine.start_run(loaded) for _ in range(5)]
    engine = world.engine
    for _ in range(6):
        await asyncio.sleep(0.005)
        await engine.stop()
        engine = restarted(world)
        await engine.start()
    for run_id in ids:
        await world.until(
            lambda run_id=run_id: (
                run_id not in engine.executors or "ask" in engine.executors[run_id].states
            ),
            spins=100_000,
        )
    await world.clock.advance(timedelta(hours=1))
    runs = [await engine.wait_run(run_id) for run_id in ids]
    await engine.stop()
    assert [r.status for r in runs] == [RunStatus.COMPLETED] * 5
    for run_id in ids:
        for step in ("a", "slow", "c"):
            assert world.effects.effects[f"{run_id}:{step}"] == step


async def test_fallbacks_cut_short_by_a_crash_are_finished_after_the_restart(world: World) -> None:
    loaded = world.load("""\
id: p
name: P
trigger: {manual: true}
steps:
  - id: risky
    action: fx.do
    with: {name: risky, fail_times: 9, retryable: false}
    on_error:
      - id: tell
        action: fx.do
        with: {name: tell, seconds: 0.2}
  - id: after
    action: fx.do
    with: {name: after}
""")
    run_id = await world.engine.start_run(loaded)
    await world.until(lambda: world.effects.by_name["tell"] == 1)
    await world.engine.stop()  # dies while the fallback runs
    engine = restarted(world)
    await engine.start()
    run = await engine.wait_run(run_id)
    await engine.stop()
    assert run.status is RunStatus.COMPLETED
    assert world.effects.order.count("tell") == 1
    assert world.effects.order[-1] == "after"


async def test_approvals_given_before_a_restart_still_count(world: World) -> None:
    loaded = world.load("""\
id: p
name: P
trigger: {manual: true}
steps:
  - id: ask
    approval: {approvers: [ana, bo], min_approvals: 2, timeout: 1h}
  - id: go
    when: steps.ask.output.approved
    action: fx.do
    with: {name: "by {{ steps.ask.output.decided_by | join(',') }}"}
""")
    run_id = await world.engine.start_run(loaded)
    await world.until(
        lambda: run_id in world.engine.executors and "ask" in world.engine.executors[run_id].states
    )
    await world.engine.decide(run_id, "ask", approved=True, by="ana")
    await world.engine.stop()
    engine = restarted(world)
    await engine.start()
    await world.until(
        lambda: run_id in engine.executors and "ask" in engine.executors[run_id].states
    )
    await engine.decide(run_id, "ask", approved=True, by="bo")
    run = await engine.wait_run(run_id)
    await engine.stop()
    assert run.status is RunStatus.COMPLETED
    assert world.effects.order == ["by ana,bo"]


async def test_a_follow_up_run_is_written_with_the_end_of_the_failed_run(world: World) -> None:
    world.load("""\
id: on-failure
name: On failure
trigger: {event: run.failed}
steps:
  - id: hold
    wait: {duration: 1h}
""")
    loaded = world.load("""\
id: p
name: P
trigger: {manual: true}
steps:
  - id: boom
    action: fx.do
    with: {name: boom, fail_times: 9, retryable: false}
""")
    run_id = await world.engine.start_run(loaded)
    assert (await world.engine.wait_run(run_id)).status is RunStatus.FAILED
    await world.engine.stop()  # the worker goes away right after the run failed
    follow = [r for r in await world.store.unfinished_runs() if r != run_id]
    assert len(follow) == 1  # the follow-up was recorded with the failure, not after it
    snapshot = await world.store.load_run(follow[0])
    assert snapshot is not None
    assert snapshot.run.playbook_id == "on-failure"
    assert snapshot.run.inputs["_event"]["run_id"] == run_id  # type: ignore[index,call-overload]
    engine = restarted(world)
    assert await engine.start() == follow
    await world.until(lambda: world.clock.next_wake is not None)
    await world.clock.advance(timedelta(hours=1))
    assert (await engine.wait_run(follow[0])).status is RunStatus.COMPLETED
    await engine.stop()
