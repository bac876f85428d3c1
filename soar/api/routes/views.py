"""Runs as the API shows them: summaries, step timelines, pending approvals."""

from __future__ import annotations

from pydantic import JsonValue

from soar.api.errors import ApiError
from soar.api.models import Guarded, PendingApproval, RunDetail, RunSummary, StepOut, TransitionOut
from soar.engine import Engine
from soar.models.run import Run, StepState, StepStatus
from soar.store.base import RunSnapshot


def run_summary(run: Run) -> RunSummary:
    alert = run.alert if isinstance(run.alert, dict) else {}
    title = alert.get("title") or alert.get("rule")
    severity = alert.get("severity")
    return RunSummary(
        id=run.id,
        playbook_id=run.playbook_id,
        playbook_version=run.playbook_version,
        status=run.status.value,
        trigger=run.trigger.value,
        dry_run=run.dry_run,
        created_at=run.created_at,
        updated_at=run.updated_at,
        error=run.error,
        alert_title=title if isinstance(title, str) else None,
        severity=severity if isinstance(severity, str) else None,
        parent_run=run.parent_run,
    )


def _step(engine: Engine, state: StepState) -> StepOut:
    duration = None
    if state.started_at is not None and state.finished_at is not None:
        duration = int((state.finished_at - state.started_at).total_seconds() * 1000)
    hide = engine.evidence.hide_secrets
    return StepOut(
        key=state.key,
        status=state.status.value,
        attempt=state.attempt,
        started_at=state.started_at,
        finished_at=state.finished_at,
        duration_ms=duration,
        inputs=hide(state.inputs),
        output=hide(state.output),
        error=_text(hide(state.error)),
        due_at=state.due_at,
    )


def _text(value: JsonValue) -> str | None:
    return value if isinstance(value, str) else None


async def snapshot_of(engine: Engine, run_id: str) -> RunSnapshot:
    snapshot = await engine.store.load_run(run_id)
    if snapshot is None:
        raise ApiError(404, "not_found", f"no run {run_id!r}")
    return snapshot


async def run_detail(engine: Engine, run_id: str) -> RunDetail:
    snapshot = await snapshot_of(engine, run_id)
    transitions = await engine.store.transitions(run_id)
    # in the order they began (a step not begun yet, or waiting, by when it is due)
    created = snapshot.run.created_at
    steps = sorted(
        snapshot.steps.values(),
        key=lambda s: (s.started_at or s.due_at or s.finished_at or created, s.order, s.key),
    )
    hide = engine.evidence.hide_secrets
    return RunDetail(
        run=run_summary(snapshot.run),
        steps=[_step(engine, s) for s in steps],
        timeline=[
            TransitionOut(
                seq=t.seq,
                at=t.at,
                kind=t.kind.value,
                step=t.step,
                attempt=t.attempt,
                data=hide(t.data),
            )
            for t in transitions
        ],
    )


def pending_approvals(engine: Engine, snapshot: RunSnapshot) -> list[PendingApproval]:
    """The approvals a run waits for, with what each was asked about."""
    loaded = engine.versions.get(snapshot.run.playbook_digest) or engine.playbooks.get(
        snapshot.run.playbook_id
    )
    found = []
    for state in snapshot.steps.values():
        if state.status is not StepStatus.WAITING or loaded is None:
            continue
        node = loaded.graph.nodes.get(state.key)
        if node is None or node.step.approval is None:
            continue
        asked = state.inputs if isinstance(state.inputs, dict) else {}
        approval = node.step.approval
        voters = asked.get("approved_by")
        guards = asked.get("guards")
        message = asked.get("message", approval.message)
        found.append(
            PendingApproval(
                run_id=snapshot.run.id,
                step=state.key,
                playbook_id=snapshot.run.playbook_id,
                message=message if isinstance(message, str) else None,
                group=approval.group,
                approvers=list(approval.approvers),
                asked_at=state.started_at,
                due_at=state.due_at,
                digest=_text(asked.get("digest")),
                guards=Guarded.model_validate(guards) if isinstance(guards, dict) else None,
                approved_by=[v for v in voters if isinstance(v, str)]
                if isinstance(voters, list)
                else [],
            )
        )
    return found
