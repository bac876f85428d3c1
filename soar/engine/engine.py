"""The engine of one worker: starts runs from alerts, schedules, events and people, resumes the
unfinished ones after a restart, and routes approvals, aborts and later alerts to their runs.

Many engines may share one store. Each run is driven by the engine that holds its lease: the
engine that recorded it, or the one that took it over when its holder died. An engine is alive
while its heartbeat (written every third of `lease_ttl`) has not expired; the runs of a dead one
are claimed by the others, each claim raising the run's fencing token, and every write of a run
carries the token its engine holds, so a worker that was presumed dead and comes back finds its
writes refused (`LeaseLost`) and lets the run go. See docs/runs.md, "Many workers".
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from croniter import croniter
from pydantic import JsonValue

from soar.config import ConnectorLimits
from soar.connectors.action import ActionSpec
from soar.connectors.context import Secrets
from soar.connectors.registry import Registry
from soar.engine.attempt import AttemptFailed
from soar.engine.clock import Clock, SystemClock
from soar.engine.evidence import ENGINE, Evidence
from soar.engine.executor import RunExecutor
from soar.engine.guards import Guards
from soar.engine.rollout import Choice, canaries, choose, current_state, dry_runs, stable_version
from soar.engine.rollout import bucket_of as rollout_bucket
from soar.engine.scope import jsonable, render
from soar.engine.versions import loaded_from, read_version, save_version
from soar.errors import (
    AccessDenied,
    ApprovalChanged,
    BadInputs,
    ConflictError,
    EvaluationError,
    LeaseLost,
    StoreError,
)
from soar.models import Alert
from soar.models.run import (
    AttachedAlert,
    DedupEntry,
    Run,
    RunStatus,
    StepStatus,
    Transition,
    TransitionKind,
    TriggerKind,
)
from soar.playbook.graph import StepNode
from soar.playbook.validate import LoadedPlaybook, connectors_of
from soar.store.base import (
    INBOX_KINDS,
    Change,
    Heartbeat,
    InboxItem,
    Lease,
    PlaybookVersion,
    Rollout,
    RunSnapshot,
    Store,
)
from soar.telemetry.metrics import NO_INSTRUMENTS, Instruments
from soar.telemetry.tracing import (
    ALERT_ID,
    NO_TRACING,
    OUTCOME,
    PLAYBOOK,
    RUN_ID,
    VERSION,
    TraceRef,
    Tracing,
    new_trace,
)

_log = logging.getLogger("soar.engine")
Observer = Callable[[RunExecutor, list[Transition]], None]
AlertListener = Callable[[Alert, list[str]], None]
_CLAIM_BATCH = 100
_INBOX_BATCH = 100
_OK: dict[str, JsonValue] = {"ok": True}


class KeyedLocks:
    """One asyncio lock per key, kept only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[object, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: object) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class Engine:
    """Runs playbooks durably on one store. Create, `await start()`, use, `await stop()`."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        playbooks: Iterable[LoadedPlaybook],
        *,
        clock: Clock | None = None,
        directory: Mapping[str, JsonValue] | None = None,
        connector_settings: Mapping[str, Mapping[str, JsonValue]] | None = None,
        secrets: Mapping[str, str] | None = None,
        new_id: Callable[[], str] | None = None,
        rng: random.Random | None = None,
        audit: bool = True,
        instruments: Instruments = NO_INSTRUMENTS,
        tracing: Tracing = NO_TRACING,
        worker: str = "soar",
        lease_ttl: float = 15.0,
        limits: Mapping[str, ConnectorLimits] | None = None,
        inbox_interval: float = 0.5,
        rollout_interval: float = 2.0,
        save_files: bool = False,
        offline: Collection[str] = (),
    ) -> None:
        """`worker` names this engine in leases and logs (its id adds host, pid and a random
        part); a worker whose heartbeat is `lease_ttl` seconds old is dead to the others. Every
        `inbox_interval` seconds (real time) a live engine carries out the requests recorded for
        the runs it holds (see `request`).

        `playbooks` start as the stable versions of their playbooks. A started engine also
        loads the versions of those playbooks kept in the store and follows their rollouts,
        reading them again every `rollout_interval` seconds (real time); with `save_files`
        it first saves each of `playbooks` the store lacks as a version (see `start`).

        `offline` names connectors with no system behind them here (the lab without slapd): a
        run of a playbook that calls one starts as a dry run, which says plainly that nothing was
        done, rather than failing at that step or recording a made-up outcome."""
        if lease_ttl <= 0:
            raise ValueError("lease_ttl must be positive")
        if inbox_interval <= 0:
            raise ValueError("inbox_interval must be positive")
        if rollout_interval <= 0:
            raise ValueError("rollout_interval must be positive")
        self.store = store
        self.registry = registry
        self.clock: Clock = clock or SystemClock()
        self.directory = dict(directory or {})
        self.rng = rng or random.Random()  # noqa: S311 - retry jitter
        self._settings = {k: dict(v) for k, v in (connector_settings or {}).items()}
        self._secrets = dict(secrets) if secrets is not None else None
        self.evidence = Evidence(enabled=audit, secrets=self._secret_values())
        self.instruments = instruments
        self.tracing = tracing
        self.guards = Guards(limits)
        self._new_id = new_id or (lambda: uuid.uuid4().hex)
        self.playbooks: dict[str, LoadedPlaybook] = {}
        self.versions: dict[str, LoadedPlaybook] = {}
        self._numbered: dict[tuple[str, int], LoadedPlaybook] = {}
        self._files: dict[str, str] = {}
        self.rollouts: dict[str, dict[int, Rollout]] = {}
        """Per playbook with a rollout in the store, its current state (see `rollout`)."""
        self._rollouts_seen: tuple[int, Rollout | None] = (0, None)
        self.rollout_interval = rollout_interval
        self.save_files = save_files
        self._rollout_task: asyncio.Task[None] | None = None
        for loaded in playbooks:
            self.add_playbook(loaded)
        self.executors: dict[str, RunExecutor] = {}
        self._tasks: set[asyncio.Task[object]] = set()
        self._abandoned: set[asyncio.Future[Any]] = set()
        self._children: dict[str, list[asyncio.Future[Run]]] = {}
        self._observers: list[Observer] = []
        self._alert_listeners: list[AlertListener] = []
        self._dedup_locks = KeyedLocks()
        self.offline = frozenset(offline)
        self._cron: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self.unresumable: dict[str, str] = {}
        self.worker_id = worker_id(worker)
        self.lease_ttl = lease_ttl
        self._drivers: dict[str, asyncio.Task[object]] = {}
        self._leases: asyncio.Task[None] | None = None
        self.inbox_interval = inbox_interval
        self._inbox: asyncio.Task[None] | None = None
        self._inbox_wake = asyncio.Event()
        self._taking_over = False
        self._claiming = asyncio.Lock()
        """Held while runs are claimed or respawned: one pass at a time, or two passes could
        both start a driver for a run that one of them has just claimed."""
        self._last_beat = 0.0
        self.taken_over = 0
        """Runs this engine took over from workers that died (or stopped)."""

    # -- set-up --------------------------------------------------------------------------------

    def add_playbook(self, loaded: LoadedPlaybook) -> None:
        """Make a playbook version the one new alerts start (until the store's rollout of the
        playbook says otherwise); runs of older versions keep their own."""
        self.playbooks[loaded.playbook.id] = loaded
        self._files.setdefault(loaded.playbook.id, loaded.file)
        self.add_version(loaded)

    def add_version(self, loaded: LoadedPlaybook) -> None:
        """Make a version known here (its runs can be driven, a rollout can start it) without
        making it the one new alerts start."""
        self.versions[loaded.digest] = loaded
        self._numbered[(loaded.playbook.id, loaded.playbook.version)] = loaded

    def version(self, playbook_id: str, version: int) -> LoadedPlaybook | None:
        """A version of a playbook known here, or None."""
        return self._numbered.get((playbook_id, version))

    def playbook_file(self, playbook_id: str) -> str | None:
        """The file a playbook was loaded from here, if it was."""
        return self._files.get(playbook_id)

    @property
    def has_schedules(self) -> bool:
        """Whether any loaded playbook starts on a cron schedule."""
        return any(p.playbook.trigger.cron for p in self.playbooks.values())

    def on_alert(self, listener: AlertListener) -> None:
        """Call `listener(alert, run_ids)` after every alert taken in, with the runs it started
        or joined (progress displays)."""
        self._alert_listeners.append(listener)

    def is_offline(self, loaded: LoadedPlaybook) -> bool:
        """Whether `loaded` calls a connector that is offline here (its runs are dry runs)."""
        return bool(self.offline and connectors_of(loaded) & self.offline)

    def observe(self, observer: Observer) -> None:
        """Call `observer` after every durable write of every run (live timelines)."""
        self._observers.append(observer)

    async def start(self, *, cron: bool = True) -> list[str]:
        """Announce this worker, take over every unfinished run nobody drives (all of them,
        after a restart of the only worker), keep the leases, and start the cron scheduler.
        Returns the ids of the runs taken over.

        Raises:
            StoreError: the store cannot be written.
        """
        self._taking_over = True
        await self._ensure_alive()
        if self.save_files:
            await self._save_files()
        await self.refresh_rollouts()
        if self._rollout_task is None:
            self._rollout_task = asyncio.create_task(self._watch_rollouts(), name="soar-rollouts")
        resumed = await self._take_over()
        if cron and any(p.playbook.trigger.cron for p in self.playbooks.values()):
            self._cron = asyncio.create_task(self._cron_loop(), name="soar-cron")
        return resumed

    async def resume(self, run_id: str) -> RunExecutor:
        """Drive one unfinished run from the store here (operator commands on one run).

        Raises:
            ConflictError: no such run, or it has already finished.
        """
        await self._ensure_alive()
        async with self._claiming:
            existing = self.executors.get(run_id)
            if existing is not None:
                return existing
            snapshot = await self.store.load_run(run_id)
            if snapshot is None:
                raise ConflictError(f"no run {run_id}")
            if snapshot.run.status.is_terminal:
                raise ConflictError(f"run {run_id} has already {snapshot.run.status.value}")
            token = (await self.store.held_runs(self.worker_id)).get(run_id)
            if token is None:
                now = self.clock.now()
                gone = await self._gone_workers(now)
                orphans = dict(await self.store.orphaned_runs(now, gone, 1_000_000))
                if run_id not in orphans:
                    raise ConflictError(f"run {run_id} is being driven by another worker")
                token = await self._claim(run_id, orphans[run_id])
                if token is None:
                    raise ConflictError(f"run {run_id} was just taken by another worker")
                snapshot = await self.store.load_run(run_id)
                assert snapshot is not None  # noqa: S101 - runs are never deleted
            return await self._spawn(snapshot, token=token)

    async def stop(self) -> None:
        """Stop driving runs, and give up their leases so that another worker (or this one,
        started again) takes them over at once. Nothing is lost: every run resumes from the
        store."""
        for background in (self._cron, self._leases, self._inbox, self._rollout_task):
            if background is not None:
                background.cancel()
                try:
                    await background
                except asyncio.CancelledError:
                    pass
                except Exception:  # a loop that died of a bug: said, and the stop goes on
                    _log.exception("%s had failed", background.get_name())
        self._cron = self._leases = self._inbox = self._rollout_task = None
        self._taking_over = False
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.executors.clear()
        try:
            await self.store.apply(Change(forget_workers=[self.worker_id]))
        except StoreError as exc:  # the others wait for the heartbeat to expire instead
            _log.warning("could not give up this worker's leases: %s", exc)

    async def wait_idle(self) -> None:
        """Until no run is being driven (every run finished or the engine stopped)."""
        await self._idle.wait()

    # -- starting runs -------------------------------------------------------------------------

    async def start_run(
        self,
        playbook: str | LoadedPlaybook,
        *,
        alert: Alert | None = None,
        inputs: Mapping[str, JsonValue] | None = None,
        trigger: TriggerKind = TriggerKind.MANUAL,
        dry_run: bool = False,
        parent: tuple[str, str] | None = None,
        dedup: tuple[str, datetime] | None = None,
        cron_mark: datetime | None = None,
        run_id: str | None = None,
        trace_parent: TraceRef | None = None,
    ) -> str:
        """Record a new run durably and start driving it; returns its id. With `trace_parent`
        (the alert's span) the run joins that trace."""
        executor = await self._start(
            playbook,
            alert=alert,
            inputs=inputs,
            trigger=trigger,
            dry_run=dry_run,
            parent=parent,
            dedup=dedup,
            cron_mark=cron_mark,
            run_id=run_id,
            trace_parent=trace_parent,
        )
        return executor.run.id

    async def run_to_end(
        self,
        playbook: str | LoadedPlaybook,
        *,
        alert: Alert | None = None,
        inputs: Mapping[str, JsonValue] | None = None,
        dry_run: bool = False,
    ) -> Run:
        """Start a manual run and wait for its end (tests, `soar bench`)."""
        executor = await self._start(playbook, alert=alert, inputs=inputs, dry_run=dry_run)
        return await asyncio.shield(executor.finished)

    async def _start(
        self,
        playbook: str | LoadedPlaybook,
        *,
        alert: Alert | None = None,
        inputs: Mapping[str, JsonValue] | None = None,
        trigger: TriggerKind = TriggerKind.MANUAL,
        dry_run: bool = False,
        parent: tuple[str, str] | None = None,
        dedup: tuple[str, datetime] | None = None,
        cron_mark: datetime | None = None,
        run_id: str | None = None,
        trace_parent: TraceRef | None = None,
    ) -> RunExecutor:
        loaded = self.playbooks[playbook] if isinstance(playbook, str) else playbook
        if not dry_run and self.is_offline(loaded):
            _log.info("%s runs as a dry run: it calls %s", loaded.playbook.id, sorted(self.offline))
            dry_run = True
        existing = None if run_id is None else self.executors.get(run_id)
        if existing is not None:  # the same delivery, again, while its run is being recorded
            await asyncio.shield(existing.created)
            return existing
        await self._ensure_alive()
        run, started = self._new_run(
            loaded,
            alert=alert,
            inputs=inputs,
            trigger=trigger,
            dry_run=dry_run,
            parent=parent,
            run_id=run_id,
            trace_parent=trace_parent,
        )
        change = Change(
            runs=[run], transitions=[started], leases=[Lease(run.id, self.worker_id, 1, 0)]
        )
        if not dry_run:
            self.instruments.run_started(loaded.playbook.id, loaded.playbook.version)
        event = self.evidence.run(run, TransitionKind.RUN_STARTED, started.at, None, started.data)
        if event is not None:
            change.audit.append(event)
        if dedup is not None:
            change.dedup.append(DedupEntry(loaded.playbook.id, dedup[0], run.id, dedup[1]))
        if cron_mark is not None:
            change.cron_marks[loaded.playbook.id] = cron_mark
        # the run's record is written with its first step transition, one write instead of two;
        # this returns once that write is durable
        executor = await self._spawn(
            RunSnapshot(run=run, steps={}, alerts=[], timers=[], last_seq=1), creation=change
        )
        executor.trace_parent = trace_parent  # before its task first runs
        await asyncio.shield(executor.created)
        return executor

    def _new_run(
        self,
        loaded: LoadedPlaybook,
        *,
        alert: Alert | None = None,
        inputs: Mapping[str, JsonValue] | None = None,
        trigger: TriggerKind = TriggerKind.MANUAL,
        dry_run: bool = False,
        parent: tuple[str, str] | None = None,
        run_id: str | None = None,
        trace_parent: TraceRef | None = None,
    ) -> tuple[Run, Transition]:
        """A new run and its `run_started` transition, not yet written."""
        self.versions.setdefault(loaded.digest, loaded)
        now = self.clock.now()
        values = _checked_inputs(
            loaded,
            dict(inputs or {}),
            internal=trigger not in (TriggerKind.MANUAL, TriggerKind.PLAYBOOK),
        )
        run = Run(
            id=run_id or self._new_id(),
            trace=self._trace_for(parent, trace_parent),
            playbook_id=loaded.playbook.id,
            playbook_version=loaded.playbook.version,
            playbook_digest=loaded.digest,
            status=RunStatus.RUNNING,
            trigger=trigger,
            created_at=now,
            updated_at=now,
            alert=alert.model_dump(mode="json") if alert is not None else None,
            inputs=dict(values),
            parent_run=parent[0] if parent else None,
            parent_step=parent[1] if parent else None,
            dry_run=dry_run,
        )
        data: dict[str, JsonValue] = {
            "playbook": loaded.playbook.id,
            "version": loaded.playbook.version,
            "digest": loaded.digest,
            "trigger": trigger.value,
        }
        if alert is not None:
            data["alert_id"] = alert.id
        return run, Transition(run.id, 1, now, TransitionKind.RUN_STARTED, data=data)

    async def submit_alert(
        self,
        alert: Alert,
        *,
        trace: TraceRef | None = None,
        actor: str = ENGINE,
        origin: str | None = None,
    ) -> list[str]:
        """Start (or, inside a dedup window, join) one run per playbook whose trigger matches,
        all in the alert's trace (a child of `trace`, the span that published it, if known),
        and record that the alert was accepted. Returns the ids of the runs started or joined,
        once each is durably recorded.

        `origin` names where this alert came from, the same on every delivery (a Kafka message's
        topic, partition, offset and place in its batch): each run's id is derived from it, so
        an alert delivered again after a crash finds its runs instead of starting new ones.
        """
        ref = new_trace(trace.trace_id if trace is not None else None)
        with self.tracing.root_span("soar.alert", ref, trace, {ALERT_ID: alert.id}):
            touched = await self._submit(alert, ref, origin)
        event = self.evidence.alert_accepted(
            alert, self.clock.now(), touched, trace_id=ref.trace_id, actor=actor
        )
        if event is not None:
            await self.store.apply(Change(audit=[event]))
        for listener in self._alert_listeners:
            listener(alert, touched)
        return touched

    async def _submit(self, alert: Alert, ref: TraceRef, origin: str | None) -> list[str]:
        variables = {"alert": alert.context()}
        touched = []
        for playbook_id, reference in list(self.playbooks.items()):
            choice = self._choose(playbook_id, reference, alert, variables)
            if choice.live is not None:
                live = self._numbered.get((playbook_id, choice.live), reference)
                run_id = await self._submit_to(live, alert, ref, origin, variables)
                if run_id is not None:
                    touched.append(run_id)
            for version in choice.dry_runs:
                shadow = self._numbered.get((playbook_id, version))
                if shadow is None:
                    continue
                run_id = await self._submit_to(shadow, alert, ref, origin, variables, shadow=True)
                if run_id is not None:
                    touched.append(run_id)
        return touched

    def _choose(
        self,
        playbook_id: str,
        reference: LoadedPlaybook,
        alert: Alert,
        variables: dict[str, Any],
    ) -> Choice:
        """Which versions of a playbook this alert starts (see `rollout.choose`)."""
        state = self.rollouts.get(playbook_id)
        if not state:
            return Choice(reference.playbook.version)
        if not canaries(state) and not dry_runs(state):  # no alert needs its bucket
            return Choice(stable_version(state))
        return choose(state, self.bucket_of(reference, alert, variables))

    def bucket_of(
        self, loaded: LoadedPlaybook, alert: Alert, variables: dict[str, Any] | None = None
    ) -> int:
        """The rollout bucket of `alert` for `loaded`'s playbook: from its dedup key rendered
        for the alert, else the alert's id. The same alert is always in the same bucket."""
        dedup = loaded.playbook.trigger.dedup
        key = alert.id
        if dedup is not None:
            try:
                key = str(
                    jsonable(
                        render(
                            loaded,
                            ("trigger", "dedup", "key"),
                            dedup.key,
                            variables or {"alert": alert.context()},
                            self.clock.now,
                        )
                    )
                )
            except EvaluationError:
                key = alert.id
        return rollout_bucket(loaded.playbook.id, key)

    async def _submit_to(
        self,
        loaded: LoadedPlaybook,
        alert: Alert,
        ref: TraceRef,
        origin: str | None,
        variables: dict[str, Any],
        *,
        shadow: bool = False,
    ) -> str | None:
        """Start (or join) the run of one version for a matching alert; None when its trigger
        does not match. A `shadow` runs as a dry run, with run ids and dedup keys of its own."""
        playbook = loaded.playbook
        expression = loaded.expressions.get(("trigger", "match"))
        if not playbook.enabled or expression is None or playbook.trigger.event is not None:
            return None
        try:
            if not expression.evaluate(variables, clock=self.clock.now):
                return None
        except EvaluationError as exc:
            _log.info(
                "%s: trigger does not apply to alert %s: %s", playbook.id, alert.id, exc.message
            )
            return None
        space = f"{_SHADOW}v{playbook.version}/" if shadow else ""
        run_id = None if origin is None else origin_run_id(f"{space}{origin}", playbook.id)
        if run_id is not None and await self.store.has_run(run_id):
            return run_id  # delivered before: its run was recorded then
        dedup = playbook.trigger.dedup
        if dedup is None:
            return await self._start_once(loaded, alert, ref, run_id, dry_run=shadow)
        try:
            key = space + str(
                jsonable(
                    render(
                        loaded,
                        ("trigger", "dedup", "key"),
                        dedup.key,
                        variables,
                        self.clock.now,
                    )
                )
            )
        except EvaluationError as exc:  # the alert matched: it runs, on its own
            _log.warning(
                "%s: no dedup key for alert %s (%s): it starts a run of its own",
                playbook.id,
                alert.id,
                exc.message,
            )
            return await self._start_once(loaded, alert, ref, run_id, dry_run=shadow)
        # alerts of one key, taken in side by side (one Kafka batch), start one run: the first
        # records it, and the others find it
        async with self._dedup_locks.hold((playbook.id, key)):
            now = self.clock.now()
            delivered = None if origin is None else f"{_DELIVERED}{space}{origin}"
            if delivered is not None:
                joined = await self.store.find_dedup(playbook.id, delivered, now)
                if joined is not None:  # delivered before, and joined this run then
                    return joined
            joined = await self.store.find_dedup(playbook.id, key, now)
            if joined is not None:
                marker = (
                    None
                    if delivered is None
                    else DedupEntry(playbook.id, delivered, joined, now + dedup.window)
                )
                await self.attach(joined, alert.model_dump(mode="json"), marker=marker)
                return joined
            expires = self.clock.now() + dedup.window
            try:
                return await self.start_run(
                    loaded,
                    alert=alert,
                    trigger=TriggerKind.ALERT,
                    dry_run=shadow,
                    dedup=(key, expires),
                    trace_parent=ref,
                    run_id=run_id,
                )
            except LeaseLost:  # delivered to another worker too, which recorded it first
                if run_id is None:
                    raise
                return run_id

    async def _start_once(
        self,
        loaded: LoadedPlaybook,
        alert: Alert,
        ref: TraceRef,
        run_id: str | None,
        *,
        dry_run: bool = False,
    ) -> str:
        """Start an alert's run; with an id derived from its delivery, one that another worker
        recorded first counts as started."""
        try:
            return await self.start_run(
                loaded,
                alert=alert,
                trigger=TriggerKind.ALERT,
                dry_run=dry_run,
                trace_parent=ref,
                run_id=run_id,
            )
        except LeaseLost:  # delivered to another worker too, which recorded it first
            if run_id is None:
                raise
            return run_id

    # -- people and later events --------------------------------------------------------------

    async def decide(
        self,
        run_id: str,
        step: str,
        *,
        approved: bool,
        by: str,
        comment: str | None = None,
        digest: str | None = None,
    ) -> None:
        """Approve or deny a pending approval. `digest` binds the decision to what the person
        was shown (the approval step's recorded `digest`); None decides whatever is pending.

        On a run driven here the decision is recorded before this returns. On a run driven by
        another worker it is recorded as a request in the run's inbox, which that worker carries
        out (or refuses) shortly: see `request` and `outcome`.

        Raises:
            ConflictError: no such run, or it has ended; on a run driven here, also: no
                approval is pending at `step`.
            ApprovalChanged: (a run driven here) `digest` is not the pending approval's.
            AccessDenied: (a run driven here) `by` is not among the step's `approvers`.
        """
        executor = self.executors.get(run_id)
        if executor is not None:
            await executor.decide(step, approved=approved, by=by, comment=comment, digest=digest)
            return
        body: dict[str, JsonValue] = {
            "step": step,
            "approved": approved,
            "by": by,
            "comment": comment,
            "digest": digest,
        }
        await self.request(run_id, "decide", body, actor=by)

    async def abort(
        self, run_id: str, reason: str = "aborted by an operator", *, actor: str = "operator"
    ) -> None:
        """Abort a run: it stops, and its completed steps are compensated newest first. On a
        run driven by another worker the abort is recorded in the run's inbox (see `request`).

        Raises:
            ConflictError: no such run, or it has ended (on a run driven here: nothing happens).
        """
        executor = self.executors.get(run_id)
        if executor is not None:
            await executor.abort(reason, actor=actor)
            return
        await self.request(run_id, "abort", {"reason": reason}, actor=actor)

    async def attach(
        self,
        run_id: str,
        event: JsonValue,
        *,
        marker: DedupEntry | None = None,
        actor: str = ENGINE,
    ) -> None:
        """Give a run a later alert or event (deduplicated alerts, resolutions, webhooks);
        `marker`, written with it, remembers which delivery joined (see `_submit`).

        On a run driven here it is attached at once; on a run driven by another worker it is
        recorded in the run's inbox (with `marker`), and attached by that worker; on a run that
        has ended (an alert inside its dedup window) it is attached to the record directly.

        Raises:
            ConflictError: no such run.
        """
        executor = self.executors.get(run_id)
        if executor is not None:
            await executor.attach(event, marker=marker)
            return
        try:
            await self._record_request(run_id, "event", event, actor=actor, marker=marker)
            return
        except ConflictError:
            snapshot = await self.store.load_run(run_id)
            if snapshot is None:
                raise ConflictError(f"no run {run_id}") from None
            if not snapshot.run.status.is_terminal:
                raise
        await self._attach_ended(snapshot, event, marker)

    async def _attach_ended(
        self, snapshot: RunSnapshot, event: JsonValue, marker: DedupEntry | None
    ) -> None:
        """Attach `event` to a run that has ended: nobody drives it, so nobody else writes its
        transitions but others attaching to it too (whose numbers a retry steps past)."""
        run_id = snapshot.run.id
        for _ in range(3):
            seq = (snapshot.alerts[-1].seq if snapshot.alerts else 0) + 1
            change = Change(
                alerts=[AttachedAlert(run_id, seq, event)],
                transitions=[
                    Transition(
                        run_id,
                        snapshot.last_seq + 1,
                        self.clock.now(),
                        TransitionKind.ALERT_ATTACHED,
                        data={"seq": seq},
                    )
                ],
                dedup=[] if marker is None else [marker],
            )
            try:
                await self.store.apply(change)
                return
            except ConflictError:
                reloaded = await self.store.load_run(run_id)
                if reloaded is None:
                    raise
                snapshot = reloaded
        raise ConflictError(f"run {run_id}: could not attach to it (others attach at once)")

    # -- requests for runs driven elsewhere ----------------------------------------------------

    async def request(self, run_id: str, kind: str, body: JsonValue, *, actor: str) -> str:
        """Record a request for a run in its inbox, durably, and return its id (for `outcome`).
        The worker holding the run (this one or another) carries it out within about its
        `inbox_interval`, and marks it done, with its outcome, in the same write; a run nobody
        holds gets it when a worker takes the run over.

        Kinds: "decide", body `{"step", "approved": bool, "by", "comment", "digest"}` (see
        `decide`); "abort", body `{"reason"}`; "event", body the event (see `attach`).
        Outcomes: `{"ok": true}`, or `{"ok": false, "code": "conflict" | "denied" |
        "approval_changed", "error": text}`.

        Raises:
            ValueError: an unknown kind, or a body of the wrong shape.
            ConflictError: no such run, or it has ended.
        """
        return await self._record_request(run_id, kind, body, actor=actor)

    async def outcome(self, id: str, *, wait: float) -> InboxItem | None:
        """The request `id` once done, polling the store for up to `wait` seconds; as it stands
        (pending: `done_at` None) when it is not done by then; None when there is no such
        request."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(wait, 0.0)
        pause = 0.005
        while True:
            item = await self.store.inbox_item(id)
            left = deadline - loop.time()
            if item is None or item.done_at is not None or left <= 0:
                return item
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, self.inbox_interval)

    async def _record_request(
        self,
        run_id: str,
        kind: str,
        body: JsonValue,
        *,
        actor: str,
        marker: DedupEntry | None = None,
    ) -> str:
        item = InboxItem(
            id=uuid.uuid4().hex,
            run_id=run_id,
            kind=kind,
            body=_request_body(kind, body),
            actor=actor,
            at=self.clock.now(),
        )
        # refused by the store (ConflictError) unless the run is recorded and open: checked
        # under the run's lease, so that it cannot end before the request is recorded
        await self.store.apply(Change(inbox=[item], dedup=[] if marker is None else [marker]))
        if run_id in self.executors:
            self._inbox_wake.set()  # driven here: no need to wait for the next round
        return item.id

    async def _watch_inbox(self) -> None:
        """Every `inbox_interval` seconds (or at once when a request for a run driven here was
        recorded), carry out the pending requests of the runs this engine holds."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._inbox_wake.wait(), self.inbox_interval)
            self._inbox_wake.clear()
            try:
                items = await self.store.inbox_for(self.worker_id, _INBOX_BATCH)
            except StoreError as exc:
                _log.warning("reading the inbox: %s", exc)
                continue
            by_run: dict[str, list[InboxItem]] = {}
            for item in items:
                by_run.setdefault(item.run_id, []).append(item)
            # one run's requests in the order recorded; the runs side by side
            results = await asyncio.gather(
                *(self._carry_out_all(found) for found in by_run.values()), return_exceptions=True
            )
            for result in results:
                if isinstance(result, BaseException):  # a bug: left pending, tried again
                    _log.error("carrying out a request failed", exc_info=result)

    async def _carry_out_all(self, items: list[InboxItem]) -> None:
        for item in items:
            if not await self._carry_out(item):
                return  # the rest wait for this one: next round, or the run's next holder

    async def _carry_out(self, item: InboxItem) -> bool:
        """Carry out one request on the run's executor here, marking it done in the same
        write; or answer it (done, not ok) when the run cannot take it. False when it is left
        pending: the run is not driven here (yet), or the write failed."""
        executor = self.executors.get(item.run_id)
        if executor is None or not executor.created.done():
            return False
        body = item.body if isinstance(item.body, dict) else {}
        try:
            if executor.run.status.is_terminal:
                raise ConflictError(f"run {item.run_id} has already {executor.run.status.value}")
            if item.kind == "decide":
                comment, digest = body.get("comment"), body.get("digest")
                await executor.decide(
                    str(body.get("step")),
                    approved=body.get("approved") is True,
                    by=str(body.get("by")),
                    comment=comment if isinstance(comment, str) else None,
                    digest=digest if isinstance(digest, str) else None,
                    answer=item.id,
                )
                return True
            if item.kind == "abort":
                reason = str(body.get("reason") or "aborted by an operator")
                if await executor.abort(reason, actor=item.actor, answer=item.id):
                    return True
                outcome: JsonValue = _OK  # being aborted already: what was asked holds
            elif item.kind == "event":
                await executor.attach(item.body, answer=item.id)
                return True
            else:
                raise ConflictError(f"unknown request kind {item.kind!r}")
        except LeaseLost:
            return False  # taken over: the new holder carries it out
        except ApprovalChanged as exc:
            outcome = _refused("approval_changed", exc)
        except AccessDenied as exc:
            outcome = _refused("denied", exc)
        except ConflictError as exc:
            outcome = _refused("conflict", exc)
        except StoreError as exc:
            _log.warning("run %s: request %s not carried out yet: %s", item.run_id, item.id, exc)
            return False
        try:
            await self.store.apply(
                Change(
                    inbox_done=[(item.id, self.clock.now(), outcome)],
                    fence=[(item.run_id, executor.token)],
                )
            )
        except LeaseLost:
            return False
        except ConflictError:  # answered meanwhile (the run's last write closed it)
            return True
        except StoreError as exc:
            _log.warning("run %s: request %s not answered yet: %s", item.run_id, item.id, exc)
            return False
        return True

    async def wait_run(self, run_id: str) -> Run:
        """The run once it is terminal (or as stored, when no executor drives it here)."""
        executor = self.executors.get(run_id)
        if executor is not None:
            return await asyncio.shield(executor.finished)
        snapshot = await self.store.load_run(run_id)
        if snapshot is None:
            raise ConflictError(f"no run {run_id}")
        return snapshot.run

    async def retry_run(
        self, run_id: str, *, from_step: str | None = None, actor: str = "operator"
    ) -> str:
        """Run a failed or aborted run again as a new run, carrying over what the steps before
        `from_step` (default: the first failed step) recorded, so their effects are not
        repeated. Steps whose effects were compensated are run again.

        Raises:
            ConflictError: the run is unknown, still active, or `from_step` is not a step of it.
        """
        snapshot = await self.store.load_run(run_id)
        if snapshot is None:
            raise ConflictError(f"no run {run_id}")
        old = snapshot.run
        if not old.status.is_terminal or old.status is RunStatus.COMPLETED:
            raise ConflictError(
                f"run {run_id} is {old.status.value}: only failed or aborted runs are retried"
            )
        loaded = self.versions.get(old.playbook_digest)
        if loaded is None:
            raise ConflictError(
                f"playbook {old.playbook_id} v{old.playbook_version} as run by {run_id} is not "
                "loaded (a retry continues with the same version)"
            )
        graph = loaded.graph
        if from_step is None:
            failed = [
                s
                for s in snapshot.steps.values()
                if s.status is StepStatus.FAILED and s.key in graph.nodes
            ]
            from_step = (
                min(failed, key=lambda s: s.started_at or old.created_at).key if failed else None
            )
        if from_step is None or from_step not in graph.nodes:
            raise ConflictError(f"{from_step!r} is not a step of playbook {old.playbook_id}")
        keep = graph.before(graph.nodes[from_step])
        await self._ensure_alive()
        now = self.clock.now()
        new_id = self._new_id()
        run = replace(
            old, id=new_id, status=RunStatus.RUNNING, created_at=now, updated_at=now, error=None
        )
        carried = [
            replace(s, run_id=new_id)
            for s in snapshot.steps.values()
            if s.status in (StepStatus.SUCCEEDED, StepStatus.SKIPPED)
            and _node_of(s.key) in keep
            and not s.key.endswith("~compensate")
        ]
        transitions = [
            Transition(
                new_id,
                1,
                now,
                TransitionKind.RUN_STARTED,
                data={
                    "playbook": old.playbook_id,
                    "version": old.playbook_version,
                    "digest": old.playbook_digest,
                    "trigger": old.trigger.value,
                },
            ),
            Transition(
                new_id,
                2,
                now,
                TransitionKind.RUN_RETRIED,
                data={
                    "retry_of": run_id,
                    "from_step": from_step,
                    "carried": [s.key for s in carried],
                },
            ),
        ]
        events = [
            self.evidence.run(run, t.kind, t.at, None, t.data, actor=actor) for t in transitions
        ]
        await self.store.apply(
            Change(
                runs=[run],
                steps=carried,
                transitions=transitions,
                alerts=[replace(a, run_id=new_id) for a in snapshot.alerts],
                audit=[e for e in events if e is not None],
                leases=[Lease(new_id, self.worker_id, 1, 0)],
            )
        )
        await self._spawn(
            RunSnapshot(
                run=run,
                steps={s.key: s for s in carried},
                alerts=[replace(a, run_id=new_id) for a in snapshot.alerts],
                timers=[],
                last_seq=2,
            )
        )
        return new_id

    # -- used by executors ---------------------------------------------------------------------

    def connector_settings(self, connector: str) -> Mapping[str, JsonValue]:
        return self._settings.get(connector, {})

    def secrets_for(self, spec: ActionSpec) -> Secrets:
        """The secrets an action declared: from the secret store's values the engine was given,
        else from `SOAR_SECRET_<CONNECTOR>_<NAME>`."""
        values: dict[str, str] = {}
        for name in spec.secrets:
            qualified = f"{spec.connector}.{name}"
            if self._secrets is not None and qualified in self._secrets:
                values[name] = self._secrets[qualified]
                continue
            env = f"SOAR_SECRET_{spec.connector}_{name}".upper()
            if env in os.environ:
                values[name] = os.environ[env]
        return Secrets(values)

    def _trace_for(self, parent: tuple[str, str] | None, alert: TraceRef | None) -> str:
        """A new span in the alert's trace, in a parent run's trace, or in a new trace."""
        if alert is not None:
            return new_trace(alert.trace_id).traceparent()
        executor = self.executors.get(parent[0]) if parent is not None else None
        if executor is not None and executor.run.trace:
            return new_trace(executor.run.trace[3:35]).traceparent()
        return new_trace().traceparent()

    def _secret_values(self) -> list[str]:
        """Every secret value this engine can hand an action: redacted wherever it shows."""
        stored = list(self._secrets.values()) if self._secrets is not None else []
        return stored + [v for k, v in os.environ.items() if k.startswith("SOAR_SECRET_")]

    def abandon(self, task: asyncio.Future[Any]) -> None:
        """Keep a timed-out action that ignores cancellation referenced until it ends."""
        self._abandoned.add(task)
        task.add_done_callback(self._abandoned.discard)

    def notify(self, executor: RunExecutor, transitions: list[Transition]) -> None:
        for observer in self._observers:
            observer(executor, transitions)

    async def run_child(
        self, parent: RunExecutor, node: StepNode, key: str, *, item: JsonValue, index: int | None
    ) -> None:
        """Run a sub-playbook for one step instance and wait for it.

        The child's id and inputs are recorded in the parent before the child starts, so a
        worker that stops in between starts the same child when it resumes.
        """
        state = parent.states.get(key)
        target = node.step.playbook
        assert target is not None  # noqa: S101
        loaded = self.playbooks.get(target)
        if loaded is None:
            error = f"playbook {target!r} is not loaded"
            await parent._record(key, StepStatus.FAILED, TransitionKind.STEP_FAILED, error=error)
            raise AttemptFailed(error, retryable=False)
        recorded = state.inputs if state is not None and isinstance(state.inputs, dict) else {}
        child_id = recorded.get("child")
        inputs = recorded.get("inputs")
        if not isinstance(child_id, str):
            try:
                variables = parent.variables(item=item, index=index, with_item=index is not None)
                with_ = node.step.with_
                inputs = jsonable(
                    render(parent.loaded, (*node.path, "with"), with_, variables, self.clock.now)
                )
            except (EvaluationError, ValueError) as exc:
                error = f"inputs: {getattr(exc, 'message', exc)}"
                await parent._record(
                    key, StepStatus.FAILED, TransitionKind.STEP_FAILED, error=error
                )
                raise AttemptFailed(error, retryable=False) from None
            child_id = self._new_id()
            await parent._record(
                key,
                StepStatus.RUNNING,
                TransitionKind.STEP_STARTED,
                inputs={"child": child_id, "inputs": inputs},
                attempt=1,
            )
        if child_id not in self.executors and await self.store.load_run(child_id) is None:
            alert = (
                Alert.model_validate(parent.run.alert)
                if isinstance(parent.run.alert, dict)
                else None
            )
            with contextlib.suppress(LeaseLost):  # recorded by a worker that died since
                await self.start_run(
                    loaded,
                    alert=alert,
                    inputs=inputs if isinstance(inputs, dict) else {},
                    trigger=TriggerKind.PLAYBOOK,
                    dry_run=parent.run.dry_run,
                    parent=(parent.run.id, key),
                    run_id=child_id,
                )
        child = await self._wait_child(child_id)
        outcome: dict[str, JsonValue] = {
            "run_id": child.id,
            "status": child.status.value,
            "error": child.error,
        }
        if child.status is RunStatus.COMPLETED:
            await parent.succeeded(key, outcome)
            return
        await parent._record(
            key,
            StepStatus.FAILED,
            TransitionKind.STEP_FAILED,
            output=outcome,
            error=f"sub-playbook run {child.id} {child.status.value}",
        )
        raise AttemptFailed(f"sub-playbook run {child.id} {child.status.value}", retryable=False)

    async def _wait_child(self, child_id: str) -> Run:
        executor = self.executors.get(child_id)
        if executor is not None:
            return await asyncio.shield(executor.finished)
        snapshot = await self.store.load_run(child_id)
        if snapshot is not None and snapshot.run.status.is_terminal:
            return snapshot.run
        future: asyncio.Future[Run] = asyncio.get_running_loop().create_future()
        self._children.setdefault(child_id, []).append(future)
        return await future

    def follow_ups(self, executor: RunExecutor, final: Run) -> list[tuple[Run, Transition]]:
        """The runs of event-triggered playbooks that `final` (a run about to end) starts.
        They are written in the same write as the run's end, so none is lost to a crash."""
        if final.dry_run or final.trigger is TriggerKind.EVENT:
            return []
        event_name = "run.failed" if final.status is not RunStatus.COMPLETED else "run.completed"
        event: dict[str, JsonValue] = {
            "type": event_name,
            "run_id": final.id,
            "playbook": final.playbook_id,
            "version": final.playbook_version,
            "status": final.status.value,
            "error": final.error,
            "severity": final.alert.get("severity") if isinstance(final.alert, dict) else None,
            "alert": final.alert,
        }
        runs = []
        for loaded in list(self.playbooks.values()):
            trigger = loaded.playbook.trigger
            if (
                trigger.event is None
                or trigger.event.value != event_name
                or not loaded.playbook.enabled
            ):
                continue
            expression = loaded.expressions.get(("trigger", "match"))
            try:
                if expression is not None and not expression.evaluate(
                    {"event": _event_view(event), "alert": executor._alert}, clock=self.clock.now
                ):
                    continue
            except EvaluationError:
                continue
            runs.append(self._new_run(loaded, inputs={"_event": event}, trigger=TriggerKind.EVENT))
        return runs

    async def run_finished(
        self, executor: RunExecutor, follow_ups: list[tuple[Run, Transition]]
    ) -> None:
        """A run reached a terminal state (durably): wake its parent, start its follow-ups."""
        run = executor.run
        for future in self._children.pop(run.id, []):
            if not future.done():
                future.set_result(run)
        for follow, _ in follow_ups:  # recorded with their leases in the run's last write
            await self._spawn(RunSnapshot(run=follow, steps={}, alerts=[], timers=[], last_seq=1))

    # -- versions and rollouts -----------------------------------------------------------------

    async def refresh_rollouts(self) -> bool:
        """Read the store's rollouts again; when they changed, load the versions they name and
        make each playbook's stable version the one `playbooks` holds. Only playbooks loaded
        here are followed. Returns whether anything changed.

        Raises:
            StoreError: the store cannot be read.
        """
        history = await self.store.rollouts()
        seen = (len(history), history[-1] if history else None)
        if seen == self._rollouts_seen:
            return False
        self._rollouts_seen = seen
        state = {p: s for p, s in current_state(history).items() if p in self.playbooks}
        wanted = {(p, v) for p, versions in state.items() for v, r in versions.items() if r.share}
        missing = {p for p, v in wanted if (p, v) not in self._numbered}
        for playbook_id in sorted(missing):
            for stored in await self.store.playbook_versions(playbook_id):
                if (playbook_id, stored.version) not in self._numbered:
                    self._load_stored(stored)
        for playbook_id, versions in state.items():
            for version, record in versions.items():
                if record.share and (playbook_id, version) not in self._numbered:
                    _log.error(
                        "%s v%d has %d %% (%s) but is not loaded here: its alerts go to v%d",
                        playbook_id,
                        version,
                        record.share,
                        record.mode,
                        self.playbooks[playbook_id].playbook.version,
                    )
            stable = stable_version(versions)
            live = [v for v, _ in canaries(versions)]
            for candidate in ([stable] if stable is not None else []) + live[::-1]:
                loaded = self._numbered.get((playbook_id, candidate))
                if loaded is not None:
                    self.playbooks[playbook_id] = loaded
                    break
        self.rollouts = state
        return True

    def _load_stored(self, stored: PlaybookVersion) -> LoadedPlaybook | None:
        file = (
            self._files.get(stored.playbook_id) or f"store:{stored.playbook_id}/v{stored.version}"
        )
        known = {p.playbook.id: p.playbook for p in self.playbooks.values()}
        loaded = loaded_from(stored, self.registry, file=file, known=known)
        if loaded is not None:
            self.add_version(loaded)
        return loaded

    async def _watch_rollouts(self) -> None:
        while True:
            await asyncio.sleep(self.rollout_interval)
            try:
                if await self.refresh_rollouts():
                    _log.info("rollouts changed: %s", self._rollout_summary())
            except StoreError as exc:
                _log.warning("cannot read the rollouts: %s", exc)
            except Exception:  # a bug must not end the following of rollouts for good
                _log.exception("following the rollouts failed; trying again")

    def _rollout_summary(self) -> str:
        return "; ".join(
            f"{p} "
            + ", ".join(f"v{v} {r.share}% {r.mode}" for v, r in sorted(s.items()) if r.share)
            for p, s in sorted(self.rollouts.items())
        )

    async def _save_files(self) -> None:
        """Save each playbook loaded from a file as a version when the store lacks it (author
        `file:<path>`). A file newer than every saved version of its playbook is promoted, as
        a file deployed was before versions were kept; another version number's file is
        saved and waits for a rollout. A file whose version is saved with another digest is
        refused (logged): versions are immutable."""
        for loaded in list(self.playbooks.values()):
            if await self.store.playbook_version(loaded.digest) is not None:
                continue
            version = read_version(loaded, author=f"file:{loaded.file}", at=self.clock.now())
            if version is None:
                continue
            saved = await self.store.playbook_versions(loaded.playbook.id)
            newest = saved[-1] if saved else None
            try:
                await save_version(
                    self.store,
                    self.evidence,
                    version,
                    previous=None if newest is None else (newest.version, newest.digest),
                    go_live=newest is None or version.version > newest.version,
                )
            except ConflictError as exc:
                _log.error("%s: not saved: %s", loaded.file, exc)

    # -- leases ------------------------------------------------------------------------------

    async def _ensure_alive(self) -> None:
        """Beat, and keep beating, before this engine first holds a run: an engine used without
        `start` (one run from the command line) must not look dead to the workers beside it.
        Only a started engine takes other workers' runs over."""
        if self._leases is None:
            await self._beat()
            self._leases = asyncio.create_task(self._keep_leases(), name="soar-leases")
        if self._inbox is None:
            self._inbox = asyncio.create_task(self._watch_inbox(), name="soar-inbox")

    async def _beat(self) -> None:
        """Tell the other workers this one is alive for another `lease_ttl`."""
        until = self.clock.now() + timedelta(seconds=self.lease_ttl)
        await self.store.apply(Change(heartbeats=[Heartbeat(self.worker_id, until)]))
        self._last_beat = time.monotonic()

    async def _gone_workers(self, now: datetime) -> list[str]:
        """Other workers whose heartbeat expired, and those of this host whose process has
        ended (so that a worker restarted here takes its predecessor's runs over at once)."""
        return [
            b.worker
            for b in await self.store.workers()
            if b.worker != self.worker_id and (b.expires_at <= now or not _may_be_alive(b.worker))
        ]

    async def _take_over(self) -> list[str]:
        """Claim and drive every unfinished run nobody drives. Returns their ids."""
        async with self._claiming:
            return await self._take_over_now()

    async def _take_over_now(self) -> list[str]:
        now = self.clock.now()
        dead = await self._gone_workers(now)
        taken: list[str] = []
        skipped: set[str] = set()
        while True:
            orphans = await self.store.orphaned_runs(now, dead, _CLAIM_BATCH + len(skipped))
            fresh = [
                (r, t)
                for r, t in orphans
                if r not in self.executors and r not in self.unresumable and r not in skipped
            ]
            if not fresh:
                break
            for run_id, token in fresh:
                held = await self._claim(run_id, token)
                snapshot = None if held is None else await self.store.load_run(run_id)
                if (
                    held is None
                    or snapshot is None
                    or snapshot.run.status.is_terminal
                    or run_id in self.executors
                ):
                    if (
                        held is not None
                        and snapshot is not None
                        and snapshot.run.status.is_terminal
                    ):
                        # its holder was not dead after all, and finished it meanwhile
                        await self._release(run_id, held)
                    skipped.add(run_id)
                    continue
                try:
                    await self._spawn(snapshot, token=held)
                except ConflictError as exc:  # its playbook version is not loaded here
                    self.unresumable[run_id] = str(exc)
                    _log.error("not resuming: %s", exc)
                    await self._release(run_id, held)
                    continue
                taken.append(run_id)
            if len(orphans) < _CLAIM_BATCH + len(skipped):
                break
        if taken:
            self.taken_over += len(taken)
            _log.info("%s took over %d run(s)", self.worker_id, len(taken))
        if dead:
            with contextlib.suppress(StoreError):
                await self.store.apply(Change(forget_workers=dead))
        return taken

    async def _claim(self, run_id: str, token: int) -> int | None:
        """Take a run's lease from `token`; the new token, or None when another was faster."""
        try:
            await self.store.apply(Change(leases=[Lease(run_id, self.worker_id, token + 1, token)]))
        except LeaseLost:
            return None
        return token + 1

    async def _release(self, run_id: str, token: int) -> None:
        with contextlib.suppress(StoreError):
            await self.store.apply(Change(leases=[Lease(run_id, "", token, token)]))

    async def _keep_leases(self) -> None:
        """Beat, let go of runs taken over behind this engine's back, drive runs held here but
        not driven (their driver failed on a store error), take over the runs of dead workers,
        and wake parents whose sub-playbook ran on another worker."""
        interval = self.lease_ttl / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self._beat()
                await self._check_held()
                if self._taking_over:
                    await self._take_over()
                await self._wake_parents()
            except StoreError as exc:
                _log.warning("keeping leases: %s", exc)
                if time.monotonic() - self._last_beat > self.lease_ttl:
                    self._let_go()

    async def _check_held(self) -> None:
        async with self._claiming:
            await self._check_held_now()

    async def _check_held_now(self) -> None:
        settled = {
            run_id: executor
            for run_id, executor in self.executors.items()
            if executor.created.done() and not executor.created.exception()
        }
        held = await self.store.held_runs(self.worker_id)
        for run_id, executor in settled.items():
            if held.get(run_id) != executor.token and not executor.run.status.is_terminal:
                _log.warning("run %s was taken over by another worker; letting go", run_id)
                self._stop_driving(run_id)
        for run_id, token in held.items():
            if run_id in self.executors or run_id in self.unresumable:
                continue
            snapshot = await self.store.load_run(run_id)
            if snapshot is not None and not snapshot.run.status.is_terminal:
                with contextlib.suppress(ConflictError):
                    await self._spawn(snapshot, token=token)

    def _let_go(self) -> None:
        """This worker's heartbeat may have expired: others may be taking its runs over."""
        if self.executors:
            _log.error("%s cannot reach the store; letting go of its runs", self.worker_id)
        for run_id in list(self.executors):
            self._stop_driving(run_id)

    def _stop_driving(self, run_id: str) -> None:
        task = self._drivers.pop(run_id, None)
        self.executors.pop(run_id, None)
        if task is not None:
            task.cancel()

    async def _wake_parents(self) -> None:
        for child_id in [c for c in self._children if c not in self.executors]:
            snapshot = await self.store.load_run(child_id)
            if snapshot is not None and snapshot.run.status.is_terminal:
                for future in self._children.pop(child_id, []):
                    if not future.done():
                        future.set_result(snapshot.run)

    # -- internals -----------------------------------------------------------------------------

    def _executor(self, run_id: str) -> RunExecutor:
        executor = self.executors.get(run_id)
        if executor is None:
            raise ConflictError(f"run {run_id} is not active on this worker")
        return executor

    async def _spawn(
        self, snapshot: RunSnapshot, *, token: int = 1, creation: Change | None = None
    ) -> RunExecutor:
        """Drive a run this engine holds the lease of, with fencing token `token`."""
        loaded = self.versions.get(snapshot.run.playbook_digest)
        if loaded is None and creation is None:  # a version saved elsewhere, perhaps
            stored = await self.store.playbook_version(snapshot.run.playbook_digest)
            loaded = None if stored is None else self._load_stored(stored)
        if loaded is None:  # never continue a run with another version than the one it began
            other = self.playbooks.get(snapshot.run.playbook_id)
            if other is not None:
                raise ConflictError(
                    f"run {snapshot.run.id} began on {snapshot.run.playbook_id} "
                    f"v{snapshot.run.playbook_version} ({snapshot.run.playbook_digest[:19]}), "
                    f"but v{other.playbook.version} ({other.digest[:19]}) is loaded"
                )
            raise ConflictError(
                f"run {snapshot.run.id}: playbook {snapshot.run.playbook_id} is not loaded"
            )
        if snapshot.run.id in self.executors:  # one driver per run per engine, always
            raise ConflictError(f"run {snapshot.run.id} is already being driven here")
        executor = RunExecutor(self, loaded, snapshot, token=token, creation=creation)
        self.executors[snapshot.run.id] = executor
        task: asyncio.Task[object] = asyncio.create_task(
            self._drive(executor), name=f"run-{snapshot.run.id}"
        )
        self._drivers[snapshot.run.id] = task
        self._tasks.add(task)
        self._idle.clear()
        task.add_done_callback(self._task_done)
        return executor

    async def _drive(self, executor: RunExecutor) -> Run:
        try:
            ref = executor.trace_ref
            if not self.tracing.enabled or ref is None or executor.run.dry_run:
                return await executor.drive()
            run = executor.run
            attributes: dict[str, str | int | bool] = {
                PLAYBOOK: run.playbook_id,
                VERSION: run.playbook_version,
                RUN_ID: run.id,
            }
            with self.tracing.root_span(
                "soar.engine.run", ref, executor.trace_parent, attributes
            ) as span:
                finished = await executor.drive()
                span.set(OUTCOME, finished.status._value_)
                return finished
        except LeaseLost as exc:
            _log.warning(
                "run %s: another worker drives it now; letting go (%s)", executor.run.id, exc
            )
            return executor.run
        finally:
            if self.executors.get(executor.run.id) is executor:
                del self.executors[executor.run.id]
                self._drivers.pop(executor.run.id, None)

    def _task_done(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("run driver crashed", exc_info=task.exception())
        if not self._tasks:
            self._idle.set()

    async def _cron_loop(self) -> None:
        marks = await self.store.cron_marks()
        started = self.clock.now()
        while True:
            due: list[tuple[datetime, LoadedPlaybook]] = []
            for loaded in self.playbooks.values():
                trigger = loaded.playbook.trigger
                if trigger.cron is None or not loaded.playbook.enabled:
                    continue
                base = marks.get(loaded.playbook.id, started)
                moment = _next_fire(trigger.cron, trigger.timezone, base)
                now = self.clock.now()
                if moment < now:  # fires missed while no engine ran: catch up once, the latest
                    moment = _previous_fire(
                        trigger.cron, trigger.timezone, now + timedelta(seconds=1)
                    )
                due.append((moment, loaded))
            if not due:
                return
            moment, loaded = min(due, key=lambda d: d[0])
            await self.clock.sleep_until(moment)
            marks[loaded.playbook.id] = moment
            # every worker keeps the schedule; the fire's id is the same on each, so one
            # records its run and the others' attempts are refused
            fire = origin_run_id(f"cron:{moment.isoformat()}", loaded.playbook.id)
            with contextlib.suppress(LeaseLost):
                await self.start_run(
                    loaded,
                    trigger=TriggerKind.CRON,
                    inputs={"_scheduled_for": jsonable(moment)},
                    cron_mark=moment,
                    run_id=fire,
                )


_INPUT_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "list": (list,),
    "object": (dict,),
}


def _checked_inputs(
    loaded: LoadedPlaybook, given: dict[str, JsonValue], *, internal: bool
) -> dict[str, JsonValue]:
    """The run's inputs: defaults filled in, required ones present, types as declared.

    Raises:
        BadInputs: an input is missing, unknown, or of the wrong type.
    """
    declared = loaded.playbook.inputs
    values: dict[str, JsonValue] = {
        k: s.default for k, s in declared.items() if s.default is not None
    }
    problems = []
    for name, value in given.items():
        spec = declared.get(name)
        if spec is None:
            if not name.startswith("_"):  # `_event`, `_scheduled_for`: set by the engine
                problems.append(f"unknown input {name!r}")
            continue
        accepted = _INPUT_TYPES[spec.type.value]
        wrong_bool = isinstance(value, bool) and spec.type.value != "boolean"
        if not isinstance(value, accepted) or wrong_bool:
            problems.append(f"input {name!r} must be of type {spec.type.value}")
            continue
        values[name] = value
    for name, value in given.items():
        if name.startswith("_"):
            values[name] = value
    for name, spec in declared.items():
        if spec.required and name not in values and not internal:
            problems.append(f"missing required input {name!r}")
    if problems:
        raise BadInputs(f"{loaded.playbook.id}: " + "; ".join(problems))
    return values


def _request_body(kind: str, body: JsonValue) -> JsonValue:
    """The body of a request of `kind`, checked, with optional fields filled in.

    Raises:
        ValueError: an unknown kind, or a body of the wrong shape.
    """
    if kind not in INBOX_KINDS:
        raise ValueError(
            f"unknown request kind {kind!r} (expected one of {', '.join(INBOX_KINDS)})"
        )
    if kind == "event":
        return body
    if not isinstance(body, dict):
        raise ValueError(f"a {kind} request's body must be an object")
    if kind == "abort":
        reason = body.get("reason", "aborted by an operator")
        if not isinstance(reason, str):
            raise ValueError("an abort request's reason must be text")
        return {"reason": reason}
    checked: dict[str, JsonValue] = {}
    for name, types, required in (
        ("step", (str,), True),
        ("approved", (bool,), True),
        ("by", (str,), True),
        ("comment", (str, type(None)), False),
        ("digest", (str, type(None)), False),
    ):
        value = body.get(name)
        if (required and name not in body) or not isinstance(value, types):
            raise ValueError(f"a decide request's {name!r} is missing or of the wrong type")
        checked[name] = value
    return checked


def _refused(code: str, exc: Exception) -> dict[str, JsonValue]:
    return {"ok": False, "code": code, "error": str(exc)}


def _previous_fire(expression: str, timezone: str, before: datetime) -> datetime:
    from zoneinfo import ZoneInfo

    local = before.astimezone(ZoneInfo(timezone))
    result = croniter(expression, local).get_prev(datetime)
    assert isinstance(result, datetime)  # noqa: S101
    return result.astimezone(before.tzinfo)


def _next_fire(expression: str, timezone: str, after: datetime) -> datetime:
    from zoneinfo import ZoneInfo

    local = after.astimezone(ZoneInfo(timezone))
    result = croniter(expression, local).get_next(datetime)
    assert isinstance(result, datetime)  # noqa: S101
    return result.astimezone(after.tzinfo)


def _node_of(key: str) -> str:
    return key.split("[", 1)[0] if key.endswith("]") else key


def _event_view(event: dict[str, JsonValue]) -> dict[str, object]:
    view: dict[str, object] = dict(event)
    severity = event.get("severity")
    if isinstance(severity, str):
        from soar.models.severity import Severity

        with contextlib.suppress(ValueError):
            view["severity"] = Severity.parse(severity)
    return view


_HOST = socket.gethostname()
_WORKER_ID = re.compile(r"@(?P<host>[^@]*):(?P<pid>[0-9]+):[0-9a-f]+\Z")


def worker_id(name: str) -> str:
    """A worker's id: its name, host and process, and a random part, new on every start."""
    return f"{name}@{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _may_be_alive(worker: str) -> bool:
    """False only for a worker of this host whose process has ended."""
    match = _WORKER_ID.search(worker)
    if match is None or match["host"] != _HOST:
        return True
    try:
        os.kill(int(match["pid"]), 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process, say: it exists
        return True
    return True


def origin_run_id(origin: str, playbook_id: str) -> str:
    """The id of the run `playbook_id` makes for the alert from `origin`: 32 hex digits, as
    random run ids are, the same on every delivery of that alert."""
    return hashlib.sha256(f"{origin}\x00{playbook_id}".encode()).hexdigest()[:32]


_SHADOW = "soar.dry_run/"
"""The prefix of a dry-run version's run-id origins and dedup keys: a shadow of the live
choice dedups and is delivered on its own."""

_DELIVERED = "soar.delivered/"
"""The dedup key prefix that remembers which run a delivered alert joined, for as long as the
window it joined lasts: a redelivery then joins nothing twice."""
