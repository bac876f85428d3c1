"""`soar worker`: consume alert topics into runs until SIGTERM or SIGINT (docs/ingestion.md)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import click

from soar.cli.auditing import optional_checkpointer, tracing_for
from soar.cli.secrets import secrets_or_exit
from soar.config import Settings, load_settings
from soar.connectors.registry import Registry, load_registry
from soar.engine import Engine
from soar.errors import ConfigError, StoreError
from soar.ingest.worker import Worker
from soar.playbook.catalog import find_playbook_files, validate_files
from soar.playbook.validate import LoadedPlaybook
from soar.store import Store, open_store
from soar.telemetry.metrics import Metrics, MetricsSettings, configure_metrics
from soar.telemetry.tracing import Tracing

_log = logging.getLogger("soar.ingest")
_T = TypeVar("_T")
_FIRST_DELAY_S = 0.5
_MAX_DELAY_S = 15.0


@click.command("worker")
def worker_command() -> None:
    """Read the configured Kafka topics into runs of the configured playbooks.

    Unfinished runs in the store resume first; cron triggers fire. SIGTERM or SIGINT stops
    taking messages, waits for those in flight to be recorded, commits their offsets, and
    gives up the runs still going (another worker, or this one restarted, takes them over).
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    asyncio.run(_work(settings))


async def _work(settings: Settings) -> None:
    stop = stop_on_signals()
    async with started_engine(settings, stop, metrics_on_api=False) as started:
        if started is None:
            return
        engine = started.engine
        worker = Worker(engine, settings.kafka, settings.ingest)
        _log.info(
            "worker %s: %d playbook(s), %d run(s) taken over, reading %s in group %s",
            engine.worker_id,
            len(engine.playbooks),
            len(started.resumed),
            ", ".join(settings.kafka.topics),
            settings.kafka.group,
        )
        try:
            await worker.run(stop)
        except ConfigError as exc:  # a refused login, a CA that does not fit, ...
            raise click.ClickException(str(exc)) from None
    _log.info(
        "worker stopped: %d message(s) taken in, %d dead-lettered",
        worker.consumed,
        worker.dead_lettered,
    )


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT: the process's signal to finish cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


@dataclass(slots=True)
class Started:
    engine: Engine
    registry: Registry
    metrics: Metrics
    resumed: list[str]


@contextlib.asynccontextmanager
async def started_engine(
    settings: Settings, stop: asyncio.Event, *, metrics_on_api: bool
) -> AsyncIterator[Started | None]:
    """The configured engine on its store, started (unfinished runs taken over, cron on), with
    its checkpointer, metrics and tracing; all stopped on the way out. None when `stop` was set
    while the store was still coming up (a worker started before its database waits for it)."""
    registry = load_registry()
    loaded = load_playbooks(settings, registry)
    secrets = secrets_or_exit(settings)
    metrics = metrics_for(settings, always=metrics_on_api)
    tracing = tracing_for(settings)
    async with contextlib.AsyncExitStack() as stack:
        store = await until_up(
            "the store", lambda: stack.enter_async_context(open_store(settings.store)), stop
        )
        if store is None:
            yield None
            return
        engine = engine_for(settings, store, registry, loaded, tracing, metrics, secrets)
        checkpointer = optional_checkpointer(settings, store)
        if checkpointer is not None:
            checkpointer.start()
        port = None if metrics_on_api else metrics.serve()  # the API serves them itself
        if port is not None:
            telemetry = settings.telemetry
            _log.info("metrics on http://%s:%d/metrics", telemetry.metrics_host, port)
        try:
            resumed = await until_up("the store", engine.start, stop)
            yield None if resumed is None else Started(engine, registry, metrics, resumed)
        finally:
            await engine.stop()
            if checkpointer is not None:
                await checkpointer.stop()
            metrics.shutdown()
            tracing.shutdown()


def load_playbooks(settings: Settings, registry: Registry) -> list[LoadedPlaybook]:
    """The configured playbooks that validate; each one that does not is logged, not loaded."""
    if not settings.playbooks.is_dir():
        raise click.ClickException(f"no playbooks directory at {settings.playbooks}")
    files, _ = find_playbook_files([settings.playbooks])
    results = validate_files(files, registry=registry)
    for result in results:
        for diagnostic in result.diagnostics:
            _log.error("not loaded: %s", diagnostic)
    return [r.loaded for r in results if r.loaded is not None]


def metrics_for(settings: Settings, *, always: bool = False) -> Metrics:
    """The configured metrics; `always` records them whatever `telemetry.metrics` says (the
    API serves them at /metrics)."""
    telemetry = settings.telemetry
    exporter = "prometheus" if always else telemetry.metrics
    return configure_metrics(
        MetricsSettings(exporter=exporter, host=telemetry.metrics_host, port=telemetry.metrics_port)
    )


def engine_for(
    settings: Settings,
    store: Store,
    registry: Registry,
    loaded: list[LoadedPlaybook],
    tracing: Tracing,
    metrics: Metrics,
    secrets: Mapping[str, str],
) -> Engine:
    """The engine of a worker (or of the API server) as the settings describe it."""
    return Engine(
        store,
        registry,
        loaded,
        directory=settings.directory,
        connector_settings=settings.connectors,
        audit=settings.audit.enabled,
        tracing=tracing,
        instruments=metrics.instruments,
        secrets=secrets,
        limits=settings.limits,
        worker=settings.worker_name,
        lease_ttl=settings.lease_ttl,
        save_files=True,  # the playbooks directory's files become stored versions
    )


async def until_up(
    what: str, attempt: Callable[[], Awaitable[_T]], stop: asyncio.Event
) -> _T | None:
    """`attempt()`'s result, trying again with backoff while it fails with StoreError; None
    once `stop` is set first."""
    delay = _FIRST_DELAY_S
    while not stop.is_set():
        try:
            return await attempt()
        except StoreError as exc:
            _log.warning("%s is not available (%s); trying again in %.1f s", what, exc, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, _MAX_DELAY_S)
    return None
