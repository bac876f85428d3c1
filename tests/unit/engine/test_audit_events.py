"""What the engine writes to the audit log: one record per transition an auditor needs, in the
same write as the transition, with the run's trace id, and never a secret."""

from __future__ import annotations

import asyncio
import hashlib
import json
import textwrap
from datetime import UTC, datetime, timedelta, timezone

from pydantic import BaseModel

from soar.audit.canonical import canonical
from soar.connectors import ActionContext, Connector, Registry
from soar.connectors.core import core
from soar.engine import Engine, FakeClock
from soar.engine.evidence import Evidence, rfc3339
from soar.models.audit import ZERO_HASH, AuditFilter, leaf_hash
from soar.models.run import RunStatus
from soar.playbook.validate import LoadedPlaybook, validate_text
from soar.store.base import Change
from soar.store.memory import MemoryStore
from tests.unit.engine.conftest import World

CANARY = "canary-7f3a9c1e-do-not-leak"


class Account(BaseModel):
    user: str
    note: str = ""
    password: str = ""


class Disabled(BaseModel):
    user: str
    disabled: bool


def directory_connector() -> Connector:
    ldap = Connector("dir", doc="a directory that needs a secret")

    @ldap.action(secrets=["bind_password"], idempotent=True, target="user", target_field="user")
    async def disable(ctx: ActionContext, params: Account) -> Disabled:
        assert ctx.secrets["bind_password"] == CANARY
        ctx.logger.info("disabling %s", params.user)
        return Disabled(user=params.user, disabled=True)

    @ldap.action(secrets=["bind_password"], target="user", target_field="user")
    async def reset(ctx: ActionContext, params: Account) -> Disabled:
        return Disabled(user=params.user, disabled=False)

    @ldap.action(idempotent=True, target="user", target_field="user")
    async def lookup(ctx: ActionContext, params: Account) -> Disabled:
        await asyncio.sleep(0)  # waits for I/O, as a real call does
        return Disabled(user=params.user, disabled=False)

    return ldap


def load(registry: Registry, text: str) -> LoadedPlaybook:
    result = validate_text(textwrap.dedent(text), file="t.yaml", registry=registry)
    assert result.loaded is not None, [str(d) for d in result.diagnostics]
    return result.loaded


PLAYBOOK = """\
id: lockout
name: Lock out
trigger: {manual: true}
inputs:
  user: {type: string, required: true}
steps:
  - id: disable
    action: dir.disable
    with: {user: "{{ inputs.user }}", note: "pw was {{ inputs.user }}", password: "hunter2"}
  - id: skipped
    when: inputs.user == "nobody"
    action: core.noop
"""


async def records_of(store: MemoryStore) -> list[dict[str, object]]:
    return [json.loads(r.event.body) for r in await store.query_audit(AuditFilter())]


async def test_a_run_leaves_one_record_per_transition_an_auditor_needs() -> None:
    store = MemoryStore()
    registry = Registry.of([core, directory_connector()])
    loaded = load(registry, PLAYBOOK)
    engine = Engine(
        store, registry, [loaded], clock=FakeClock(), secrets={"dir.bind_password": CANARY}
    )
    run = await engine.run_to_end(loaded, inputs={"user": "jdoe"})
    await engine.stop()
    assert run.status is RunStatus.COMPLETED
    bodies = await records_of(store)
    # an idempotent action's start is written with its outcome: one record for the attempt
    assert [(b["kind"], b.get("step"), b.get("outcome")) for b in bodies] == [
        ("run.started", None, None),
        ("step.finished", "disable", "succeeded"),
        ("step.finished", "skipped", "skipped"),
        ("run.finished", None, None),
    ]
    finished = bodies[1]
    assert finished["action"] == "dir.disable"
    assert finished["target"] == {"kind": "user", "value": "jdoe"}
    assert finished["attempt"] == 1
    assert finished["idempotency_key"] == f"{run.id}:disable"
    assert finished["inputs"] == {"user": "jdoe", "note": "pw was jdoe", "password": "[redacted]"}
    output = {"user": "jdoe", "disabled": True}
    assert finished["output_digest"] == "sha256:" + hashlib.sha256(canonical(output)).hexdigest()
    assert bodies[-1]["status"] == "completed"
    assert run.trace is not None
    assert {b["trace_id"] for b in bodies} == {run.trace[3:35]}
    assert {b["run_id"] for b in bodies} == {run.id}
    assert all(b["actor"] == "engine" for b in bodies)
    # the target is indexed for queries
    by_target = await store.query_audit(AuditFilter(target="jdoe"))
    assert [r.event.step for r in by_target] == ["disable"]


