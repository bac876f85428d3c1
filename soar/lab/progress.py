"""What the lab says while it runs, one line per event a person would want to see: an alert
taken in and the runs it started or joined, a run waiting for a person or for an event, a
decision, a run's end. It also keeps each run's state, for `--once` to know when everything
has settled and for the summary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import click
from pydantic import JsonValue

from soar.engine import RunExecutor
from soar.models import Alert
from soar.models.run import RunStatus, StepStatus, Transition, TransitionKind

__all__ = ["Progress", "RunView", "short"]

Say = Callable[[str], None]
WaitListener = Callable[[str, str], None]
"""Told (run id, alert id) when a run starts waiting for an event about its alert."""


def short(run_id: str) -> str:
    """A run id as the lab prints it: enough to tell runs apart and find them in the console."""
    return run_id[:8]


@dataclass(slots=True)
class RunView:
    id: str
    playbook: str
    alert_id: str | None
    title: str
    dry_run: bool
    status: RunStatus = RunStatus.RUNNING
    waiting_for: str | None = None
    """"approval" while a step waits for people, "event" while one waits for an event"""
    error: str | None = None

    @property
    def settled(self) -> bool:
        """Ended, or waiting for people only (nothing more happens without them)."""
        return self.status.is_terminal or self.waiting_for == "approval"

    @property
    def outcome(self) -> str:
        if self.status.is_terminal:
            return self.status.value
        if self.waiting_for == "approval":
            return "waiting for approval"
        if self.waiting_for == "event":
            return "waiting for an event"
        return self.status.value


class Progress:
    """The engine's observer and alert listener, printing progress with `say`."""

    def __init__(self, say: Say, executors: Callable[[str], RunExecutor | None]) -> None:
        """`executors(run_id)`: the engine's executor of a run it drives, if any."""
        self.say = say
        self.executors = executors
        self.console = ""
        """the console's URL, once the API is up"""
        self.runs: dict[str, RunView] = {}
        self.accepted: dict[str, list[str]] = {}
        """alert id -> the runs it started or joined"""
        self.titles: dict[str, str] = {}
        self.wait_listeners: list[WaitListener] = []
        self._waiting: dict[tuple[str, str], str] = {}  # (run, step) -> "approval" | "event"

    # -- told by the engine ---------------------------------------------------------------------

    def on_alert(self, alert: Alert, touched: list[str]) -> None:
        """An alert was taken in: the runs it started or joined."""
        self.accepted[alert.id] = list(touched)
        self.titles[alert.id] = alert.title
        if not touched:
            self.line(f"alert {_alert_id(alert.id)} ({alert.severity.value}) starts no playbook")
            return
        parts = []
        for run_id in touched:
            executor = self.executors(run_id)
            run = self.view(executor) if executor is not None else self.runs.get(run_id)
            if run is not None and run.alert_id == alert.id:
                parts.append(f"started {run.playbook} run {short(run_id)}{_dry(run)}")
            else:
                playbook = run.playbook if run is not None else "a"
                parts.append(f"joined {playbook} run {short(run_id)} (deduplicated)")
        self.line(f"alert {_alert_id(alert.id)} ({alert.severity.value}): {'; '.join(parts)}")

    def __call__(self, executor: RunExecutor, transitions: list[Transition]) -> None:
        for transition in transitions:
            self._observe(executor, transition)

    def _observe(self, executor: RunExecutor, transition: Transition) -> None:
        run = executor.run
        kind = transition.kind
        view = self.view(executor)
        step = transition.step
        if kind is TransitionKind.STEP_WAITING and step is not None:
            self._step_waits(executor, view, step)
        elif kind in _STEP_ENDS and step is not None:
            waited = self._waiting.pop((run.id, step), None)
            if waited is not None:
                view.waiting_for = self._still_waiting(run.id)
            if waited == "approval":
                self._approval_ended(executor, view, step)
        if kind is TransitionKind.APPROVAL_DECIDED and isinstance(transition.data, dict):
            data = transition.data
            verdict = "approved" if data.get("approved") else "denied"
            self.line(f"run {short(run.id)}: {step} {verdict} by {_by(data.get('by'))}")
        elif kind is TransitionKind.RUN_FINISHED:
            view.status = run.status
            view.waiting_for = None
            if isinstance(transition.data, dict):
                status = transition.data.get("status")
                if isinstance(status, str):
                    view.status = RunStatus(status)
                error = transition.data.get("error")
                view.error = error if isinstance(error, str) else None
            seconds = (datetime.now(UTC) - run.created_at).total_seconds()
            colour = "green" if view.status is RunStatus.COMPLETED else "red"
            text = click.style(view.status.value, fg=colour)
            steps = executor.states.values()
            done = sum(1 for s in steps if s.status is StepStatus.SUCCEEDED)
            tail = f": {view.error}" if view.error else ""
            self.line(
                f"run {short(run.id)} {view.playbook}{_dry(view)} {text} after {seconds:.1f} s "
                f"({done} step(s) succeeded){tail}"
            )

    def view(self, executor: RunExecutor) -> RunView:
        """The lab's view of a run, made from its executor the first time the run is seen (the
        engine tells its observers the transitions after a run's first write)."""
        run = executor.run
        view = self.runs.get(run.id)
        if view is None:
            alert = run.alert if isinstance(run.alert, dict) else {}
            alert_id = alert.get("id")
            title = alert.get("title")
            view = RunView(
                run.id,
                run.playbook_id,
                alert_id if isinstance(alert_id, str) else None,
                title if isinstance(title, str) else "",
                run.dry_run,
            )
            self.runs[run.id] = view
        return view

    def _step_waits(self, executor: RunExecutor, view: RunView, step: str) -> None:
        node = executor.graph.nodes.get(step)
        if node is None:
            return
        run_id = view.id
        if node.step.approval is not None:
            self._waiting[(run_id, step)] = "approval"
            view.waiting_for = "approval"
            group = node.step.approval.group
            who = f" from {group}" if group else ""
            where = f": open {self.console}#/approvals" if self.console else ""
            self.line(
                click.style(f"run {short(run_id)} {view.playbook} waits for approval", bold=True)
                + f" of {step}{who}{where}"
            )
        elif node.step.wait is not None and node.step.wait.match is not None:
            self._waiting[(run_id, step)] = "event"
            view.waiting_for = view.waiting_for or "event"
            self.line(f"run {short(run_id)} {view.playbook} waits for an event ({step})")
            if view.alert_id is not None:
                for listener in self.wait_listeners:
                    listener(run_id, view.alert_id)

    def _approval_ended(self, executor: RunExecutor, view: RunView, step: str) -> None:
        """Say so when nobody decided in time (a decision has its own line)."""
        state = executor.states.get(step)
        output = state.output if state is not None else None
        if isinstance(output, dict) and output.get("timed_out") is True:
            verdict = "approved" if output.get("approved") else "denied"
            self.line(f"run {short(view.id)}: nobody decided {step} in time: {verdict}")

    def _still_waiting(self, run_id: str) -> str | None:
        kinds = {kind for (run, _), kind in self._waiting.items() if run == run_id}
        if "approval" in kinds:
            return "approval"
        return "event" if kinds else None

    # -- for the lab ---------------------------------------------------------------------------

    def line(self, text: str) -> None:
        stamp = datetime.now(UTC).astimezone().strftime("%H:%M:%S")
        self.say(f"{click.style(stamp, dim=True)} {text}")

    def settled(self, alert_ids: list[str]) -> bool:
        """Whether every one of these alerts was taken in and every run it touched has ended
        or waits for people only."""
        for alert_id in alert_ids:
            touched = self.accepted.get(alert_id)
            if touched is None:
                return False
            for run_id in touched:
                view = self.runs.get(run_id)
                if view is not None and not view.settled:
                    return False
        return True

    def runs_settled(self, run_ids: list[str]) -> bool:
        """Whether each of these runs (started by the lab itself) has ended or waits for
        people only."""
        for run_id in run_ids:
            view = self.runs.get(run_id)
            if view is None or not view.settled:
                return False
        return True

    def counts(self) -> Counter[str]:
        return Counter(view.outcome for view in self.runs.values())


_STEP_ENDS = frozenset(
    (
        TransitionKind.STEP_SUCCEEDED,
        TransitionKind.STEP_FAILED,
        TransitionKind.STEP_SKIPPED,
        TransitionKind.STEP_CANCELLED,
    )
)


def _alert_id(alert_id: str) -> str:
    return alert_id if len(alert_id) <= 24 else alert_id[:21] + "..."


def _by(value: JsonValue) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "nobody"
    return str(value) if value else "timeout"


def _dry(view: RunView) -> str:
    return " (dry run)" if view.dry_run else ""
