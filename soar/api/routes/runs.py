"""Runs: list with filters, one run's step timeline, abort (which compensates)."""

from __future__ import annotations

from soar.api.auth import Role
from soar.api.errors import ApiError
from soar.api.models import AbortRequest, Accepted, RunDetail, RunList, RunQuery
from soar.api.routes.requests import carry_out
from soar.api.routes.views import run_detail, run_summary, snapshot_of
from soar.api.routing import ALL_READERS, Call, Routes
from soar.models.run import RunStatus
from soar.store import RunFilter

routes = Routes("runs")
RESPONDERS = frozenset({Role.RESPONDER})


@routes.get("/runs", roles=ALL_READERS, query=RunQuery, response=RunList, errors=(422,))
async def list_runs(call: Call) -> RunList:
    """Runs, newest first, by status and playbook."""
    query: RunQuery = call.query
    statuses: tuple[RunStatus, ...] = ()
    if query.status:
        try:
            statuses = tuple(RunStatus(s.strip()) for s in query.status.split(",") if s.strip())
        except ValueError:
            known = ", ".join(s.value for s in RunStatus)
            raise ApiError(422, "bad_status", f"status is one of {known}") from None
    runs = await call.services.store.list_runs(
        RunFilter(
            playbook_id=query.playbook, statuses=statuses, before=query.before, limit=query.limit
        )
    )
    return RunList(runs=[run_summary(r) for r in runs])


@routes.get("/runs/{run_id}", roles=ALL_READERS, response=RunDetail, errors=(404,))
async def get_run(call: Call) -> RunDetail:
    """One run: its steps (attempts, durations, inputs, outputs, errors) and every transition."""
    return await run_detail(call.services.engine, call.param("run_id"))


@routes.post(
    "/runs/{run_id}/abort",
    roles=RESPONDERS,
    body=AbortRequest,
    response=Accepted,
    status=202,
    errors=(404, 409),
)
async def abort_run(call: Call) -> Accepted:
    """Abort a run: it stops, and its completed steps are compensated, newest first."""
    run_id = call.param("run_id")
    snapshot = await snapshot_of(call.services.engine, run_id)
    if snapshot.run.status.is_terminal:
        raise ApiError(409, "finished", f"run {run_id} has already {snapshot.run.status.value}")
    request = await carry_out(call, run_id, "abort", {"reason": call.body.reason})
    after = await snapshot_of(call.services.engine, run_id)
    return Accepted(run_id=run_id, status=after.run.status.value, request=request)
