"""Operator requests on a run: carried out here when this process drives the run, else left
in the run's inbox for the worker that does (and waited for, briefly)."""

from __future__ import annotations

from pydantic import JsonValue

from soar.api.errors import ApiError
from soar.api.routing import Call
from soar.errors import AccessDenied, ApprovalChanged, ConflictError

# an inbox outcome's code -> the answer's status and code
_CODES = {
    "conflict": (409, "conflict"),
    "approval_changed": (409, "approval_changed"),
    "denied": (403, "not_an_approver"),
}


async def carry_out(call: Call, run_id: str, kind: str, body: dict[str, JsonValue]) -> str | None:
    """Do `kind` on the run; returns the inbox request id when another worker will do it and
    has not yet (None: done).

    Raises:
        ApiError: 409 when the run cannot take it (finished, nothing pending, the approval
            changed), 403 when the caller may not decide.
    """
    engine = call.services.engine
    try:
        if run_id in engine.executors:
            if kind == "abort":
                await engine.abort(run_id, str(body["reason"]), actor=call.actor)
            else:
                comment, digest = body.get("comment"), body.get("digest")
                await engine.decide(
                    run_id,
                    str(body["step"]),
                    approved=body["approved"] is True,
                    by=str(body["by"]),
                    comment=comment if isinstance(comment, str) else None,
                    digest=digest if isinstance(digest, str) else None,
                )
            return None
        request = await engine.request(run_id, kind, body, actor=call.actor)
    except ApprovalChanged as exc:
        raise ApiError(409, "approval_changed", str(exc)) from None
    except AccessDenied as exc:
        raise ApiError(403, "not_an_approver", str(exc)) from None
    except ConflictError as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    item = await engine.outcome(request, wait=call.services.settings.decision_wait)
    if item is None or item.done_at is None:
        return request
    outcome = item.outcome if isinstance(item.outcome, dict) else {}
    if outcome.get("ok") is True:
        return None
    status, code = _CODES.get(str(outcome.get("code")), (409, "conflict"))
    raise ApiError(status, code, str(outcome.get("error") or "refused"))
