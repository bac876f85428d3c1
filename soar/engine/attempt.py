"""Attempts of one action (or sub-playbook) call: started, called, succeeded or failed, retried
after a durable backoff; and the compensation that undoes it."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Coroutine, Generator
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, JsonValue, ValidationError

from soar.connectors.action import ActionSpec
from soar.connectors.context import ActionContext
from soar.engine.backoff import retry_delay
from soar.engine.evidence import LOG_FILTER
from soar.engine.guards import CircuitOpen
from soar.engine.outputs import placeholder_output
from soar.engine.scope import jsonable, render
from soar.errors import ActionFailed, EvaluationError
from soar.models.run import StepState, StepStatus, TransitionKind
from soar.playbook.graph import StepNode
from soar.telemetry.tracing import ACTION, ATTEMPT, OUTCOME, PLAYBOOK, RUN_ID, STEP, VERSION

if TYPE_CHECKING:
    from soar.engine.executor import RunExecutor

_log = logging.getLogger("soar.engine")
_COMPENSATION_ATTEMPTS = 3


class AttemptFailed(Exception):
    """The action failed for good (after its retries)."""

    def __init__(self, error: str, *, retryable: bool, retry_after: float | None = None) -> None:
        self.error = error
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(error)


class Attempts:
    """Issues the attempts of a run's action steps."""

    def __init__(self, executor: RunExecutor) -> None:
        self.executor = executor

    async def run(self, node: StepNode, key: str, *, item: JsonValue, index: int | None) -> None:
        """Run the step instance `key` to success, or raise AttemptFailed."""
        ex = self.executor
        step = node.step
        state = ex.states.get(key)
        if state is not None and state.status.is_finished:
            if state.status is StepStatus.FAILED:
                raise AttemptFailed(state.error or "failed", retryable=False)
            return
        if step.playbook is not None:
            await ex.engine.run_child(ex, node, key, item=item, index=index)
            return
        assert step.action is not None  # noqa: S101
        spec = ex.engine.registry.action(step.action)
        if spec is None:
            await self._fail(key, f"action {step.action!r} is not installed", attempt=0)
        assert spec is not None  # noqa: S101
        inputs: JsonValue
        if state is not None and isinstance(state.inputs, dict):
            inputs = state.inputs
        else:
            try:
                rendered = render(
                    ex.loaded,
                    (*node.path, "with"),
                    step.with_,
                    ex.variables(item=item, index=index, with_item=index is not None),
                    ex.engine.clock.now,
                )
                inputs = jsonable(rendered)
            except (EvaluationError, ValueError) as exc:
                await self._fail(key, f"inputs: {getattr(exc, 'message', exc)}", attempt=0)
        assert isinstance(inputs, dict)  # noqa: S101
        attempt = state.attempt if state is not None else 0
        if state is not None and state.status is StepStatus.RUNNING:
            if state.due_at is not None:  # a retry was due when the worker stopped
                await ex.pause_until(state.due_at)
            elif spec.verify is not None and not ex.run.dry_run:
                # the attempt was in flight when the worker stopped: did it take effect?
                found = await self._verify(spec, inputs, state)
                if found is not None:
                    await ex.succeeded(key, found, attempt=attempt, data={"verified": True})
                    return
        policy = step.retry
        timeout = step.timeout or spec.timeout
        ex.acting[key] = spec
        while True:
            attempt += 1
            # an idempotent action's start may be written with its outcome: a crash before
            # that write only issues it again, under the same key, which it declares safe
            state = await ex.started(
                key, inputs, attempt, defer=spec.idempotent and not ex.run.dry_run
            )
            if ex.run.dry_run and spec.pure:  # nothing to plan: compute it, as a live run would
                try:
                    output = await self._call(spec, inputs, key, timeout.total_seconds(), attempt)
                except AttemptFailed as failure:
                    await self._fail(key, failure.error, attempt=attempt)
                await ex.succeeded(key, output, attempt=attempt, data={"dry_run": True})
                return
            if ex.run.dry_run:
                output = placeholder_output(spec.output_schema, f"steps.{key}.output")
                target = inputs.get(spec.target_field) if spec.target_field else None
                ex.plan(key, spec.qualified_name, spec.target.value, target, inputs)
                await ex.succeeded(key, output, attempt=attempt, data={"dry_run": True})
                return
            try:
                output = await self._traced(
                    spec, inputs, key, state.idempotency_key, timeout.total_seconds(), attempt
                )
            except AttemptFailed as failure:
                ex.engine.instruments.connector_error(spec.connector, spec.name, failure.retryable)
                if (
                    policy is not None
                    and attempt < policy.attempts
                    and (failure.retryable or policy.on == "any")
                ):
                    due = ex.engine.clock.now() + retry_delay(
                        policy, attempt, rng=ex.engine.rng, retry_after=failure.retry_after
                    )
                    await ex._record(
                        key,
                        StepStatus.RUNNING,
                        TransitionKind.STEP_FAILED,
                        error=failure.error,
                        attempt=attempt,
                        due_at=due,
                        data={"retryable": failure.retryable, "retry_at": jsonable(due)},
                    )
                    await ex.pause_until(due)  # an abort ends the wait
                    continue
                await ex._record(
                    key,
                    StepStatus.FAILED,
                    TransitionKind.STEP_FAILED,
                    error=failure.error,
                    attempt=attempt,
                    data={"retryable": failure.retryable},
                )
                raise
            # written with the run's next write, before anything else happens
            await ex.succeeded(key, output, attempt=attempt, defer=True)
            return

    async def _fail(self, key: str, error: str, *, attempt: int) -> None:
        await self.executor._record(
            key, StepStatus.FAILED, TransitionKind.STEP_FAILED, error=error, attempt=attempt
        )
        raise AttemptFailed(error, retryable=False)

    def _context(self, spec: ActionSpec, key: str, limit: float | None = None) -> ActionContext:
        engine = self.executor.engine
        return ActionContext(
            idempotency_key=key,
            settings=engine.connector_settings(spec.connector),
            secrets=engine.secrets_for(spec),
            logger=_logger(spec.qualified_name),
            clock=engine.clock.now,
            dry_run=self.executor.run.dry_run,
            deadline=None if limit is None else time.monotonic() + limit,
        )

    def _clean(self, output: JsonValue) -> JsonValue:
        """An output with every configured secret value hidden, before it is stored."""
        return self.executor.engine.evidence.hide_secrets(output)

    def _redacted(self, failure: AttemptFailed) -> AttemptFailed:
        """The failure with every secret value hidden: its text goes to the run's record, the
        audit log and the trace."""
        error = self.executor.engine.evidence.hide_secrets(failure.error)
        if error == failure.error:
            return failure
        return AttemptFailed(
            str(error), retryable=failure.retryable, retry_after=failure.retry_after
        )

    async def _traced(
        self,
        spec: ActionSpec,
        inputs: dict[str, JsonValue],
        step: str,
        key: str,
        limit: float,
        attempt: int,
    ) -> JsonValue:
        """`_call` inside a `soar.engine.step` span with a `soar.connector.call` span in it,
        when tracing is on; both are children of the run's root span."""
        ex = self.executor
        tracing = ex.engine.tracing
        if not tracing.enabled:
            return await self._guarded(spec, inputs, key, limit, attempt)
        attributes: dict[str, str | int | bool] = {
            PLAYBOOK: ex.run.playbook_id,
            VERSION: ex.run.playbook_version,
            RUN_ID: ex.run.id,
            STEP: step,
            ACTION: spec.qualified_name,
            ATTEMPT: attempt,
        }
        with tracing.span("soar.engine.step", ex.trace_ref, attributes) as span:
            try:
                call_attributes: dict[str, str | int | bool] = {
                    ACTION: spec.qualified_name,
                    ATTEMPT: attempt,
                }
                with tracing.span("soar.connector.call", span.ref, call_attributes):
                    output = await self._guarded(spec, inputs, key, limit, attempt)
            except AttemptFailed as failure:
                span.set(OUTCOME, "retryable" if failure.retryable else "failed")
                raise
            span.set(OUTCOME, "succeeded")
            return output

    async def _guarded(
        self, spec: ActionSpec, inputs: dict[str, JsonValue], key: str, limit: float, attempt: int
    ) -> JsonValue:
        """`_call` behind the connector's guards: a cached output of a read-only action, its
        rate limit, its circuit breaker (see `guards`)."""
        guards = self.executor.engine.guards
        hit, output = guards.cached(spec, inputs)
        if hit:
            return output
        try:
            await guards.pace(spec.connector)
        except CircuitOpen as exc:
            raise AttemptFailed(str(exc), retryable=True, retry_after=exc.retry_in) from None
        try:
            output = await self._call(spec, inputs, key, limit, attempt)
        except AttemptFailed as failure:
            guards.record(spec.connector, ok=not failure.retryable)
            raise
        guards.record(spec.connector, ok=True)
        guards.remember(spec, inputs, output)
        return output

    async def _call(
        self, spec: ActionSpec, inputs: dict[str, JsonValue], key: str, limit: float, attempt: int
    ) -> JsonValue:
        try:
            params = spec.input_model.model_validate(inputs)
        except ValidationError as exc:
            fields = ", ".join(".".join(str(p) for p in e["loc"]) or "inputs" for e in exc.errors())
            raise AttemptFailed(
                f"inputs do not fit {spec.qualified_name}: {fields}", retryable=False
            ) from None
        call = spec.fn(self._context(spec, key, limit), params)
        if isinstance(call, Coroutine):
            try:
                # run the action up to its first pause here: most finish without one, and
                # then need no task, no timer and no trip round the event loop
                first = call.send(None)
            except StopIteration as stop:
                return self._clean(_output(spec, stop.value))
            except BaseException as exc:
                raise self._redacted(_failure(exc, spec, attempt)) from None
            flushing = self.executor.flush_soon()
            task = asyncio.ensure_future(_resume(call, first))
        else:
            flushing = self.executor.flush_soon()
            task = asyncio.ensure_future(call)
        try:
            done = await _within(task, limit)
            if flushing is not None:
                await flushing
        except asyncio.CancelledError:
            task.cancel()  # the worker is stopping: the attempt's outcome stays unknown
            raise
        if not done:
            task.cancel()
            self.executor.engine.abandon(task)  # an action that ignores cancellation runs on alone
            raise AttemptFailed(f"timed out after {limit:g}s", retryable=True)
        try:
            result = task.result()
        except BaseException as exc:
            raise self._redacted(_failure(exc, spec, attempt)) from None
        return self._clean(_output(spec, result))

    async def _verify(
        self, spec: ActionSpec, inputs: dict[str, JsonValue], state: StepState
    ) -> JsonValue | None:
        assert spec.verify is not None  # noqa: S101
        try:
            params = spec.input_model.model_validate(inputs)
            found = await spec.verify(self._context(spec, state.idempotency_key), params)
        except Exception as exc:  # a probe that fails tells us nothing: issue the attempt again
            _log.warning("%s verify failed: %s", spec.qualified_name, type(exc).__name__)
            return None
        return None if found is None else _output(spec, found)

    async def compensate(self, node: StepNode, done: StepState) -> None:
        """Undo one completed step instance with its `compensate` action (a few attempts)."""
        ex = self.executor
        compensation = node.step.compensate
        assert compensation is not None  # noqa: S101
        key = f"{done.key}~compensate"
        previous = ex.states.get(key)
        if previous is not None and previous.status.is_finished:
            return
        spec = ex.engine.registry.action(compensation.action)
        index = int(done.key[len(node.key) + 1 : -1]) if done.key != node.key else None
        item = None
        if index is not None:
            parent = ex.states.get(node.key)
            items = (
                parent.inputs.get("items", [])
                if parent is not None and isinstance(parent.inputs, dict)
                else []
            )
            item = items[index] if isinstance(items, list) and index < len(items) else None
        await ex._record(
            done.key,
            StepStatus.COMPENSATING,
            TransitionKind.COMPENSATION_STARTED,
            output=done.output,
            attempt=done.attempt,
        )
        try:
            if spec is None:
                raise AttemptFailed(
                    f"action {compensation.action!r} is not installed", retryable=False
                )
            inputs: JsonValue
            if previous is not None and isinstance(previous.inputs, dict):
                inputs = previous.inputs
            else:
                try:
                    variables = ex.variables(item=item, index=index, with_item=index is not None)
                    rendered = render(
                        ex.loaded,
                        (*node.path, "compensate", "with"),
                        compensation.with_,
                        variables,
                        ex.engine.clock.now,
                    )
                    inputs = jsonable(rendered)
                except (EvaluationError, ValueError) as exc:
                    raise AttemptFailed(
                        f"compensation inputs: {getattr(exc, 'message', exc)}", retryable=False
                    ) from None
            assert isinstance(inputs, dict)  # noqa: S101
            timeout = (compensation.timeout or spec.timeout).total_seconds()
            attempt = previous.attempt if previous is not None else 0
            ex.acting[key] = spec
            while True:
                attempt += 1
                state = await ex.started(key, inputs, attempt)
                if ex.run.dry_run:
                    ex.plan(key, spec.qualified_name, spec.target.value, None, inputs)
                    output: JsonValue = None
                    break
                try:
                    output = await self._traced(
                        spec, inputs, key, state.idempotency_key, timeout, attempt
                    )
                    break
                except AttemptFailed as failure:
                    if failure.retryable and attempt < _COMPENSATION_ATTEMPTS:
                        continue
                    await ex._record(
                        key,
                        StepStatus.FAILED,
                        TransitionKind.STEP_FAILED,
                        error=failure.error,
                        attempt=attempt,
                    )
                    raise
            await ex.succeeded(key, output, attempt=attempt)
        except AttemptFailed as failure:
            await ex._record(
                done.key,
                StepStatus.SUCCEEDED,
                TransitionKind.COMPENSATION_FAILED,
                output=done.output,
                error=failure.error,
                attempt=done.attempt,
            )
            return
        await ex._record(
            done.key,
            StepStatus.COMPENSATED,
            TransitionKind.STEP_COMPENSATED,
            output=done.output,
            attempt=done.attempt,
        )


