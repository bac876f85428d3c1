"""Runs as data: a run, the state of each step in it, the transitions that led there, timers.

The store keeps these; the engine derives every decision from them, so a restarted worker
continues exactly where the last recorded transition left a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import JsonValue


class RunStatus(StrEnum):
    RUNNING = "running"
    WAITING = "waiting"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


class StepStatus(StrEnum):
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    CANCELLED = "cancelled"

    @property
    def is_finished(self) -> bool:
        return self not in _UNFINISHED


_TERMINAL = frozenset((RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.ABORTED))
_UNFINISHED = frozenset((StepStatus.RUNNING, StepStatus.WAITING, StepStatus.COMPENSATING))


class TriggerKind(StrEnum):
    ALERT = "alert"
    CRON = "cron"
    MANUAL = "manual"
    WEBHOOK = "webhook"
    EVENT = "event"
    PLAYBOOK = "playbook"


class TransitionKind(StrEnum):
    """Everything the timeline shows; each is written before the engine acts on it."""

    RUN_STARTED = "run_started"
    STEP_STARTED = "step_started"
    STEP_SUCCEEDED = "step_succeeded"
    STEP_FAILED = "step_failed"
    STEP_SKIPPED = "step_skipped"
    STEP_WAITING = "step_waiting"
    STEP_CANCELLED = "step_cancelled"
    COMPENSATION_STARTED = "compensation_started"
    STEP_COMPENSATED = "step_compensated"
    COMPENSATION_FAILED = "compensation_failed"
    ALERT_ATTACHED = "alert_attached"
    APPROVAL_DECIDED = "approval_decided"
    TIMER_FIRED = "timer_fired"
    ESCALATION_FIRED = "escalation_fired"
    RUN_ABORT_REQUESTED = "run_abort_requested"
    RUN_RETRIED = "run_retried"
    RUN_FINISHED = "run_finished"


class TimerKind(StrEnum):
    RETRY = "retry"
    APPROVAL = "approval"
    WAIT = "wait"
    ESCALATION = "escalation"
    CHILD = "child"


@dataclass(frozen=True, slots=True)
class Run:
    """One execution of one playbook version."""

    id: str
    playbook_id: str
    playbook_version: int
    playbook_digest: str
    status: RunStatus
    trigger: TriggerKind
    created_at: datetime
    updated_at: datetime
    alert: JsonValue = None
    inputs: dict[str, JsonValue] = field(default_factory=dict)
    parent_run: str | None = None
    parent_step: str | None = None
    error: str | None = None
    dry_run: bool = False
    trace: str | None = None
    """The run's trace as a W3C `traceparent`: its trace id and root span id, kept so that a
    resumed run goes on in the same trace and audit records name it."""


@dataclass(frozen=True, slots=True)
class StepState:
    """The latest state of one step instance. `key` is the step's key, plus `[i]` for the i-th
    item of a for_each and a region prefix for fallbacks, escalations and compensations."""

    run_id: str
    key: str
    status: StepStatus
    attempt: int
    idempotency_key: str
    inputs: JsonValue = None
    output: JsonValue = None
    error: str | None = None
    retryable: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    due_at: datetime | None = None
    order: int = 0


@dataclass(frozen=True, slots=True)
class Transition:
    """One line of a run's timeline, numbered per run."""

    run_id: str
    seq: int
    at: datetime
    kind: TransitionKind
    step: str | None = None
    attempt: int | None = None
    data: JsonValue = None


@dataclass(frozen=True, slots=True)
class Timer:
    """A durable timer: it fires after a restart as well as before one."""

    id: str
    run_id: str
    kind: TimerKind
    due_at: datetime
    step: str | None = None


@dataclass(frozen=True, slots=True)
class DedupEntry:
    """While `expires_at` is ahead, alerts of `playbook_id` with this key join `run_id`."""

    playbook_id: str
    key: str
    run_id: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class AttachedAlert:
    """An alert or event that joined a run after it started (deduplicated, or a resolution)."""

    run_id: str
    seq: int
    alert: JsonValue
