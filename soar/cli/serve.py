"""`soar serve`: the HTTP API and the web console (docs/api.md), with an engine that runs the
alerts posted to it and carries out decisions on the runs it holds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import click

from soar.api.server import services_for, start_api
from soar.cli.auditing import optional_checkpointer, tracing_for
from soar.cli.secrets import secrets_or_exit
from soar.cli.worker import engine_for, load_playbooks, metrics_for, until_up
from soar.config import Settings, load_settings
from soar.connectors.registry import load_registry
from soar.errors import ConfigError
from soar.ingest.worker import Worker
from soar.store import open_store

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
    registry = load_registry()
    loaded = load_playbooks(settings, registry)
    secrets = secrets_or_exit(settings)
    metrics = metrics_for(settings)
    tracing = tracing_for(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        store = await until_up(
            "the store", lambda: stack.enter_async_context(open_store(settings.store)), stop
        )
        if store is None:
            return
        engine = engine_for(settings, store, registry, loaded, tracing, metrics, secrets)
        checkpointer = optional_checkpointer(settings, store)
        if checkpointer is not None:
            checkpointer.start()
        try:
            services = services_for(settings, engine, registry, metrics=metrics.exposition)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        api = None
        try:
            if await until_up("the store", engine.start, stop) is None:
                return
            try:
                api = await start_api(services, host, port)
            except OSError as exc:
                raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from None
            _log.info("API on %s/api/v1, console on %s/console/", api.url, api.url)
            if with_worker:
                await Worker(engine, settings.kafka, settings.ingest).run(stop)
            else:
                await stop.wait()
        finally:
            if api is not None:
                await api.stop()
            await engine.stop()
            if checkpointer is not None:
                await checkpointer.stop()
            metrics.shutdown()
            tracing.shutdown()