def _failure(exc: BaseException, spec: ActionSpec, attempt: int) -> AttemptFailed:
    """What an action's exception means for the attempt; never decided by message text."""
    if isinstance(exc, ActionFailed):
        return AttemptFailed(str(exc), retryable=exc.retryable, retry_after=exc.retry_after)
    if isinstance(exc, asyncio.CancelledError):
        return AttemptFailed("cancelled", retryable=True)
    if not isinstance(exc, Exception):
        raise exc  # KeyboardInterrupt, SystemExit: not the action's failure to report
    # the worker's step loop: a failed attempt, never a dead worker
    _log.warning("%s attempt %d raised %s", spec.qualified_name, attempt, type(exc).__name__)
    return AttemptFailed(f"{type(exc).__name__}: {exc}", retryable=False)


async def _resume(coro: Coroutine[Any, Any, BaseModel], first: object) -> BaseModel:
    """Finish, as a task, an action coroutine that has already run up to its first pause."""
    return await _Continue(coro, first)


class _Continue:
    """An awaitable that hands the paused coroutine's pending future to the task driving it,
    then keeps sending and throwing into the coroutine exactly as a task would."""

    def __init__(self, coro: Coroutine[Any, Any, BaseModel], first: object) -> None:
        self._coro = coro
        self._first = first

    def __await__(self) -> Generator[Any, Any, BaseModel]:
        pending = self._first
        while True:
            try:
                sent = yield pending
            except GeneratorExit:
                self._coro.close()
                raise
            except BaseException as exc:
                try:
                    pending = self._coro.throw(exc)
                except StopIteration as stop:
                    result: BaseModel = stop.value
                    return result
            else:
                try:
                    pending = self._coro.send(sent)
                except StopIteration as stop:
                    done: BaseModel = stop.value
                    return done


@functools.cache
def _logger(action: str) -> logging.Logger:
    logger = logging.getLogger(f"soar.action.{action}")
    logger.addFilter(LOG_FILTER)
    return logger


async def _within(task: asyncio.Future[Any], limit: float) -> bool:
    """Whether `task` ends within `limit` seconds (it is not cancelled here)."""
    if task.done():
        return True
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[bool] = loop.create_future()

    def settle(result: bool) -> None:
        if not waiter.done():
            waiter.set_result(result)

    task.add_done_callback(lambda _: settle(True))
    timer = loop.call_later(limit, settle, False)
    try:
        return await waiter
    finally:
        timer.cancel()


def _output(spec: ActionSpec, result: BaseModel) -> JsonValue:
    if not isinstance(result, spec.output_model):
        try:
            result = spec.output_model.model_validate(result)
        except ValidationError as exc:
            raise AttemptFailed(
                f"{spec.qualified_name} returned output that does not fit its schema "
                f"({exc.error_count()} problems)",
                retryable=False,
            ) from None
    dumped = result.model_dump(mode="json", by_alias=True)
    assert isinstance(dumped, dict)  # noqa: S101
    return dumped
