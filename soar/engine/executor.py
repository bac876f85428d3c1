"""One run, driven step by step. Every decision is written to the store before it is acted on,
and every decision is re-derived from what was written, so a run resumed after `kill -9`
continues where its last transition left it: finished steps are not repeated, an attempt that
was in flight is issued again with the same idempotency key (after its `verify` probe)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, cast

from pydantic import JsonValue

from soar.connectors.action import ActionSpec
from soar.engine.attempt import AttemptFailed, Attempts
from soar.engine.evidence import ENGINE
from soar.engine.scope import jsonable, node_key_of, render, run_view, skipped_view, step_view
from soar.errors import (
    AccessDenied,
    ApprovalChanged,
    ConflictError,
    EvaluationError,
    StoreError,
)
from soar.models import Alert, Severity
from soar.models.audit import AuditEvent
from soar.models.run import (
    AttachedAlert,
    DedupEntry,
    Run,
    RunStatus,
    StepState,
    StepStatus,
    Transition,
    TransitionKind,
)
from soar.playbook.graph import Region, StepNode
from soar.playbook.schema import ApprovalTimeout, EndStatus, WaitTimeout
from soar.playbook.source import Path
from soar.playbook.validate import LoadedPlaybook
from soar.store.base import Change, Lease, RunSnapshot
from soar.telemetry.tracing import TraceRef

if TYPE_CHECKING:
    from soar.engine.engine import Engine

_log = logging.getLogger("soar.engine")

ABORT_KEY = "~abort"
"""The pseudo-step that records an abort request, so it survives a restart."""

CURRENT_RUN: ContextVar[str | None] = ContextVar("soar_current_run", default=None)
"""The run whose code is executing (set for every task of a run), for log records."""


class StepFailed(Exception):
    """A step failed for good and nothing handled it: the run fails."""

    def __init__(self, key: str, error: str) -> None:
        self.key = key
        self.error = error
        super().__init__(f"step {key!r} failed: {error}")


class EndRun(Exception):
    """An `end` step ended the run."""

    def __init__(self, status: RunStatus) -> None:
        self.status = status
        super().__init__(status.value)


class RunAborted(Exception):
    """An operator aborted the run."""


class RunExecutor:
    """Drives one run to a terminal state. All writes of a run go through its executor."""

    def __init__(
        self,
        engine: Engine,
        loaded: LoadedPlaybook,
        snapshot: RunSnapshot,
        *,
        token: int = 1,
        creation: Change | None = None,
    ) -> None:
        self.engine = engine
        self.token = token
        """The run's fencing token as leased to this engine: every write carries it."""
        self.loaded = loaded
        self.graph = loaded.graph
        self.run = snapshot.run
        self.states: dict[str, StepState] = dict(snapshot.steps)
        self.attached: list[AttachedAlert] = list(snapshot.alerts)
        self.seq = snapshot.last_seq
        self.order = max((s.order for s in self.states.values()), default=0)
        self.view: dict[str, object] = {}
        self.effects: list[dict[str, JsonValue]] = []
        self.finished: asyncio.Future[Run] = asyncio.get_running_loop().create_future()
        self._alert = self._alert_context()
        self._approvals: dict[str, asyncio.Future[tuple[bool, str, str | None]]] = {}
        self._event_waiters: list[tuple[str, asyncio.Future[JsonValue]]] = []
        self._aborting = asyncio.Event()
        self._resolved = asyncio.Event()
        self._attempts = Attempts(self)
        if any(_is_resolution(a.alert) for a in self.attached):
            self._resolved.set()
        if ABORT_KEY in self.states:
            self._aborting.set()  # an abort requested before a restart still holds
        self._variables: dict[str, object] | None = None
        self._held_steps: list[StepState] = []
        self._held_transitions: list[Transition] = []
        self._held_audit: list[AuditEvent | str] = []
        self._unannounced: dict[str, str] = {}
        """Held starts with no audit record yet, by step key, with their actor: the attempt's
        outcome record carries its inputs and key instead, when the two are written together."""
        self.trace_ref = TraceRef.parse(self.run.trace)
        self.trace_parent: TraceRef | None = None
        """The alert's span that started this run (known only in the process that started it)."""
        self.acting: dict[str, ActionSpec] = {}
        """The action each step instance calls, for its audit records (set before it starts)."""
        # A new run's own record (run row, `run_started`, dedup entry, cron mark) rides with its
        # first step transition; whoever started the run awaits `created` for it to be durable.
        self._creation = creation
        self.created: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if creation is None:
            self.created.set_result(None)
        self._rebuild_view()

    # -- the whole run ---------------------------------------------------------------------

    async def drive(self) -> Run:
        """Run to the end: main flow, escalations beside it, compensation when it fails."""
        CURRENT_RUN.set(self.run.id)
        try:
            if not self.run.status.is_terminal:
                await self._drive()
        finally:
            if not self.created.done():
                self.created.set_exception(StoreError(f"run {self.run.id} was not recorded"))
            if not self.finished.done():
                self.finished.set_result(self.run)
        return self.run

    async def _drive(self) -> None:
        ladders = [
            asyncio.create_task(self._escalation(i), name=f"escalate-{i}")
            for i in range(len(self.loaded.playbook.escalate))
        ]
        status, error = RunStatus.COMPLETED, None
        try:
            if self.run.status is RunStatus.COMPENSATING:
                aborted = ABORT_KEY in self.states
                status = RunStatus.ABORTED if aborted else RunStatus.FAILED
                error = self.run.error
            else:
                await self._run_list(("steps",))
        except EndRun as end:
            status = end.status
            error = "ended by an end step" if status is RunStatus.FAILED else None
        except StepFailed as failure:
            status, error = RunStatus.FAILED, str(failure)
        except RunAborted:
            request = self.states.get(ABORT_KEY)
            reason = (
                request.output.get("reason")
                if request and isinstance(request.output, dict)
                else None
            )
            status, error = RunStatus.ABORTED, str(reason or "aborted")
        finally:
            for ladder in ladders:
                ladder.cancel()
            for ladder in ladders:
                with contextlib.suppress(asyncio.CancelledError):
                    await ladder
        if status in (RunStatus.FAILED, RunStatus.ABORTED):
            if self.run.status is not RunStatus.COMPENSATING:
                await self._set_run(RunStatus.COMPENSATING, error)
            await self._compensate()
        final = replace(self.run, status=status, error=error)
        follow_ups = self.engine.follow_ups(self, final)
        await self._set_run(status, error, kind=TransitionKind.RUN_FINISHED, also=follow_ups)
        if not self.run.dry_run:
            self.engine.instruments.run_finished(
                self.run.playbook_id, self.run.playbook_version, status._value_
            )
        await self.engine.run_finished(self, follow_ups)

    # -- lists of steps ----------------------------------------------------------------------

    async def _run_list(self, list_path: Path) -> None:
        """Run one list of steps: each starts when its dependencies have finished."""
        keys = self.graph.lists.get(list_path, [])
        members = set(keys)
        finished: set[str] = set()
        running: dict[asyncio.Task[None], str] = {}
        started: set[str] = set()
        failure: BaseException | None = None
        while True:
            if failure is None and not self._aborting.is_set():
                ready = [
                    key
                    for key in keys
                    if key not in started
                    and all(d in finished for d in self.graph.nodes[key].deps if d in members)
                ]
                if len(ready) == 1 and not running:
                    # the common case, one step after another: no task, no wait
                    started.add(ready[0])
                    await self._run_node(self.graph.nodes[ready[0]])
                    finished.add(ready[0])
                    continue
                for key in ready:
                    started.add(key)
                    task = asyncio.create_task(self._run_node(self.graph.nodes[key]))
                    running[task] = key
            if not running:
                break
            await self.flush()  # nothing held back while steps run side by side
            try:
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                await _cancel_all(running)  # a stopping worker leaves no step writing behind it
                raise
            for task in done:
                key = running.pop(task)
                exc = task.exception()
                if exc is None:
                    finished.add(key)
                elif failure is None or isinstance(exc, RunAborted):
                    failure = exc
        if failure is not None:
            raise failure
        if self._aborting.is_set():
            raise RunAborted

    async def _run_node(self, node: StepNode) -> None:
        state = self.states.get(node.key)
        if state is not None and state.status.is_finished:
            if state.status is StepStatus.FAILED and not self._handled(node):
                if node.step.on_error is None:
                    raise StepFailed(node.key, state.error or "failed")
                await self._run_list((*node.path, "on_error"))  # fallbacks cut short by a crash
            return
        step = node.step
        if state is None and step.when is not None and not await self._holds(node):
            await self._skip(node)
            return
        if step.end is not None:
            await self.succeeded(node.key, {"end": step.end.value})
            raise EndRun(
                RunStatus.COMPLETED if step.end is EndStatus.COMPLETED else RunStatus.FAILED
            )
        if step.branch is not None:
            await self._run_branch(node)
        elif step.parallel is not None:
            await self._run_group(node, (*node.path, "parallel"))
        elif step.approval is not None:
            await self._run_approval(node)
        elif step.wait is not None:
            await self._run_wait(node)
        else:
            await self._run_work(node)

    async def _holds(self, node: StepNode) -> bool:
        expression = self.loaded.expressions.get((*node.path, "when"))
        if expression is None:
            return node.step.when is not False
        try:
            return bool(expression.evaluate(self.variables(), clock=self.engine.clock.now))
        except EvaluationError as exc:
            await self._fail_final(node, f"when: {exc.message}")
            raise AssertionError("unreachable") from None  # _fail_final raises

    def _handled(self, node: StepNode) -> bool:
        """A failed step whose fallbacks all ended well does not fail the run."""
        if node.step.on_error is None:
            return False
        fallbacks = self.graph.lists.get((*node.path, "on_error"), [])
        return bool(fallbacks) and all(
            (s := self.states.get(k)) is not None
            and s.status in (StepStatus.SUCCEEDED, StepStatus.SKIPPED)
            for k in fallbacks
        )

    # -- containers ----------------------------------------------------------------------------

    async def _run_branch(self, node: StepNode) -> None:
        state = self.states.get(node.key)
        if state is None:
            chosen = await self._choose_case(node)
            await self._record(
                node.key, StepStatus.RUNNING, TransitionKind.STEP_STARTED, inputs={"case": chosen}
            )
            state = self.states[node.key]
        case: JsonValue = state.inputs.get("case") if isinstance(state.inputs, dict) else None
        if isinstance(case, int):
            branch = node.step.branch or []
            which = "else" if branch[case].else_ is not None else "steps"
            for other in range(len(branch)):
                if other != case:
                    self._mark_skipped_list((*node.path, "branch", other))
            await self._contain(node, (*node.path, "branch", case, which), output={"case": case})
        else:
            for other in range(len(node.step.branch or [])):
                self._mark_skipped_list((*node.path, "branch", other))
            await self.succeeded(node.key, {"case": None})

    async def _choose_case(self, node: StepNode) -> int | None:
        for index, case in enumerate(node.step.branch or []):
            if case.else_ is not None:
                return index
            expression = self.loaded.expressions.get((*node.path, "branch", index, "when"))
            if expression is None:
                if case.when is True:
                    return index
                continue
            try:
                if expression.evaluate(self.variables(), clock=self.engine.clock.now):
                    return index
            except EvaluationError as exc:
                await self._fail_final(node, f"branch case {index}: {exc.message}")
        return None

    async def _run_group(self, node: StepNode, list_path: Path) -> None:
        if node.key not in self.states:
            await self._record(node.key, StepStatus.RUNNING, TransitionKind.STEP_STARTED)
        await self._contain(node, list_path, output=None)

    async def _contain(self, node: StepNode, list_path: Path, *, output: JsonValue) -> None:
        try:
            await self._run_list(list_path)
        except StepFailed as failure:
            await self._record(
                node.key, StepStatus.FAILED, TransitionKind.STEP_FAILED, error=failure.error
            )
            raise
        await self.succeeded(node.key, output)

    def _mark_skipped_list(self, case_path: Path) -> None:
        for key, other in self.graph.nodes.items():
            if other.path[: len(case_path)] == case_path and other.named:
                self.view.setdefault(key, skipped_view())

    # -- actions and sub-playbooks -------------------------------------------------------------

    async def _run_work(self, node: StepNode) -> None:
        try:
            if node.step.for_each is not None:
                await self._run_items(node)
            else:
                if node.key not in self.states:
                    await self._check_approved(node)
                await self._attempts.run(node, node.key, item=None, index=None)
        except AttemptFailed as failure:
            await self._fallback(node, failure.error)

    async def _check_approved(self, node: StepNode) -> None:
        """Before an action step's first attempt: when the approval just before it bound its
        inputs, they must render as they did then. Else the step fails, not retried.

        Raises:
            AttemptFailed: the inputs changed since they were approved.
        """
        if self._approved_inputs(node) is None or node.step.action is None:
            return
        try:
            rendered = render(
                self.loaded,
                (*node.path, "with"),
                node.step.with_,
                self.variables(),
                self.engine.clock.now,
            )
            inputs = jsonable(rendered)
        except (EvaluationError, ValueError):
            return  # the attempt renders them again, and fails on that
        changed = self.changed_since_approval(node, inputs)
        if changed is not None:
            await self._record(
                node.key, StepStatus.FAILED, TransitionKind.STEP_FAILED, error=changed, attempt=0
            )
            raise AttemptFailed(changed, retryable=False)

    async def _run_items(self, node: StepNode) -> None:
        state = self.states.get(node.key)
        if state is None or not isinstance(state.inputs, dict) or "items" not in state.inputs:
            await self._record(
                node.key,
                StepStatus.RUNNING,
                TransitionKind.STEP_STARTED,
                inputs={"items": self._items(node)},
            )
            state = self.states[node.key]
        assert isinstance(state.inputs, dict)  # noqa: S101
        items: JsonValue = state.inputs["items"]
        assert isinstance(items, list)  # noqa: S101
        limit = asyncio.Semaphore(node.step.concurrency or 1)
        failures: list[str] = []

        async def one(index: int, item: JsonValue) -> None:
            async with limit:
                if failures or self._aborting.is_set():
                    return
                try:
                    await self._attempts.run(node, f"{node.key}[{index}]", item=item, index=index)
                    await self.flush()  # items run side by side: hold nothing back
                except AttemptFailed as failure:
                    failures.append(f"item {index}: {failure.error}")

        await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
        if self._aborting.is_set():
            raise RunAborted
        outputs = [
            (s.output if (s := self.states.get(f"{node.key}[{i}]")) is not None else None)
            for i in range(len(items))
        ]
        if failures:
            await self._record(
                node.key,
                StepStatus.FAILED,
                TransitionKind.STEP_FAILED,
                output=outputs,
                error=failures[0],
            )
            raise AttemptFailed(failures[0], retryable=False)
        await self.succeeded(node.key, outputs)

    def _items(self, node: StepNode) -> list[JsonValue]:
        raw = node.step.for_each
        if isinstance(raw, list):
            return list(raw)
        value = render(
            self.loaded, (*node.path, "for_each"), raw, self.variables(), self.engine.clock.now
        )
        if not isinstance(value, list | tuple):
            raise AttemptFailed(
                f"for_each gave a {type(value).__name__}, not a list", retryable=False
            )
        return [jsonable(v) for v in value]

    async def _fallback(self, node: StepNode, error: str) -> None:
        if node.step.on_error is None:
            raise StepFailed(node.key, error)
        await self._run_list((*node.path, "on_error"))

    async def _fail_final(self, node: StepNode, error: str) -> None:
        await self._record(node.key, StepStatus.FAILED, TransitionKind.STEP_FAILED, error=error)
        raise StepFailed(node.key, error)

    # -- approvals and waits -----------------------------------------------------------------

    async def _run_approval(self, node: StepNode) -> None:
        approval = node.step.approval
        assert approval is not None  # noqa: S101
        if self.run.dry_run:  # a dry run assumes the people say yes, and says so
            assumed: dict[str, JsonValue] = {
                "approved": True,
                "timed_out": False,
                "decided_by": ["dry-run"],
                "comment": "assumed in a dry run",
                "decided_at": jsonable(self.engine.clock.now()),
            }
            self.plan(
                node.key,
                "approval",
                "group",
                approval.group,
                {"approvers": list(approval.approvers), "assumed": "approved"},
            )
            await self.succeeded(node.key, assumed)
            return
        state = self.states.get(node.key)
        if state is None:
            message = None
            if approval.message is not None:
                rendered = render(
                    self.loaded,
                    (*node.path, "approval", "message"),
                    approval.message,
                    self.variables(),
                    self.engine.clock.now,
                )
                message = str(jsonable(rendered))
            asked: dict[str, JsonValue] = {
                "message": message,
                "group": approval.group,
                "approvers": list(approval.approvers),
                "guards": self._guarded(node),
            }
            due = self.engine.clock.now() + approval.timeout
            await self._record(
                node.key,
                StepStatus.WAITING,
                TransitionKind.STEP_WAITING,
                due_at=due,
                inputs={**asked, "digest": approval_digest(asked), "approved_by": []},
            )
            state = self.states[node.key]
        assert state.due_at is not None  # noqa: S101
        recorded = state.inputs if isinstance(state.inputs, dict) else {}
        approvers = recorded.get("approved_by") or []
        deniers = recorded.get("denied_by") or []
        decision: object | None
        if isinstance(deniers, list) and deniers:  # decided before a restart
            decision = (False, str(deniers[0]), None)
        elif isinstance(approvers, list) and len(approvers) >= approval.min_approvals:
            decision = (True, str(approvers[-1]), None)
        else:
            future = self._approvals.setdefault(
                node.key, asyncio.get_running_loop().create_future()
            )
            decision = await self._first(future, state.due_at)
        self._approvals.pop(node.key, None)
        now = self.engine.clock.now()
        if decision is None:
            if approval.on_timeout is ApprovalTimeout.FAIL:
                await self._fail_final(node, f"nobody decided within {approval.timeout}")
            approved = approval.on_timeout is ApprovalTimeout.APPROVE
            outcome: dict[str, JsonValue] = {
                "approved": approved,
                "timed_out": True,
                "decided_by": [],
                "comment": None,
                "decided_at": jsonable(now),
            }
        else:
            approved, by, comment = cast(tuple[bool, str, str | None], decision)
            latest = self.states[node.key]
            voters = latest.inputs.get("approved_by", []) if isinstance(latest.inputs, dict) else []
            outcome = {
                "approved": approved,
                "timed_out": False,
                "decided_by": voters if approved else [by],
                "comment": comment,
                "decided_at": jsonable(now),
            }
        waited = (now - (state.started_at or now)).total_seconds()
        self.engine.instruments.approval_waited(
            self.run.playbook_id,
            node.key,
            "timed_out" if decision is None else "approved" if approved else "denied",
            waited,
        )
        await self.succeeded(node.key, outcome)

    def _guarded(self, node: StepNode) -> JsonValue:
        """What an approval at `node` binds: the step after it, when that is an action step
        whose `with` renders now, as `{step, action, inputs}`; else None."""
        siblings = self.graph.lists.get(node.list_path, [])
        place = siblings.index(node.key) + 1 if node.key in siblings else len(siblings)
        if place >= len(siblings):
            return None
        guarded = self.graph.nodes[siblings[place]]
        step = guarded.step
        if step.action is None or step.for_each is not None:
            return None
        spec = self.engine.registry.action(step.action)
        if spec is None:
            return None
        try:
            rendered = render(
                self.loaded,
                (*guarded.path, "with"),
                step.with_,
                self.variables(),
                self.engine.clock.now,
            )
            inputs = jsonable(rendered)
        except (EvaluationError, ValueError):  # reads what is not known yet: nothing bound
            return None
        return {"step": guarded.key, "action": spec.qualified_name, "inputs": inputs}

    def _approved_inputs(self, node: StepNode) -> tuple[str, JsonValue] | None:
        """The approval just before `node` that bound its inputs (see `_guarded`), and those
        inputs; None when no approval binds it."""
        siblings = self.graph.lists.get(node.list_path, [])
        place = siblings.index(node.key) if node.key in siblings else 0
        if place == 0:
            return None
        before = self.graph.nodes[siblings[place - 1]]
        approval = self.states.get(before.key)
        if before.step.approval is None or approval is None:
            return None
        asked = approval.inputs if isinstance(approval.inputs, dict) else {}
        guards = asked.get("guards")
        if not isinstance(guards, dict) or guards.get("step") != node.key:
            return None
        return before.key, guards.get("inputs")

    def changed_since_approval(self, node: StepNode, inputs: JsonValue) -> str | None:
        """Why action step `node` may not run with `inputs`: the approval just before it bound
        other inputs; None when no approval binds it or the inputs are those approved."""
        bound = self._approved_inputs(node)
        if bound is None or bound[1] == inputs:
            return None
        approval, approved = bound
        was = approved if isinstance(approved, dict) else {}
        now = inputs if isinstance(inputs, dict) else {}
        changed = sorted(k for k in {*was, *now} if was.get(k) != now.get(k))
        return (
            f"inputs changed since they were approved ({', '.join(changed) or 'inputs'} "
            f"differ from what step {approval!r} asked; a changed input needs a new approval)"
        )

    async def decide(
        self,
        key: str,
        *,
        approved: bool,
        by: str,
        comment: str | None,
        digest: str | None = None,
        answer: str | None = None,
    ) -> None:
        """Record one person's decision on a pending approval; with `answer`, mark that inbox
        item done in the same write.

        Raises:
            ConflictError: no approval is pending under `key`, it is decided already (the step
                is about to record it), or `by` has approved it already.
            ApprovalChanged: `digest` (what the person was shown) is not the pending approval's.
            AccessDenied: the step names its approvers and `by` is not one of them.
        """
        state = self.states.get(key)
        future = self._approvals.get(key)
        node = self.graph.nodes.get(key)
        if (
            state is None
            or state.status is not StepStatus.WAITING
            or node is None
            or node.step.approval is None
        ):
            raise ConflictError(f"no approval is pending at step {key!r} of run {self.run.id}")
        inputs = dict(state.inputs) if isinstance(state.inputs, dict) else {}
        prior = inputs.get("approved_by")
        voters = [v for v in prior if isinstance(v, str)] if isinstance(prior, list) else []
        if inputs.get("denied_by") or len(voters) >= node.step.approval.min_approvals:
            # decided, and the step about to record it: a later decision would count for nothing
            raise ConflictError(f"the approval at step {key!r} of run {self.run.id} is decided")
        pending = inputs.get("digest")
        if digest is not None and digest != pending:
            raise ApprovalChanged(
                self.run.id,
                key,
                given=digest,
                pending=pending if isinstance(pending, str) else None,
            )
        named = node.step.approval.approvers
        if named and by not in named:
            raise AccessDenied(f"{by!r} is not among the approvers of step {key!r}")
        if approved and by in voters:
            raise ConflictError(f"{by!r} has already approved step {key!r} of run {self.run.id}")
        if approved:
            voters.append(by)
        inputs["approved_by"] = list(voters)
        if not approved:
            inputs["denied_by"] = [by]
        await self._commit(
            steps=[replace(state, inputs=inputs)],
            transitions=[
                (
                    TransitionKind.APPROVAL_DECIDED,
                    key,
                    None,
                    {"approved": approved, "by": by, "comment": comment},
                )
            ],
            answered=() if answer is None else (answer,),
        )
        enough = len(voters) >= node.step.approval.min_approvals
        if future is not None and not future.done() and (not approved or enough):
            future.set_result((approved, by, comment))

    async def _run_wait(self, node: StepNode) -> None:
        wait = node.step.wait
        assert wait is not None  # noqa: S101
        if self.run.dry_run:  # a dry run does not wait: it goes on as if the wait had ended
            ended: dict[str, JsonValue] = {
                "timed_out": False,
                "event": None,
                "ended_at": jsonable(self.engine.clock.now()),
            }
            await self.succeeded(node.key, ended)
            return
        state = self.states.get(node.key)
        if state is None:
            now = self.engine.clock.now()
            if wait.duration is not None:
                due = now + wait.duration
            elif wait.until is not None:
                rendered = render(
                    self.loaded,
                    (*node.path, "wait", "until"),
                    wait.until,
                    self.variables(),
                    self.engine.clock.now,
                )
                try:
                    due = _as_time(rendered)
                except EvaluationError as exc:
                    await self._fail_final(node, f"until: {exc.message}")
                    raise AssertionError("unreachable") from None
            else:
                assert wait.timeout is not None  # noqa: S101
                due = now + wait.timeout
            await self._record(
                node.key,
                StepStatus.WAITING,
                TransitionKind.STEP_WAITING,
                due_at=due,
            )
            state = self.states[node.key]
        assert state.due_at is not None  # noqa: S101
        event: object = None
        matched = False
        if wait.match is not None:
            # every alert attached since the run started counts: a resolution that arrived
            # before the wait began must not be missed
            found = self._matching_event(node, self.attached)
            if found is not None:
                matched, event = True, found
            else:
                future: asyncio.Future[JsonValue] = asyncio.get_running_loop().create_future()
                self._event_waiters.append((node.key, future))
                result = await self._first(future, state.due_at)
                self._event_waiters = [w for w in self._event_waiters if w[1] is not future]
                if result is not None:
                    matched, event = True, result[0] if isinstance(result, tuple) else result
        else:
            await self.pause_until(state.due_at)
        timed_out = wait.match is not None and not matched
        if timed_out and wait.on_timeout is WaitTimeout.FAIL:
            await self._fail_final(node, f"no matching alert or event within {wait.timeout}")
        outcome: dict[str, JsonValue] = {
            "timed_out": timed_out,
            "event": cast(JsonValue, event),
            "ended_at": jsonable(self.engine.clock.now()),
        }
        await self.succeeded(node.key, outcome)

    def _matching_event(
        self, node: StepNode, candidates: Sequence[AttachedAlert]
    ) -> JsonValue | None:
        expression = self.loaded.expressions.get((*node.path, "wait", "match"))
        if expression is None:
            return None
        for attached in candidates:
            variables = {**self.variables(), "event": _event_context(attached.alert)}
            try:
                if expression.evaluate(variables, clock=self.engine.clock.now):
                    return attached.alert
            except EvaluationError:
                continue  # an event of another shape does not match
        return None

    async def attach(
        self, event: JsonValue, *, marker: DedupEntry | None = None, answer: str | None = None
    ) -> None:
        """A later alert or event joined the run: record it (with `marker`, the entry that
        says its delivery joined this run; with `answer`, the inbox item that brought it, done)
        and wake matching waits."""
        seq = (self.attached[-1].seq if self.attached else 0) + 1
        attached = AttachedAlert(self.run.id, seq, event)
        await self._commit(
            alerts=[attached],
            transitions=[(TransitionKind.ALERT_ATTACHED, None, None, {"seq": seq})],
            dedup=() if marker is None else (marker,),
            answered=() if answer is None else (answer,),
        )
        self.attached.append(attached)
        for key, future in list(self._event_waiters):
            node = self.graph.nodes[key]
            if not future.done() and self._matching_event(node, [attached]) is not None:
                future.set_result(event)
        if _is_resolution(event):
            self._resolved.set()

    @property
    def aborting(self) -> bool:
        """Whether an abort was requested (the run stops, or has stopped)."""
        return self._aborting.is_set()

    async def abort(self, reason: str, *, actor: str = ENGINE, answer: str | None = None) -> bool:
        """Stop the run: no new steps, pending waits end, completed steps are compensated.
        With `answer`, that inbox item is marked done in the same write. Returns False, writing
        nothing, when the run has ended or is being aborted already."""
        if self.run.status.is_terminal or self._aborting.is_set():
            return False
        await self._record(
            ABORT_KEY,
            StepStatus.SUCCEEDED,
            TransitionKind.RUN_ABORT_REQUESTED,
            output={"reason": reason},
            data={"reason": reason},
            actor=actor,
            answered=() if answer is None else (answer,),
        )
        self._aborting.set()
        return True

    async def pause_until(self, moment: datetime) -> None:
        """Sleep until `moment` (durably recorded by the caller); RunAborted on abort."""
        never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._first(never, moment)

    async def _first(
        self,
        future: asyncio.Future[Any],
        due: datetime,
    ) -> object | None:
        """The future's result, or None when `due` passes first; RunAborted on abort."""
        await self.flush()
        timer = asyncio.create_task(self.engine.clock.sleep_until(due))
        abort = asyncio.create_task(self._aborting.wait())
        try:
            waiting: set[asyncio.Future[Any]] = {future, timer, abort}
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            abort.cancel()
        if future in done:
            result: object = future.result()
            return result
        if abort in done:
            raise RunAborted
        return None

    # -- escalation ----------------------------------------------------------------------------

    async def _escalation(self, index: int) -> None:
        if self.run.dry_run:
            return  # a dry run takes no time, so no escalation falls due
        rung = self.loaded.playbook.escalate[index]
        list_path: Path = ("escalate", index, "steps")
        keys = self.graph.lists.get(list_path, [])
        fired = any(k in self.states for k in keys)
        if not fired:
            due = self.run.created_at + rung.after
            resolved = asyncio.create_task(self._resolved.wait())
            try:
                timer = asyncio.create_task(self.engine.clock.sleep_until(due))
                done, _ = await asyncio.wait({timer, resolved}, return_when=asyncio.FIRST_COMPLETED)
                timer.cancel()
            finally:
                resolved.cancel()
            if resolved in done or self._resolved.is_set():
                return
            expression = self.loaded.expressions.get(("escalate", index, "unless"))
            if expression is not None:
                try:
                    if expression.evaluate(self.variables(), clock=self.engine.clock.now):
                        return
                except EvaluationError as exc:
                    _log.warning(
                        "run %s: escalation %d unless failed: %s", self.run.id, index, exc.message
                    )
            await self._commit(
                transitions=[(TransitionKind.ESCALATION_FIRED, None, None, {"rung": index})]
            )
        try:
            await self._run_list(list_path)
            await self.flush()
        except (StepFailed, EndRun) as exc:
            _log.warning("run %s: escalation %d failed: %s", self.run.id, index, exc)

    # -- compensation ------------------------------------------------------------------------

    async def _compensate(self) -> None:
        done = [
            state
            for state in self.states.values()
            if state.status in (StepStatus.SUCCEEDED, StepStatus.COMPENSATING)
            and (node := self.graph.nodes.get(node_key_of(state.key))) is not None
            and node.step.compensate is not None
            and node.region is Region.MAIN
            and not (node.step.for_each is not None and state.key == node.key)
        ]
        for state in sorted(done, key=lambda s: s.order, reverse=True):
            await self._attempts.compensate(self.graph.nodes[node_key_of(state.key)], state)

    # -- state and writes ----------------------------------------------------------------------

    def variables(
        self, *, item: JsonValue = None, index: int | None = None, with_item: bool = False
    ) -> dict[str, object]:
        """The names expressions read in this run (built once, refreshed when the run or its
        attached alerts change; `steps` is the live view)."""
        if self._variables is None:
            playbook = self.loaded.playbook
            self._variables = {
                "alert": self._alert,
                "alerts": [_event_context(a.alert) for a in self.attached],
                "steps": self.view,
                "run": run_view(self.run),
                "inputs": self.run.inputs,
                "playbook": {"id": playbook.id, "name": playbook.name, "version": playbook.version},
                "directory": self.engine.directory,
            }
            if "_event" in self.run.inputs:
                self._variables["event"] = _event_context(self.run.inputs["_event"])
        if not with_item:
            return self._variables
        return {**self._variables, "item": item, "index": index}

    def _alert_context(self) -> dict[str, object]:
        if isinstance(self.run.alert, dict):
            try:
                return Alert.model_validate(self.run.alert).context()
            except ValueError:
                return dict(self.run.alert)
        return {}

    def _rebuild_view(self) -> None:
        self.view.clear()
        for key, state in self.states.items():
            node = self.graph.nodes.get(key)
            if node is not None and node.named:
                self.view[key] = step_view(state)
                if state.status is StepStatus.SKIPPED:
                    for inner in self.graph.descendants(node):
                        self.view.setdefault(inner, skipped_view())

    async def _skip(self, node: StepNode) -> None:
        await self._record(node.key, StepStatus.SKIPPED, TransitionKind.STEP_SKIPPED)
        for inner in self.graph.descendants(node):
            if self.graph.nodes[inner].named:
                self.view.setdefault(inner, skipped_view())

    async def _record(
        self,
        key: str,
        status: StepStatus,
        kind: TransitionKind,
        *,
        inputs: JsonValue = None,
        output: JsonValue = None,
        error: str | None = None,
        attempt: int | None = None,
        due_at: datetime | None = None,
        data: JsonValue = None,
        keep_inputs: bool = True,
        defer: bool = False,
        actor: str = ENGINE,
        answered: Sequence[str] = (),
    ) -> StepState:
        """Write one step transition (durably), then make it the step's known state; with
        `answered`, those inbox items are marked done (`{"ok": true}`) in the same write.

        With `defer`, the transition is held and written together with the run's next write
        (the next step's start, a wait, the run's end), which the caller makes before anything
        else happens: the next action is never called before it is durable, and a crash before
        that write only repeats this step under the same idempotency key.
        """
        now = self.engine.clock.now()
        previous = self.states.get(key)
        finished = status.is_finished and status is not StepStatus.CANCELLED
        if finished and status is StepStatus.SUCCEEDED:
            self.order += 1
        state = StepState(
            run_id=self.run.id,
            key=key,
            status=status,
            attempt=attempt if attempt is not None else (previous.attempt if previous else 0),
            idempotency_key=previous.idempotency_key if previous else f"{self.run.id}:{key}",
            inputs=inputs
            if inputs is not None or not keep_inputs
            else (previous.inputs if previous else None),
            output=output,
            error=error,
            started_at=previous.started_at if previous and previous.started_at else now,
            finished_at=now if finished else None,
            due_at=due_at,
            order=self.order
            if status is StepStatus.SUCCEEDED
            else (previous.order if previous else 0),
        )
        detail: dict[str, JsonValue] = (
            {} if data is None else dict(data) if isinstance(data, dict) else {"data": data}
        )
        if error is not None:
            detail["error"] = error
        if due_at is not None:
            detail["due_at"] = jsonable(due_at)
        evidence = self.engine.evidence
        event: AuditEvent | None = None
        if defer and kind is TransitionKind.STEP_STARTED and evidence.enabled:
            self._unannounced[key] = actor  # made in `_commit` if written before its outcome
        else:
            announce = bool(self._unannounced) and self._unannounced.pop(key, None) is not None
            event = evidence.step(
                self.run, kind, state, self.acting.get(key), detail, actor=actor, announce=announce
            )
        if finished and kind in _MEASURED and not self.run.dry_run:
            self.engine.instruments.step_finished(
                self.run.playbook_id,
                self.run.playbook_version,
                node_key_of(key),
                "retrying" if status is StepStatus.RUNNING else status._value_,
                (now - state.started_at).total_seconds() if state.started_at else 0.0,
            )
        if defer:
            self.seq += 1
            record = Transition(self.run.id, self.seq, now, kind, key, attempt, detail or None)
            self._held_steps.append(state)
            self._held_transitions.append(record)
            if event is not None:
                self._held_audit.append(event)
            elif key in self._unannounced:
                self._held_audit.append(key)  # where its step.started goes, if it is made
            self._know(state)
            self.engine.notify(self, [record])
            return state
        await self._commit(
            steps=[state],
            transitions=[(kind, key, attempt, detail or None)],
            audit=() if event is None else (event,),
            answered=answered,
        )
        return state

    async def succeeded(
        self,
        key: str,
        output: JsonValue,
        *,
        attempt: int | None = None,
        data: JsonValue = None,
        defer: bool = False,
    ) -> StepState:
        """Record that step instance `key` succeeded with `output`."""
        return await self._record(
            key,
            StepStatus.SUCCEEDED,
            TransitionKind.STEP_SUCCEEDED,
            output=output,
            attempt=attempt,
            data=data,
            defer=defer,
        )

    async def started(
        self, key: str, inputs: JsonValue, attempt: int, *, defer: bool = False
    ) -> StepState:
        """Record that attempt `attempt` of step instance `key` starts, with its inputs.

        With `defer` (an idempotent action), the start is written with the run's next write:
        the attempt's outcome, or `flush_soon` once the call is under way.
        """
        return await self._record(
            key,
            StepStatus.RUNNING,
            TransitionKind.STEP_STARTED,
            inputs=inputs,
            attempt=attempt,
            defer=defer,
        )

    def plan(self, key: str, action: str, target: str, value: JsonValue, inputs: JsonValue) -> None:
        """Note an effect a dry run would have had."""
        self.effects.append(
            {
                "step": key,
                "action": action,
                "target": target,
                "target_value": value,
                "inputs": inputs,
            }
        )

    async def flush(self) -> None:
        """Write what `defer` held back (and the run's own record, if still unwritten)."""
        if self._held_transitions or self._creation is not None:
            await self._commit()

    def flush_soon(self) -> asyncio.Task[None] | None:
        """Start writing what is held, beside an action call that has paused for I/O: the write
        costs the call no time, and a run whose action is in flight shows it in the store.

        The write is queued before the call can resume, so it lands before the call's outcome;
        the caller awaits the task (its failure is the caller's) before recording that outcome.
        """
        if not self._held_transitions and self._creation is None:
            return None
        task = asyncio.ensure_future(self.flush())
        task.add_done_callback(_consume)
        return task

    def _know(self, state: StepState) -> None:
        self.states[state.key] = state
        node = self.graph.nodes.get(state.key)
        if node is not None and node.named:
            self.view[state.key] = step_view(state)

    async def _commit(
        self,
        *,
        steps: Sequence[StepState] = (),
        transitions: Sequence[tuple[TransitionKind, str | None, int | None, JsonValue]] = (),
        alerts: Sequence[AttachedAlert] = (),
        run: Run | None = None,
        also: Sequence[tuple[Run, Transition]] = (),
        audit: Sequence[AuditEvent] = (),
        dedup: Sequence[DedupEntry] = (),
        answered: Sequence[str] = (),
    ) -> None:
        """Write this run's changes (and, with `also`, new runs started by them) atomically,
        with their audit events: a step's come from `_record`, the run's are made here. The
        inbox items `answered` are marked done in the same write, and the run's last write
        closes whatever requests are still pending for it."""
        now = self.engine.clock.now()
        held_steps, self._held_steps = self._held_steps, []
        held, self._held_transitions = self._held_transitions, []
        held_audit, self._held_audit = self._held_audit, []
        events = self._announced(held_audit) if held_audit else []
        if audit:
            events.extend(audit)
        evidence = self.engine.evidence
        records = []
        for kind, step, attempt, data in transitions:
            self.seq += 1
            records.append(Transition(self.run.id, self.seq, now, kind, step, attempt, data))
            if kind in RUN_LEVEL and evidence.enabled:
                event = evidence.run(run or self.run, kind, now, step, data)
                if event is not None:
                    events.append(event)
        for started, _ in also:
            event = evidence.run(started, TransitionKind.RUN_STARTED, now, None, None)
            if event is not None:
                events.append(event)
        creation, self._creation = self._creation, None
        if held_steps:
            held_steps = _latest(held_steps)
        fence = [(self.run.id, self.token)]
        done: list[tuple[str, datetime, JsonValue]] = [(a, now, {"ok": True}) for a in answered]
        if creation is None and run is None and not (also or alerts or dedup):  # a step write
            change = Change(
                steps=[*held_steps, *steps] if held_steps else list(steps),
                transitions=held + records if held else records,
                audit=events,
                fence=fence,
                inbox_done=done,
            )
        else:
            change = self._change(creation, held_steps, steps, held, records, alerts, run, also)
            change.dedup.extend(dedup)
            change.audit = [*(creation.audit if creation else []), *events]
            change.fence = fence
            worker = self.engine.worker_id
            change.leases.extend(Lease(r.id, worker, 1, 0) for r, _ in also)
            change.inbox_done = done
            if run is not None and run.status.is_terminal:  # the run ends: nobody holds it
                change.leases.append(Lease(self.run.id, "", self.token, self.token))
                ended = f"run {self.run.id} has already {run.status.value}"
                change.close_inbox.append(
                    (self.run.id, now, {"ok": False, "code": "conflict", "error": ended})
                )
        try:
            await self.engine.store.apply(change)
        except BaseException as exc:
            if creation is not None and not self.created.done():
                self.created.set_exception(
                    exc if isinstance(exc, Exception) else StoreError("stopped")
                )
            raise
        if creation is not None and not self.created.done():
            self.created.set_result(None)
        for state in steps:
            self._know(state)
        if run is not None:
            self.run = run
            self._variables = None
        if alerts:
            self._variables = None
        self.engine.notify(self, records)

    def _announced(self, held: list[AuditEvent | str]) -> list[AuditEvent]:
        """Held audit events, with a step.started made for each start written without its
        outcome (the outcome's own record then leaves the inputs out)."""
        events: list[AuditEvent] = []
        for item in held:
            if not isinstance(item, str):
                events.append(item)
                continue
            actor = self._unannounced.pop(item, None)
            state = self.states.get(item)
            if actor is None or state is None:
                continue  # its outcome came first and carries everything
            event = self.engine.evidence.step(
                self.run, TransitionKind.STEP_STARTED, state, self.acting.get(item), {}, actor=actor
            )
            if event is not None:
                events.append(event)
        return events

    @staticmethod
    def _change(
        creation: Change | None,
        held_steps: Sequence[StepState],
        steps: Sequence[StepState],
        held: Sequence[Transition],
        records: Sequence[Transition],
        alerts: Sequence[AttachedAlert],
        run: Run | None,
        also: Sequence[tuple[Run, Transition]],
    ) -> Change:
        """A write that carries more than step transitions: a run record, new runs, alerts."""
        return Change(
            runs=[
                *(creation.runs if creation else []),
                *([run] if run else []),
                *(r for r, _ in also),
            ],
            steps=[*held_steps, *steps],
            transitions=[
                *(creation.transitions if creation else []),
                *held,
                *records,
                *(t for _, t in also),
            ],
            alerts=list(alerts),
            dedup=list(creation.dedup) if creation else [],
            cron_marks=creation.cron_marks if creation else {},
            leases=list(creation.leases) if creation else [],
        )

    async def _set_run(
        self,
        status: RunStatus,
        error: str | None,
        *,
        kind: TransitionKind | None = None,
        also: Sequence[tuple[Run, Transition]] = (),
    ) -> None:
        run = replace(self.run, status=status, error=error, updated_at=self.engine.clock.now())
        transitions: list[tuple[TransitionKind, str | None, int | None, JsonValue]] = (
            [(kind, None, None, {"status": status.value, "error": error})] if kind else []
        )
        await self._commit(run=run, transitions=transitions, also=also)


