"""Alerts over HTTP: the same normalisation and refusals as the Kafka path, with the reason."""

from __future__ import annotations

import hashlib

from soar.api.auth import Role
from soar.api.errors import ApiError
from soar.api.models import AcceptedAlert, AlertsOut
from soar.api.routing import Call, Routes
from soar.errors import AlertRejected
from soar.ingest.normalize import normalize
from soar.store import Change

routes = Routes("alerts")
INGESTERS = frozenset({Role.INGEST})


@routes.post(
    "/alerts",
    roles=INGESTERS,
    raw_body="application/json",
    response=AlertsOut,
    status=202,
    errors=(413, 422),
)
async def post_alerts(call: Call) -> AlertsOut:
    """One alert (a JSON object) or a batch (an array, all or nothing), in any supported format
    (OCSF, Elastic, Splunk ES, generic). A refused one is audited and answered 422 with why."""
    payload: bytes = call.body
    services = call.services
    engine = services.engine
    try:
        alerts = normalize(payload, limits=services.limits)
    except AlertRejected as exc:
        event = engine.evidence.alert_rejected(
            payload,
            engine.clock.now(),
            source=f"api:{call.request.remote or 'unknown'}",
            reason=str(exc.code),
            message=exc.message,
            actor=call.actor,
        )
        if event is not None:
            await services.store.apply(Change(audit=[event]))
        detail = {
            "index": exc.index,
            "code": str(exc.code),
            "reason": exc.message,
            "field": exc.field,
        }
        raise ApiError(422, "alert_rejected", f"{exc.code}: {exc.message}", [detail]) from None
    digest = hashlib.sha256(payload).hexdigest()[:32]
    accepted = []
    for index, alert in enumerate(alerts):
        # the same body posted again (a client's retry) finds its runs instead of new ones
        runs = await engine.submit_alert(alert, actor=call.actor, origin=f"api:{digest}:{index}")
        accepted.append(AcceptedAlert(id=alert.id, runs=runs))
    return AlertsOut(accepted=accepted, rejected=[])
