"""Approvals: the pending ones with what each guards, and deciding one."""

from __future__ import annotations

from soar.api.auth import Role
from soar.api.errors import ApiError
from soar.api.models import ApprovalList, Decided, Decision
from soar.api.routes.requests import carry_out
from soar.api.routes.views import pending_approvals, snapshot_of
from soar.api.routing import Call, Routes
from soar.models.run import RunStatus
from soar.store import RunFilter

routes = Routes("approvals")
DECIDERS = frozenset({Role.RESPONDER})
_MOST = 500


@routes.get("/approvals", roles=DECIDERS, response=ApprovalList)
async def list_approvals(call: Call) -> ApprovalList:
    """Every approval a run is waiting for, oldest first."""
    engine = call.services.engine
    waiting = await call.services.store.list_runs(
        RunFilter(statuses=(RunStatus.WAITING, RunStatus.RUNNING), limit=_MOST)
    )
    found = []
    for run in waiting:
        snapshot = await engine.store.load_run(run.id)
        if snapshot is not None:
            found.extend(pending_approvals(engine, snapshot))
    found.sort(key=lambda a: (a.asked_at is None, a.asked_at))
    return ApprovalList(approvals=found)


@routes.post(
    "/approvals/{run_id}/{step}",
    roles=DECIDERS,
    body=Decision,
    response=Decided,
    errors=(403, 404, 409),
)
async def decide(call: Call) -> Decided:
    """Approve or deny one pending approval. `digest` (from the list) binds the decision to
    what was asked: if the approval changed since, 409 `approval_changed`."""
    run_id, step = call.param("run_id"), call.param("step")
    snapshot = await snapshot_of(call.services.engine, run_id)
    pending = {a.step: a for a in pending_approvals(call.services.engine, snapshot)}
    if step not in pending:
        raise ApiError(409, "not_pending", f"run {run_id} waits for no approval at {step!r}")
    body: Decision = call.body
    if body.digest is not None and pending[step].digest not in (None, body.digest):
        raise ApiError(409, "approval_changed", "the approval changed since it was shown: reload")
    approved = body.decision == "approve"
    request = await carry_out(
        call,
        run_id,
        "decide",
        {
            "step": step,
            "approved": approved,
            "by": call.principal.name if call.principal is not None else "anonymous",
            "comment": body.comment,
            "digest": body.digest,
        },
    )
    return Decided(run_id=run_id, step=step, decision=body.decision, applied=request is None)