async def test_a_start_written_before_its_call_has_its_own_record() -> None:
    """A non-idempotent action's start is durable before the call; an idempotent one's is
    written beside a call that waits for I/O. Either way step.started comes first, with the
    inputs, and the outcome's record leaves them out."""
    store = MemoryStore()
    registry = Registry.of([core, directory_connector()])
    loaded = load(
        registry,
        """\
        id: reset
        name: Reset
        trigger: {manual: true}
        steps:
          - {id: look, action: dir.lookup, with: {user: jdoe}}
          - {id: reset, action: dir.reset, with: {user: jdoe, password: hunter2}}
        """,
    )
    engine = Engine(
        store, registry, [loaded], clock=FakeClock(), secrets={"dir.bind_password": CANARY}
    )
    run = await engine.run_to_end(loaded)
    await engine.stop()
    assert run.status is RunStatus.COMPLETED
    bodies = await records_of(store)
    assert [(b["kind"], b.get("step")) for b in bodies] == [
        ("run.started", None),
        ("step.started", "look"),
        ("step.finished", "look"),
        ("step.started", "reset"),
        ("step.finished", "reset"),
        ("run.finished", None),
    ]
    for started, finished in ((bodies[1], bodies[2]), (bodies[3], bodies[4])):
        assert started["idempotency_key"] == f"{run.id}:{started['step']}"
        assert "inputs" in started
        assert "inputs" not in finished
        assert "idempotency_key" not in finished
    assert bodies[3]["inputs"] == {"user": "jdoe", "password": "[redacted]"}


async def test_records_form_one_unbroken_chain() -> None:
    store = MemoryStore()
    registry = Registry.of([core, directory_connector()])
    loaded = load(registry, PLAYBOOK)
    engine = Engine(
        store, registry, [loaded], clock=FakeClock(), secrets={"dir.bind_password": CANARY}
    )
    for user in ("a", "b", "c"):
        await engine.run_to_end(loaded, inputs={"user": user})
    await engine.stop()
    records = await store.audit_records(0, 100)
    assert len(records) == 12
    prev = ZERO_HASH
    for seq, record in enumerate(records, start=1):
        assert record.seq == seq
        assert record.prev == prev
        assert record.hash == leaf_hash(seq, prev, record.event.body)
        assert canonical(json.loads(record.event.body)) == record.event.body  # RFC 8785 exactly
        prev = record.hash


async def test_the_canary_secret_is_in_no_record() -> None:
    store = MemoryStore()
    registry = Registry.of([core, directory_connector()])
    loaded = load(registry, PLAYBOOK)
    engine = Engine(
        store, registry, [loaded], clock=FakeClock(), secrets={"dir.bind_password": CANARY}
    )
    # the secret's value also turns up in an input, as if a playbook author pasted it there
    run = await engine.run_to_end(loaded, inputs={"user": f"x{CANARY}y"})
    await engine.stop()
    assert run.status is RunStatus.COMPLETED
    lines = [r.line() for r in await store.audit_records(0, 100)]
    assert lines
    assert not any(CANARY in line for line in lines)
    assert any("x[redacted]y" in line for line in lines)


async def test_approvals_name_who_decided_and_aborts_who_asked(world: World) -> None:
    loaded = world.load(
        """\
id: p
name: P
trigger: {manual: true}
steps:
  - id: ask
    approval: {approvers: [ana], timeout: 15m}
  - id: wait
    approval: {approvers: [ana], timeout: 15m}
"""
    )
    run_id = await world.engine.start_run(loaded)
    await world.until(lambda: "ask" in world.engine.executors[run_id].states)
    await world.engine.decide(run_id, "ask", approved=True, by="ana", comment="looks right")
    await world.until(lambda: "wait" in world.engine.executors[run_id].states)
    await world.engine.abort(run_id, "wrong host", actor="user:bob")
    run = await world.engine.wait_run(run_id)
    assert run.status is RunStatus.ABORTED
    bodies = await records_of(world.store)
    decided = [b for b in bodies if b["kind"] == "approval.decided"]
    assert decided == [
        {
            "kind": "approval.decided",
            "time": decided[0]["time"],
            "actor": "ana",
            "run_id": run_id,
            "playbook": "p",
            "version": 1,
            "trace_id": decided[0]["trace_id"],
            "step": "ask",
            "approved": True,
            "comment": "looks right",
        }
    ]
    aborts = [b for b in bodies if b["kind"] == "run.abort_requested"]
    assert [(b["actor"], b["reason"]) for b in aborts] == [("user:bob", "wrong host")]
    assert bodies[-1]["kind"] == "run.finished"
    assert bodies[-1]["status"] == "aborted"


async def test_a_retried_attempt_is_recorded_as_retrying_then_succeeded(world: World) -> None:
    loaded = world.load(
        """\
id: p
name: P
trigger: {manual: true}
steps:
  - id: flaky
    action: fx.do
    with: {name: flaky, fail_times: 1}
    retry: {attempts: 3, backoff: 1s, jitter: false}
"""
    )
    run_id = await world.engine.start_run(loaded)
    await world.until(lambda: world.clock.next_wake is not None)
    await world.clock.advance(timedelta(seconds=5))
    run = await world.engine.wait_run(run_id)
    assert run.status is RunStatus.COMPLETED
    steps = [
        (b["kind"], b.get("attempt"), b.get("outcome"))
        for b in await records_of(world.store)
        if b.get("step") == "flaky"
    ]
    # each attempt of the idempotent action is one record, with its inputs
    assert steps == [
        ("step.finished", 1, "retrying"),
        ("step.finished", 2, "succeeded"),
    ]


