"""The canary: every action, on success and on each kind of failure, runs with the bearer token
"canary-metrics-token-1234", which the servers really receive, and the canary shows up in no
output, no log record (at DEBUG, aiohttp's included) and no exception text, chained causes and
tracebacks included."""

from __future__ import annotations

import logging
import traceback
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from metrics_scripted import CANARY, Scripted
from soar_metrics import metrics
from soar_metrics.testing import PrometheusServer

from soar.connectors import ActionContext, ActionFailed, Secrets

NOW = datetime.now(UTC)
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("query", {"query": "node_load1"}),
    ("query", {"query": "sum(node_load1"}),  # bad_data
    (
        "query_range",
        {
            "query": "node_load1",
            "start": (NOW - timedelta(seconds=3)).isoformat(),
            "end": NOW.isoformat(),
            "step": "1s",
        },
    ),
    ("server_usage", {"cpu_window": "1m", "disk_threshold": 0}),
]


def texts_of(exc: BaseException) -> list[str]:
    seen: list[str] = ["".join(traceback.format_exception(exc))]
    current: BaseException | None = exc
    while current is not None:
        seen += [str(current), repr(current), repr(current.args)]
        current = current.__cause__ or current.__context__
    return seen


async def run_all(settings: dict[str, Any]) -> tuple[list[str], list[str]]:
    outputs: list[str] = []
    errors: list[str] = []
    for action, inputs in CALLS:
        spec = metrics.actions[action]
        ctx = ActionContext(
            "run-1:canary",
            settings=settings,
            secrets=Secrets({"bearer_token": CANARY}),
            logger=logging.getLogger(f"soar.action.metrics.{action}"),
        )
        try:
            output = await spec.fn(ctx, spec.input_model.model_validate(inputs))
        except ActionFailed as exc:
            errors += texts_of(exc)
        else:
            outputs.append(output.model_dump_json())
    return outputs, errors


async def test_the_canary_token_shows_nowhere(
    prometheus: PrometheusServer, scripted: Scripted, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    outputs, errors = await run_all(prometheus.settings)
    assert len(outputs) == 3
    assert errors  # the bad query
    # a server that echoes the token back in its error text, on every kind of refusal
    scripted.body = (
        '{"status":"error","errorType":"bad_data","error":"token Bearer ' + CANARY + ' is odd"}'
    )
    for status in (400, 401, 422, 500, 503):
        scripted.status = status
        more_outputs, more_errors = await run_all({"url": scripted.url})
        outputs += more_outputs
        errors += more_errors
    assert f"Bearer {CANARY}" in scripted.seen  # it was really sent
    assert any("***" in e for e in errors)  # and hidden from what came back
    seen = "\n".join(outputs + errors + [r.getMessage() for r in caplog.records])
    seen += "\n".join(repr(r.args) for r in caplog.records)
    assert CANARY not in seen
