"""The audit log: query it, verify it here, export it as the file an auditor verifies alone."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from soar.api.auth import Role
from soar.api.models import AuditPage, AuditQuery, AuditRecordOut, Verification
from soar.api.routing import Call, Routes
from soar.audit.export import export_lines
from soar.audit.keys import load_public_keys
from soar.audit.verify import verify_export
from soar.models.audit import AuditFilter, AuditRecord

routes = Routes("audit")
AUDITORS = frozenset({Role.AUDITOR})


def _record(record: AuditRecord) -> AuditRecordOut:
    event = record.event
    return AuditRecordOut(
        seq=record.seq,
        time=event.time,
        kind=str(event.kind),
        actor=event.actor,
        run_id=event.run_id,
        alert_id=event.alert_id,
        step=event.step,
        action=event.action,
        target=event.target,
        trace_id=event.trace_id,
        body=json.loads(event.body),
        hash=record.hash,
    )


@routes.get("/audit", roles=AUDITORS, query=AuditQuery, response=AuditPage)
async def query(call: Call) -> AuditPage:
    """Records by run, alert, actor, kind, action, target and time; page on with `after`."""
    q: AuditQuery = call.query
    records = await call.services.store.query_audit(
        AuditFilter(
            since=q.since,
            until=q.until,
            run_id=q.run,
            alert_id=q.alert,
            actor=q.actor,
            kind=q.kind,
            action=q.action,
            target=q.target,
            after_seq=q.after,
            limit=q.limit,
        )
    )
    more = len(records) == q.limit
    return AuditPage(
        records=[_record(r) for r in records], next_after=records[-1].seq if more else None
    )


@routes.get("/audit/verify", roles=AUDITORS, response=Verification)
async def verify(call: Call) -> Verification:
    """Verify the whole log as an auditor would its export: the hash chain, and every signed
    checkpoint against the public keys."""
    services = call.services
    lines = [line async for line in export_lines(services.store)]
    pem = services.public_keys_pem() if services.public_keys_pem is not None else ""
    keys = load_public_keys(pem)
    report = await asyncio.to_thread(verify_export, lines, keys)
    size, head = await services.store.audit_head()
    problem = report.problem
    return Verification(
        verified=report.ok,
        size=size,
        head=head,
        checkpoints=report.checkpoints,
        signed_size=report.last_checkpoint,
        first_bad=problem.seq if problem is not None else None,
        reason=problem.message if problem is not None else None,
    )


@routes.get("/audit/export", roles=AUDITORS, stream="application/x-ndjson")
async def export(call: Call) -> web.StreamResponse:
    """The log as JSON Lines with its signed checkpoints: `soar audit verify` checks it with
    only the public key."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/x-ndjson",
            "Content-Disposition": 'attachment; filename="audit.jsonl"',
        }
    )
    await response.prepare(call.request)
    async for line in export_lines(call.services.store):
        await response.write(line.encode() + b"\n")
    await response.write_eof()
    return response
