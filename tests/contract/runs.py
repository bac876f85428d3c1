"""Sample runs, steps, timers, transitions and audit events for the store suites, every field
set."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from soar.models.audit import AuditEvent, AuditKind
from soar.models.run import (
    Run,
    RunStatus,
    StepState,
    StepStatus,
    Timer,
    TimerKind,
    Transition,
    TransitionKind,
    TriggerKind,
)

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def a_run(
    run_id: str = "run-1",
    *,
    playbook_id: str = "compromised-account",
    status: RunStatus = RunStatus.RUNNING,
    created_at: datetime = T0,
) -> Run:
    return Run(
        id=run_id,
        playbook_id=playbook_id,
        playbook_version=3,
        playbook_digest="sha256:ab12",
        status=status,
        trigger=TriggerKind.ALERT,
        created_at=created_at,
        updated_at=created_at + timedelta(seconds=1),
        alert={"user": "jdoe", "severity": 7},
    )


def a_step(run_id: str = "run-1", key: str = "disable_account", *, attempt: int = 1) -> StepState:
    return StepState(
        run_id=run_id,
        key=key,
        status=StepStatus.RUNNING,
        attempt=attempt,
        idempotency_key=f"{run_id}/{key}/{attempt}",
        started_at=T0,
    )


def a_timer(timer_id: str, due_at: datetime, run_id: str = "run-1") -> Timer:
    return Timer(id=timer_id, run_id=run_id, kind=TimerKind.RETRY, due_at=due_at, step="s")


def a_transition(run_id: str = "run-1", seq: int = 1) -> Transition:
    return Transition(run_id=run_id, seq=seq, at=T0, kind=TransitionKind.STEP_STARTED, step="s")


def an_event(n: int, *, run_id: str | None = "run-1", actor: str = "engine") -> AuditEvent:
    body = f'{{"actor":"{actor}","kind":"step.started","n":{n}}}'.encode()
    return AuditEvent(
        kind=AuditKind.STEP_STARTED,
        time=T0 + timedelta(seconds=n),
        actor=actor,
        body=body,
        run_id=run_id,
        step=f"s{n}",
        action="core.noop",
        target=f"host-{n}",
        trace_id="ab" * 16,
    )


def expected_hash(seq: int, prev: str, body: bytes) -> str:
    """A record's hash, computed here independently of soar's own code."""
    entry = b'{"body":' + body + b',"prev":"' + prev.encode() + b'","seq":' + str(seq).encode()
    return hashlib.sha256(b"\x00" + entry + b"}").hexdigest()
