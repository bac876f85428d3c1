"""The playbook schema: every key a playbook may hold, with its type. Semantics live in validate."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    StringConstraints,
)

from soar.playbook.durations import format_duration, parse_duration

STEP_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"
PLAYBOOK_ID_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
ACTION_PATTERN = r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$"


def _duration(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError("a duration is text such as 30s, 15m, 1h30m (a bare number has no unit)")
    return parse_duration(value)


Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    PlainSerializer(format_duration, return_type=str),
]
StepId = Annotated[str, StringConstraints(pattern=STEP_ID_PATTERN, max_length=64)]
PlaybookId = Annotated[str, StringConstraints(pattern=PLAYBOOK_ID_PATTERN, max_length=64)]
ActionName = Annotated[str, StringConstraints(pattern=ACTION_PATTERN, max_length=128)]
ExpressionText = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
Condition = ExpressionText | bool
Inputs = dict[str, JsonValue]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Dedup(_Strict):
    """Alerts with the same key inside the window join the first run instead of starting one."""

    key: str = "{{ alert.id }}"
    window: Duration


class RunEvent(StrEnum):
    """Events soar itself emits that a playbook can trigger on."""

    RUN_FAILED = "run.failed"
    RUN_COMPLETED = "run.completed"


class Trigger(_Strict):
    """When a playbook starts: a matching alert, a schedule, a webhook, by hand, an event."""

    match: ExpressionText | None = None
    cron: str | None = None
    timezone: str = "UTC"
    webhook: Annotated[str, StringConstraints(pattern=PLAYBOOK_ID_PATTERN)] | None = None
    manual: bool = False
    event: RunEvent | None = None
    dedup: Dedup | None = None


class InputType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    LIST = "list"
    OBJECT = "object"


class InputSpec(_Strict):
    """One input of a manually started playbook or a sub-playbook."""

    type: InputType = InputType.STRING
    required: bool = False
    default: JsonValue = None
    description: str | None = None


class Retry(_Strict):
    """Retry a failed attempt: `backoff` doubles each time (with `exponential`), plus jitter."""

    attempts: int = Field(ge=1, le=100)
    backoff: Duration = timedelta(seconds=1)
    max_backoff: Duration = timedelta(minutes=5)
    exponential: bool = True
    jitter: bool = True
    on: Literal["retryable", "any"] = "retryable"


class Compensation(_Strict):
    """The action that undoes a completed step when the run fails or is aborted."""

    action: ActionName
    with_: Inputs = Field(default_factory=dict, alias="with")
    timeout: Duration | None = None


class ApprovalTimeout(StrEnum):
    APPROVE = "approve"
    DENY = "deny"
    FAIL = "fail"


class Approval(_Strict):
    """A durable wait for a person's decision; `on_timeout` decides when nobody answers."""

    group: str | None = None
    approvers: list[str] = Field(default_factory=list)
    message: str | None = None
    timeout: Duration
    on_timeout: ApprovalTimeout = ApprovalTimeout.DENY
    min_approvals: int = Field(default=1, ge=1, le=10)


class WaitTimeout(StrEnum):
    CONTINUE = "continue"
    FAIL = "fail"


class Wait(_Strict):
    """Wait for a later alert or event (`match`), for a duration, or until a time."""

    match: ExpressionText | None = None
    duration: Duration | None = None
    until: str | None = None
    timeout: Duration | None = None
    on_timeout: WaitTimeout = WaitTimeout.CONTINUE


class EndStatus(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"


class BranchCase(_Strict):
    """One way of a branch: the first case whose `when` holds runs; `else` runs if none does."""

    when: Condition | None = None
    steps: list[Step] | None = None
    else_: list[Step] | None = Field(default=None, alias="else")


class Step(_Strict):
    """One step. It does exactly one thing: an action, an approval, a sub-playbook, a branch,
    a parallel group, a wait, or ending the run."""

    id: StepId | None = None
    name: str | None = None
    description: str | None = None

    action: ActionName | None = None
    approval: Approval | None = None
    playbook: PlaybookId | None = None
    branch: list[BranchCase] | None = None
    parallel: list[Step] | None = None
    wait: Wait | None = None
    end: EndStatus | None = None

    with_: Inputs = Field(default_factory=dict, alias="with")
    when: Condition | None = None
    needs: list[StepId] | None = None
    for_each: str | list[JsonValue] | None = None
    concurrency: int | None = Field(default=None, ge=1, le=100)
    timeout: Duration | None = None
    retry: Retry | None = None
    on_error: list[Step] | None = None
    compensate: Compensation | None = None

    @property
    def kinds(self) -> list[str]:
        """The kind keys this step sets; a valid step sets exactly one."""
        return [k for k in STEP_KINDS if getattr(self, k) is not None]


STEP_KINDS = ("action", "approval", "playbook", "branch", "parallel", "wait", "end")


class EscalationRung(_Strict):
    """One rung of an escalation ladder: after `after`, unless `unless` holds, run `steps`."""

    after: Duration
    unless: ExpressionText | None = None
    steps: list[Step] = Field(min_length=1)


class Playbook(_Strict):
    """A playbook file. `version` is the author's number; the store also keeps every saved copy."""

    id: PlaybookId
    name: str = Field(min_length=1, max_length=200)
    version: int = Field(default=1, ge=1)
    description: str | None = None
    owner: str | None = None
    tags: list[str] = Field(default_factory=list)
    enabled: bool = True
    trigger: Trigger
    inputs: dict[Annotated[str, StringConstraints(pattern=STEP_ID_PATTERN)], InputSpec] = Field(
        default_factory=dict
    )
    steps: list[Step] = Field(min_length=1, max_length=500)
    escalate: list[EscalationRung] = Field(default_factory=list, max_length=20)


BranchCase.model_rebuild()
Step.model_rebuild()
