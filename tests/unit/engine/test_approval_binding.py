"""An approval is bound to what it asked: its message, group, approvers and the inputs of the
action step it guards, under one digest. A decision for another digest is refused, and a
guarded step whose inputs changed since they were approved fails."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest
from pydantic import JsonValue

from soar.errors import ApprovalChanged
from soar.models.run import RunStatus, StepStatus, TransitionKind
from tests.unit.engine.conftest import World

ASK = """\
id: p
name: P
trigger: {manual: true}
inputs:
  host: {type: string, default: web-1}
steps:
  - id: ask
    approval:
      group: leads
      approvers: [ana]
      message: "Isolate {{ inputs.host }}?"
      timeout: 1h
  - id: isolate
    when: steps.ask.output.approved
    action: fx.do
    with: {name: "isolate {{ inputs.host }} seen {{ len(alerts) }}"}
    retry: {attempts: 3, backoff: 1s, on: any}
"""


def recorded(world: World, run_id: str, step: str = "ask") -> dict[str, JsonValue]:
    inputs = world.engine.executors[run_id].states[step].inputs
    assert isinstance(inputs, dict)
    return inputs


def waiting(world: World, run_id: str) -> bool:
    executor = world.engine.executors.get(run_id)
    state = None if executor is None else executor.states.get("ask")
    return state is not None and state.status is StepStatus.WAITING


async def test_an_approval_records_what_it_asks_and_the_digest_of_it(world: World) -> None:
    loaded = world.load(ASK)
    run_id = await world.engine.start_run(loaded, inputs={"host": "db-7"})
    await world.until(lambda: waiting(world, run_id))
    asked = recorded(world, run_id)
    what = {
        "message": "Isolate db-7?",
        "group": "leads",
        "approvers": ["ana"],
        "guards": {
            "step": "isolate",
            "action": "fx.do",
            "inputs": {"name": "isolate db-7 seen 0"},
        },
    }
    canonical = json.dumps(what, sort_keys=True, separators=(",", ":")).encode()
    assert asked == {
        **what,
        "digest": "sha256:" + hashlib.sha256(canonical).hexdigest(),
        "approved_by": [],
    }


async def test_a_decision_for_what_was_asked_before_is_refused_and_records_nothing(
    world: World,
) -> None:
    loaded = world.load(ASK)
    run_id = await world.engine.start_run(loaded)
    await world.until(lambda: waiting(world, run_id))
    digest = recorded(world, run_id)["digest"]
    assert isinstance(digest, str)
    with pytest.raises(ApprovalChanged) as refused:
        await world.engine.decide(run_id, "ask", approved=True, by="ana", digest="sha256:0ld")
    assert (refused.value.given, refused.value.pending) == ("sha256:0ld", digest)
    timeline = await world.store.transitions(run_id)
    assert TransitionKind.APPROVAL_DECIDED not in [t.kind for t in timeline]
    await world.engine.decide(run_id, "ask", approved=True, by="ana", digest=digest)
    run = await asyncio.wait_for(world.engine.wait_run(run_id), 5)
    assert run.status is RunStatus.COMPLETED
    assert world.effects.order == ["isolate web-1 seen 0"]
    snapshot = await world.store.load_run(run_id)
    assert snapshot is not None
    output = snapshot.steps["ask"].output
    assert isinstance(output, dict)
    assert sorted(output) == ["approved", "comment", "decided_at", "decided_by", "timed_out"]


async def test_a_guarded_step_whose_inputs_changed_since_the_approval_fails_unretried(
    world: World,
) -> None:
    loaded = world.load(ASK)
    run_id = await world.engine.start_run(loaded)
    await world.until(lambda: waiting(world, run_id))
    await world.engine.attach(run_id, {"status": "firing"})  # `len(alerts)` is 1 now
    await world.engine.decide(run_id, "ask", approved=True, by="ana")
    run = await asyncio.wait_for(world.engine.wait_run(run_id), 5)
    assert run.status is RunStatus.FAILED
    assert world.effects.calls == {}  # never called, not even once
    snapshot = await world.store.load_run(run_id)
    assert snapshot is not None
    failed = snapshot.steps["isolate"]
    assert failed.status is StepStatus.FAILED
    assert failed.attempt == 0
    assert failed.error == (
        "inputs changed since they were approved (name differ from what step 'ask' asked; "
        "a changed input needs a new approval)"
    )


@pytest.mark.parametrize(
    "after",
    [
        "  - id: stop\n    end: completed\n",
        "  - id: isolate\n    action: fx.do\n    with: {name: '{{ steps.ask.output.comment }}'}\n",
        "  - id: isolate\n    action: fx.do\n    for_each: [a, b]\n"
        "    with: {name: '{{ item }}'}\n",
    ],
    ids=["not-an-action", "reads-the-decision", "for-each"],
)
async def test_an_approval_guards_nothing_it_cannot_show(world: World, after: str) -> None:
    loaded = world.load(ASK.split("  - id: isolate")[0] + after)
    run_id = await world.engine.start_run(loaded)
    await world.until(lambda: waiting(world, run_id))
    assert recorded(world, run_id)["guards"] is None
    await world.engine.attach(run_id, {"status": "firing"})
    await world.engine.decide(run_id, "ask", approved=True, by="ana", comment="go")
    run = await asyncio.wait_for(world.engine.wait_run(run_id), 5)
    assert run.status is RunStatus.COMPLETED


async def test_a_dry_run_assumes_approval_and_binds_nothing(world: World) -> None:
    loaded = world.load(ASK)
    run = await asyncio.wait_for(world.engine.run_to_end(loaded, dry_run=True), 5)
    assert run.status is RunStatus.COMPLETED
    assert world.effects.calls == {}