_MEASURED: Final = frozenset(
    (TransitionKind.STEP_SUCCEEDED, TransitionKind.STEP_FAILED, TransitionKind.STEP_SKIPPED)
)
RUN_LEVEL: Final = frozenset(
    (TransitionKind.RUN_FINISHED, TransitionKind.APPROVAL_DECIDED, TransitionKind.RUN_RETRIED)
)
"""Transitions whose audit event `_commit` makes (a step's are made by `_record`)."""


def approval_digest(asked: dict[str, JsonValue]) -> str:
    """The digest of what an approval asks (`message`, `group`, `approvers`, `guards`):
    "sha256:" and the hex SHA-256 of its canonical JSON (sorted keys, no spaces, UTF-8)."""
    text = json.dumps(asked, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


async def _cancel_all(tasks: Iterable[asyncio.Task[None]]) -> None:
    pending = list(tasks)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def _event_context(value: JsonValue) -> object:
    """An attached alert or event as expressions read it: normalised alerts, and events that
    carry a `severity`, keep severity ordering."""
    if isinstance(value, dict) and "format" in value and "raw" in value:
        try:
            return Alert.model_validate(value).context()
        except ValueError:
            return value
    if isinstance(value, dict) and isinstance(value.get("severity"), str):
        try:
            return {**value, "severity": Severity.parse(value["severity"])}
        except ValueError:
            return value
    return value


def _is_resolution(event: JsonValue) -> bool:
    """An attached alert or event saying the condition cleared (Alertmanager `resolved`, ...)."""
    if not isinstance(event, dict):
        return False
    if "format" in event and event.get("status") == "resolved":  # a normalised alert says so
        return True
    raw = event.get("raw") if isinstance(event.get("raw"), dict) else event
    assert isinstance(raw, dict)  # noqa: S101
    status = raw.get("status")
    return (isinstance(status, str) and status.lower() in ("resolved", "closed")) or raw.get(
        "resolved"
    ) is True


def _as_time(value: object) -> datetime:
    from soar.playbook.expr.timefunctions import timestamp

    return timestamp(value)


def _latest(states: list[StepState]) -> list[StepState]:
    """Each step's last held state: a deferred start and its outcome make one row."""
    if len(states) == 1:
        return states
    return list({state.key: state for state in states}.values())


def _consume(task: asyncio.Task[None]) -> None:
    """Retrieve a background write's failure: the awaiting attempt reports it, or the run
    was stopped and its next start finds the store as it is."""
    if not task.cancelled():
        task.exception()
