"""Session fixtures of the metrics connector's tests: a real node exporter and a real Prometheus
scraping it every second (soar_metrics.testing), and a scriptable HTTP server for the answers a
healthy Prometheus does not give (slowness, 503 with Retry-After, refused credentials)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import web
from metrics_scripted import Scripted
from soar_metrics.testing import (
    NodeExporter,
    PrometheusServer,
    ServerMissing,
    running_node_exporter,
    running_prometheus,
    wait_for_data,
)

from tests.servers import unavailable


@pytest.fixture(scope="session")
def node_exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeExporter]:
    try:
        with running_node_exporter(tmp_path_factory.mktemp("node")) as server:
            yield server
    except ServerMissing as exc:
        unavailable(str(exc))


@pytest.fixture(scope="session")
def prometheus(
    tmp_path_factory: pytest.TempPathFactory, node_exporter: NodeExporter
) -> Iterator[PrometheusServer]:
    try:
        with running_prometheus(
            tmp_path_factory.mktemp("prom"), targets=[node_exporter.target]
        ) as server:
            # a rate needs two samples of a counter: wait for them, once per session
            wait_for_data(server, "rate(node_cpu_seconds_total[1m])")
            yield server
    except ServerMissing as exc:
        unavailable(str(exc))


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    server = Scripted()
    app = web.Application()
    app.router.add_get("/api/v1/{path:.*}", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()