async def test_dry_runs_and_an_engine_without_audit_record_nothing() -> None:
    registry = Registry.of([core, directory_connector()])
    loaded = load(registry, PLAYBOOK)
    dry_store, off_store = MemoryStore(), MemoryStore()
    secrets = {"dir.bind_password": CANARY}
    dry = Engine(dry_store, registry, [loaded], clock=FakeClock(), secrets=secrets)
    await dry.run_to_end(loaded, inputs={"user": "jdoe"}, dry_run=True)
    await dry.stop()
    off = Engine(off_store, registry, [loaded], clock=FakeClock(), secrets=secrets, audit=False)
    run = await off.run_to_end(loaded, inputs={"user": "jdoe"})
    await off.stop()
    assert run.status is RunStatus.COMPLETED
    assert await dry_store.audit_head() == (0, ZERO_HASH)
    assert await off_store.audit_head() == (0, ZERO_HASH)


def test_times_are_written_in_utc_with_six_fraction_digits() -> None:
    assert rfc3339(datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == "2026-01-02T03:04:05.000006Z"
    assert rfc3339(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05.000000Z"
    same_second = datetime(2026, 1, 2, 3, 4, 5, 999999, tzinfo=UTC)
    assert rfc3339(same_second) == "2026-01-02T03:04:05.999999Z"
    next_day = datetime(2026, 1, 3, 3, 4, 5, 1, tzinfo=UTC)
    assert rfc3339(next_day) == "2026-01-03T03:04:05.000001Z"
    plus_two = timezone(timedelta(hours=2))
    assert (
        rfc3339(datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=plus_two)) == "2026-01-02T01:04:05.000007Z"
    )


async def test_events_outside_runs_have_their_records() -> None:
    """Dead-lettered alerts, playbook versions and roll-outs, API logins and denials: the
    ingestion, lifecycle and API code hand these to the store as they happen."""
    evidence = Evidence(secrets=[CANARY])
    at = datetime(2026, 11, 29, 10, 0, 0, 123456, tzinfo=UTC)
    payload = b'{"not": "an alert", "key": "' + CANARY.encode() + b'"}'
    events = [
        evidence.alert_rejected(
            payload,
            at,
            source="kafka:alerts/3@1042",
            reason="unknown_format",
            message=f"no format matched a message holding {CANARY}",
        ),
        evidence.playbook_saved("lockout", 1, "sha256:aa", at, author="alice"),
        evidence.playbook_saved(
            "lockout", 2, "sha256:bb", at, author="bob", previous=(1, "sha256:aa")
        ),
        evidence.playbook_rolled_out(
            "lockout", 2, "sha256:bb", at, actor="carol", share=10, mode="live"
        ),
        evidence.api_login(
            at, actor="dave", method="token", client="10.0.0.5", roles=["soc", "admin"]
        ),
        evidence.api_denied(
            at, actor="anonymous", route="POST /api/v1/runs", reason="no_token", client="10.0.0.9"
        ),
    ]
    store = MemoryStore()
    await store.apply(Change(audit=[e for e in events if e is not None]))
    bodies = await records_of(store)
    assert [b["kind"] for b in bodies] == [
        "alert.rejected",
        "playbook.created",
        "playbook.changed",
        "playbook.rolled_out",
        "api.login",
        "api.denied",
    ]
    rejected, created, changed, rolled, login, denied = bodies
    assert rejected["payload_digest"] == "sha256:" + hashlib.sha256(payload).hexdigest()
    assert rejected["payload_bytes"] == len(payload)
    assert rejected["message"] == "no format matched a message holding [redacted]"
    assert rejected["time"] == "2026-11-29T10:00:00.123456Z"
    assert (created["actor"], created["version"], created["digest"]) == ("alice", 1, "sha256:aa")
    assert "previous_version" not in created
    assert (changed["previous_version"], changed["previous_digest"]) == (1, "sha256:aa")
    assert (rolled["actor"], rolled["share"], rolled["mode"]) == ("carol", 10, "live")
    assert (login["actor"], login["roles"]) == ("dave", ["admin", "soc"])
    assert (denied["route"], denied["reason"]) == ("POST /api/v1/runs", "no_token")
    assert all(CANARY not in json.dumps(b) for b in bodies)
    # queries find them by actor and kind
    by_actor = await store.query_audit(AuditFilter(actor="bob"))
    assert [r.event.kind for r in by_actor] == ["playbook.changed"]
    assert (
        Evidence(enabled=False).api_login(at, actor="x", method="token", client="::1", roles=[])
        is None
    )
