"""A real Alertmanager fed by a real Prometheus posts its webhooks, firing then resolved, to a
loopback receiver; soar normalises each into an alert, and both carry the same id (slow: the
firing webhook comes about 9 s after Prometheus starts)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from soar_metrics.testing import (
    ServerMissing,
    monitoring_installed,
    running_alertmanager,
    running_node_exporter,
    running_prometheus,
)

from soar.ingest.normalize import normalize
from soar.models import AlertFormat, AlertStatus, Severity
from tests.servers import unavailable

RULES = """\
groups:
  - name: test
    interval: 1s
    rules:
      - alert: HostHighCpu
        expr: node_load1 {op} 0
        for: 2s
        labels: {{ severity: critical }}
        annotations: {{ summary: "CPU above 90 % on {{{{ $labels.instance }}}}" }}
"""


class Hook:
    def __init__(self) -> None:
        self.bodies: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()

    async def handle(self, request: web.Request) -> web.Response:
        await self.bodies.put((request.headers.get("User-Agent", ""), await request.read()))
        return web.Response(text="ok")


@pytest.fixture
async def hook() -> AsyncIterator[tuple[Hook, str]]:
    receiver = Hook()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        yield receiver, f"http://127.0.0.1:{port}/hook"
    finally:
        await runner.cleanup()


@pytest.mark.slow
async def test_firing_then_resolved_webhooks_become_one_alert_id(
    hook: tuple[Hook, str], tmp_path: Path
) -> None:
    if not monitoring_installed():
        unavailable("Prometheus, node exporter or Alertmanager is missing (.ci/install-prometheus)")
    receiver, url = hook
    try:
        with (
            running_alertmanager(tmp_path, webhook_url=url) as alertmanager,
            running_node_exporter(tmp_path) as exporter,
            running_prometheus(
                tmp_path,
                targets=[exporter.target],
                rules=RULES.format(op=">="),
                alertmanager=alertmanager.address,
            ) as prometheus,
        ):
            agent, firing_body = await asyncio.wait_for(receiver.bodies.get(), 40)
            prometheus.rules.write_text(RULES.format(op="<"))
            await asyncio.to_thread(prometheus.reload)
            _, resolved_body = await asyncio.wait_for(receiver.bodies.get(), 40)
    except ServerMissing as exc:
        unavailable(str(exc))
    assert agent.startswith("Alertmanager/")
    (firing,) = normalize(firing_body)
    (resolved,) = normalize(resolved_body)
    assert firing.format is AlertFormat.ALERTMANAGER
    assert (firing.status, resolved.status) == (AlertStatus.OPEN, AlertStatus.RESOLVED)
    assert firing.id == resolved.id
    assert firing.severity is Severity.CRITICAL
    assert firing.title == f"CPU above 90 % on {exporter.target}"
    assert firing.rule == "HostHighCpu"
    assert [h.name for h in firing.hosts] == ["127.0.0.1"]
