"""One trace per alert with a span per step attempt, audit records that name those traces,
metrics of the runs, and a canary secret that shows up in no output at all."""

from __future__ import annotations

import json
import logging
import textwrap
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel

from soar.connectors import ActionContext, ActionFailed, Connector, Registry
from soar.connectors.core import core
from soar.engine import Engine, FakeClock
from soar.models import Alert, AlertFormat
from soar.models.audit import AuditFilter
from soar.models.run import RunStatus
from soar.playbook.validate import LoadedPlaybook, validate_text
from soar.store.memory import MemoryStore
from soar.telemetry.metrics import configure_metrics
from soar.telemetry.tracing import in_memory_tracing

CANARY = "canary-2b9e51-never-print-me"


class Host(BaseModel):
    host: str


class Isolated(BaseModel):
    host: str
    ticket: str


def edr_connector(calls: Counter[str]) -> Connector:
    edr = Connector("edr", doc="an EDR that needs an API key")

    @edr.action(secrets=["api_key"], idempotent=True, target="host", target_field="host")
    async def isolate(ctx: ActionContext, params: Host) -> Isolated:
        calls[ctx.idempotency_key] += 1
        key = ctx.secrets["api_key"]
        ctx.logger.info("isolating %s with key %s", params.host, key)
        if calls[ctx.idempotency_key] == 1:
            raise ActionFailed(f"EDR said 503 to key {key}", retryable=True)
        return Isolated(host=params.host, ticket=f"T-1 issued for {key}")

    return edr


PLAYBOOK = """\
id: contain
name: Contain a host
trigger:
  match: alert.severity >= "high"
steps:
  - id: note
    action: core.log
    with: {message: "containing {{ alert.hosts[0].name }}"}
  - id: isolate
    action: edr.isolate
    with: {host: "{{ alert.hosts[0].name }}"}
    retry: {attempts: 3, backoff: 1s, jitter: false}
"""


def load(registry: Registry) -> LoadedPlaybook:
    result = validate_text(textwrap.dedent(PLAYBOOK), file="t.yaml", registry=registry)
    assert result.loaded is not None, [str(d) for d in result.diagnostics]
    return result.loaded


def an_alert(alert_id: str) -> Alert:
    return Alert(
        id=alert_id,
        source="edr",
        format=AlertFormat.GENERIC,
        raw={"id": alert_id},
        title="Beacon",
        severity="high",  # type: ignore[arg-type]
        time=datetime(2026, 11, 28, 9, tzinfo=UTC),
        hosts=[{"name": "web-1"}],  # type: ignore[list-item]
    )


async def test_one_trace_per_alert_a_span_per_attempt_and_records_that_name_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tracing, spans = in_memory_tracing()
    metrics = configure_metrics("prometheus")
    store = MemoryStore()
    clock = FakeClock()
    calls: Counter[str] = Counter()
    registry = Registry.of([core, edr_connector(calls)])
    engine = Engine(
        store,
        registry,
        [load(registry)],
        clock=clock,
        secrets={"edr.api_key": CANARY},
        tracing=tracing,
        instruments=metrics.instruments,
    )
    caplog.set_level(logging.DEBUG)
    first = await engine.submit_alert(an_alert("a-1"))
    second = await engine.submit_alert(an_alert("a-2"))
    for _ in range(5):
        await clock.advance(timedelta(seconds=2))
    runs = [await engine.wait_run(r) for r in (*first, *second)]
    await engine.stop()
    assert [(r.status, r.error) for r in runs] == [(RunStatus.COMPLETED, None)] * 2

    finished = spans.get_finished_spans()
    traces: dict[str, Counter[str]] = {}
    for span in finished:
        traces.setdefault(f"{span.context.trace_id:032x}", Counter())[span.name] += 1
    assert len(traces) == 2  # one per alert
    for names in traces.values():
        assert names == Counter(
            {
                "soar.alert": 1,
                "soar.engine.run": 1,
                "soar.engine.step": 3,  # note, and isolate twice (one retry)
                "soar.connector.call": 3,
            }
        )
    by_id = {f"{s.context.span_id:016x}": s for s in finished}
    for run in runs:
        assert run.trace is not None
        root = by_id[run.trace[36:52]]
        assert root.name == "soar.engine.run"
        assert root.parent is not None
        assert by_id[f"{root.parent.span_id:016x}"].name == "soar.alert"
    steps = [s for s in finished if s.name == "soar.engine.step"]
    assert sorted((s.attributes or {}).get("soar.outcome") for s in steps) == [
        "retryable",
        "retryable",
        "succeeded",
        "succeeded",
        "succeeded",
        "succeeded",
    ]

    records = await store.query_audit(AuditFilter())
    span_traces = set(traces)
    assert records
    assert {r.event.trace_id for r in records} <= span_traces
    assert {json.loads(r.event.body)["trace_id"] for r in records} == span_traces
    accepted = [json.loads(r.event.body) for r in records if r.event.kind == "alert.accepted"]
    assert [(a["alert_id"], a["runs"]) for a in accepted] == [("a-1", first), ("a-2", second)]

    exposition = metrics.exposition().decode()
    metrics.shutdown()
    assert 'soar_runs_finished_total{playbook="contain",status="completed",version="1"} 2.0' in (
        exposition.replace(
            'otel_scope_name="soar",otel_scope_schema_url="",otel_scope_version="",', ""
        )
    )
    assert 'soar_connector_errors_total{action="isolate",connector="edr"' in exposition.replace(
        'otel_scope_name="soar",otel_scope_schema_url="",otel_scope_version="",', ""
    )

    # the canary secret: nowhere in spans, run records, audit records or logs
    outputs = [
        json.dumps(
            [
                (s.name, dict(s.attributes or {}), [dict(e.attributes or {}) for e in s.events])
                for s in finished
            ],
            default=str,
        ),
        *(r.line() for r in records),
        caplog.text,
    ]
    for run in runs:
        snapshot = await store.load_run(run.id)
        assert snapshot is not None
        outputs.append(repr(snapshot))
        outputs.append(repr(await store.transitions(run.id)))
    assert "isolating web-1 with key [redacted]" in caplog.text
    assert all(CANARY not in text for text in outputs)
    assert any("T-1 issued for [redacted]" in text for text in outputs)
