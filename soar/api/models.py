"""The API's request and response bodies: one pydantic model each, from which the OpenAPI
document's schemas are generated."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, JsonValue


def _iso_only(value: object) -> object:
    """A time in a query is ISO 8601 text: a bare number is refused, not read as epoch seconds."""
    if isinstance(value, str) and not value.strip().lstrip("+-").replace(".", "", 1).isdigit():
        return value
    if isinstance(value, datetime):
        return value
    raise ValueError("an ISO 8601 date-time is expected")


IsoTime = Annotated[datetime, BeforeValidator(_iso_only)]
MAX_SEQ = 2**63 - 1


class Strict(BaseModel):
    """A request body: unknown fields are refused, so a typo is an error, not a silent no-op."""

    model_config = ConfigDict(extra="forbid")


# -- system ------------------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, str]


# -- session -----------------------------------------------------------------------------------


class Login(Strict):
    token: str = Field(min_length=1, max_length=512)


class Session(BaseModel):
    name: str
    role: str
    csrf_token: str | None = None


# -- playbooks ---------------------------------------------------------------------------------


class PlaybookSummary(BaseModel):
    id: str
    name: str
    version: int
    digest: str
    description: str | None
    file: str
    trigger: dict[str, JsonValue]
    steps: int


class PlaybookDetail(PlaybookSummary):
    source: str


class PlaybookList(BaseModel):
    playbooks: list[PlaybookSummary]


class Draft(Strict):
    source: str = Field(max_length=1_000_000)
    file: str = Field(default="draft.yaml", max_length=200)


class NewVersion(Strict):
    source: str = Field(max_length=1_000_000)


class SavedVersion(BaseModel):
    id: str
    version: int
    digest: str
    live: bool = False
    """Whether saving made it the stable version (the playbook's first saved version)."""


class VersionOut(BaseModel):
    """A saved version with its current share of the matching alerts and its mode."""

    version: int
    digest: str
    author: str
    created_at: datetime
    share: int
    mode: Literal["live", "dry_run"]
    stable: bool


class VersionList(BaseModel):
    id: str
    versions: list[VersionOut]


class RolloutRequest(Strict):
    version: int = Field(ge=1, le=MAX_SEQ, strict=True)
    share: int = Field(ge=0, le=100, strict=True)
    mode: Literal["live", "dry_run"] = "live"


class RolloutOut(BaseModel):
    """A rollout record written: a version's share and mode from `at` on."""

    version: int
    share: int
    mode: Literal["live", "dry_run"]
    actor: str
    at: datetime


class RolledOut(BaseModel):
    id: str
    records: list[RolloutOut]
    versions: list[VersionOut]


class DiagnosticOut(BaseModel):
    file: str
    line: int
    column: int
    message: str


class ValidationOut(BaseModel):
    valid: bool
    diagnostics: list[DiagnosticOut]


class DryRunRequest(Strict):
    source: str = Field(max_length=1_000_000)
    alert: dict[str, JsonValue]
    file: str = Field(default="draft.yaml", max_length=200)


# -- runs --------------------------------------------------------------------------------------


class RunSummary(BaseModel):
    id: str
    playbook_id: str
    playbook_version: int
    status: str
    trigger: str
    dry_run: bool
    created_at: datetime
    updated_at: datetime
    error: str | None
    alert_title: str | None
    severity: str | None
    parent_run: str | None = None


class RunList(BaseModel):
    runs: list[RunSummary]


class StepOut(BaseModel):
    key: str
    status: str
    attempt: int
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    inputs: JsonValue
    output: JsonValue
    error: str | None
    due_at: datetime | None


class TransitionOut(BaseModel):
    seq: int
    at: datetime
    kind: str
    step: str | None
    attempt: int | None
    data: JsonValue


class RunDetail(BaseModel):
    run: RunSummary
    steps: list[StepOut]
    timeline: list[TransitionOut]


class DryRunOut(BaseModel):
    valid: bool
    diagnostics: list[DiagnosticOut]
    run: RunDetail | None


class RunQuery(Strict):
    status: str | None = None
    playbook: str | None = Field(default=None, max_length=200)
    limit: int = Field(default=100, ge=1, le=1000)
    before: IsoTime | None = None


class AbortRequest(Strict):
    reason: str = Field(default="aborted from the API", min_length=1, max_length=1000)


class Accepted(BaseModel):
    run_id: str
    status: str
    request: str | None = None


# -- approvals ---------------------------------------------------------------------------------


class Guarded(BaseModel):
    step: str
    action: str
    inputs: JsonValue


class PendingApproval(BaseModel):
    run_id: str
    step: str
    playbook_id: str
    message: str | None
    group: str | None
    approvers: list[str]
    asked_at: datetime | None
    due_at: datetime | None
    digest: str | None
    guards: Guarded | None
    approved_by: list[str]


class ApprovalList(BaseModel):
    approvals: list[PendingApproval]


class Decision(Strict):
    decision: Literal["approve", "deny"]
    digest: str | None = Field(default=None, max_length=100)
    comment: str | None = Field(default=None, max_length=2000)


class Decided(BaseModel):
    run_id: str
    step: str
    decision: str
    applied: bool


# -- alerts ------------------------------------------------------------------------------------


class AcceptedAlert(BaseModel):
    id: str
    runs: list[str]


class RejectedAlert(BaseModel):
    index: int | None
    code: str
    reason: str
    field: str | None = None


class AlertsOut(BaseModel):
    accepted: list[AcceptedAlert]
    rejected: list[RejectedAlert]


# -- audit -------------------------------------------------------------------------------------


class CompareQuery(Strict):
    since: IsoTime | None = None
    limit: int = Field(default=1000, ge=1, le=10_000)


class AuditQuery(Strict):
    run: str | None = Field(default=None, max_length=200)
    alert: str | None = Field(default=None, max_length=200)
    actor: str | None = Field(default=None, max_length=200)
    kind: str | None = Field(default=None, max_length=100)
    action: str | None = Field(default=None, max_length=200)
    target: str | None = Field(default=None, max_length=500)
    since: IsoTime | None = None
    until: IsoTime | None = None
    after: int = Field(default=0, ge=0, le=MAX_SEQ)
    limit: int = Field(default=100, ge=1, le=1000)


class AuditRecordOut(BaseModel):
    seq: int
    time: datetime
    kind: str
    actor: str
    run_id: str | None
    alert_id: str | None
    step: str | None
    action: str | None
    target: str | None
    trace_id: str | None
    body: dict[str, Any]
    hash: str


class AuditPage(BaseModel):
    records: list[AuditRecordOut]
    next_after: int | None


class Verification(BaseModel):
    verified: bool
    size: int
    head: str
    checkpoints: int
    signed_size: int
    first_bad: int | None
    reason: str | None


# -- connectors --------------------------------------------------------------------------------


class ActionOut(BaseModel):
    name: str
    doc: str
    secrets: list[str]
    idempotent: bool
    read_only: bool
    compensate: str | None
    timeout_seconds: float
    target: str
    target_field: str | None
    cache_ttl_seconds: float | None
    verify: bool
    pure: bool
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]


class ConnectorOut(BaseModel):
    name: str
    doc: str
    actions: list[ActionOut]


class ConnectorList(BaseModel):
    connectors: list[ConnectorOut]
