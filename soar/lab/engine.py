"""The lab's engine: the real one, with two things added at its public seams. A run of a playbook
that calls a connector with no server behind it in this lab (LDAP without slapd) starts as a dry
run, and every alert the engine takes in is told to listeners with the runs it started or joined.

Why whole dry runs: the engine plans or carries out a run as a whole (a dry run calls no
connector, records no audit event and is tagged "dry run" in the console). Calling the other
connectors for real while an LDAP step only pretended to succeed would put a made-up outcome in
the run's record; a dry run says plainly that nothing was done.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Any

from pydantic import JsonValue

from soar.engine import Engine
from soar.engine.evidence import ENGINE
from soar.models import Alert
from soar.models.run import TriggerKind
from soar.playbook.validate import LoadedPlaybook
from soar.telemetry.tracing import TraceRef

__all__ = ["AlertListener", "LabEngine", "connectors_used"]

_log = logging.getLogger("soar.lab")

AlertListener = Callable[[Alert, list[str]], None]


def connectors_used(loaded: LoadedPlaybook) -> set[str]:
    """Every connector a playbook's steps, fallbacks, escalations and compensations call."""
    used: set[str] = set()
    for node in loaded.graph.nodes.values():
        names = [node.step.action]
        if node.step.compensate is not None:
            names.append(node.step.compensate.action)
        used.update(name.partition(".")[0] for name in names if name)
    return used


class LabEngine(Engine):
    """An `Engine` that dry-runs the playbooks calling any of `offline` (connector names), and
    tells `on_alert` listeners each alert it took in."""

    def __init__(self, *args: Any, offline: Collection[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.offline = frozenset(offline)
        self.alert_listeners: list[AlertListener] = []

    def is_dry(self, loaded: LoadedPlaybook) -> bool:
        """Whether this lab runs `loaded` as a dry run (it calls an offline connector)."""
        return bool(connectors_used(loaded) & self.offline)

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
        loaded = self.playbooks[playbook] if isinstance(playbook, str) else playbook
        if not dry_run and self.is_dry(loaded):
            _log.info("%s: a dry run (no server for %s here)", loaded.playbook.id, self.offline)
            dry_run = True
        return await super().start_run(
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

    async def submit_alert(
        self,
        alert: Alert,
        *,
        trace: TraceRef | None = None,
        actor: str = ENGINE,
        origin: str | None = None,
    ) -> list[str]:
        touched = await super().submit_alert(alert, trace=trace, actor=actor, origin=origin)
        for listener in self.alert_listeners:
            listener(alert, touched)
        return touched
