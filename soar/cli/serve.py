"""`soar serve`: the HTTP API and the web console (docs/api.md), with an engine that runs the
alerts posted to it and carries out decisions on the runs it holds."""

from __future__ import annotations

import asyncio
import logging

import click

from soar.api.server import services_for, start_api
from soar.cli.worker import started_engine, stop_on_signals
from soar.config import Settings, load_settings
from soar.errors import ConfigError
from soar.ingest.worker import Worker

_log = logging.getLogger("soar.api")


@click.command("serve")
@click.option("--host", default=None, help="Address to listen on (default: api.host).")
@click.option("--port", type=int, default=None, help="Port (default: api.port; 0 picks one).")
@click.option(
    "--with-worker", is_flag=True, help="Also consume the configured Kafka topics (one process)."
)
def serve_command(host: str | None, port: int | None, with_worker: bool) -> None:
    """Serve the API under /api/v1 and the console under /console/ until SIGTERM or SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    asyncio.run(
        _serve(
            settings,
            host or settings.api.host,
            settings.api.port if port is None else port,
            with_worker,
        )
    )


async def _serve(settings: Settings, host: str, port: int, with_worker: bool) -> None:
    stop = stop_on_signals()
    async with started_engine(settings, stop, metrics_on_api=True) as started:
        if started is None:
            return
        try:
            services = services_for(
                settings, started.engine, started.registry, metrics=started.metrics.exposition
            )
            api = await start_api(services, host, port)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from None
        _log.info("API on %s/api/v1, console on %s/console/", api.url, api.url)
        try:
            if with_worker:
                await Worker(started.engine, settings.kafka, settings.ingest).run(stop)
            else:
                await stop.wait()
        finally:
            await api.stop()
