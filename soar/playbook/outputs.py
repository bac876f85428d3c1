"""The outputs of the steps that are not actions, so references to them can be checked."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, JsonValue

STEP_FIELDS = ("output", "status", "error", "attempts", "started_at", "finished_at")
"""What `steps.<id>` holds besides the output: the run timeline's view of the step."""


class ApprovalOutcome(BaseModel):
    """`steps.<approval-id>.output`: who decided what, or that nobody did in time."""

    model_config = ConfigDict(frozen=True)

    approved: bool
    timed_out: bool
    decided_by: list[str]
    comment: str | None = None
    decided_at: datetime


class WaitOutcome(BaseModel):
    """`steps.<wait-id>.output`: the alert or event that ended the wait, if one did."""

    model_config = ConfigDict(frozen=True)

    timed_out: bool
    event: JsonValue = None
    ended_at: datetime
