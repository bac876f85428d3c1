"""Fewer calls to the systems soar acts on: read-only outputs reused, calls paced, and a failing
connector given a rest, across the runs of one engine."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest
from pydantic import BaseModel

from soar.config import ConnectorLimits
from soar.connectors import ActionContext, ActionFailed, Connector, Registry
from soar.connectors.core import core
from soar.engine import Engine, FakeClock
from soar.engine.guards import CircuitBreaker, CircuitOpen, TokenBucket
from soar.models.run import RunStatus
from soar.playbook.validate import validate_text
from soar.store.memory import MemoryStore

SECRET = "canary-guard-7f2a"  # noqa: S105 - the canary, on purpose


class Who(BaseModel):
    user: str


class Seen(BaseModel):
    user: str
    note: str = ""


def directory(calls: Counter[str], *, failing: set[str]) -> Connector:
    dirc = Connector("dir", doc="a directory that counts its calls")

    @dirc.action(cache_ttl=timedelta(seconds=60), secrets=["token"])
    async def lookup(ctx: ActionContext, params: Who) -> Seen:
        calls[f"lookup:{params.user}"] += 1
        if params.user in failing:
            raise ActionFailed("directory unavailable", retryable=True)
        note = ctx.secrets["token"] if params.user == "leaky" else ""
        return Seen(user=params.user, note=note)

    @dirc.action(idempotent=True)
    async def disable(ctx: ActionContext, params: Who) -> Seen:
        calls[f"disable:{params.user}"] += 1
        if params.user in failing:
            raise ActionFailed("directory unavailable", retryable=True)
        return Seen(user=params.user)

    return dirc


PLAYBOOK = """\
id: p
name: P
trigger: {manual: true}
inputs: {user: {type: string, required: true}}
steps:
  - {id: find, action: dir.lookup, with: {user: "{{ inputs.user }}"}}
  - {id: off, action: dir.disable, with: {user: "{{ inputs.user }}"}}
"""


async def runs_of(
    users: list[str],
    *,
    failing: set[str] = frozenset(),
    limits: dict[str, ConnectorLimits] | None = None,
) -> tuple[Counter[str], list[RunStatus], Engine]:
    calls: Counter[str] = Counter()
    registry = Registry.of([core, directory(calls, failing=set(failing))])
    loaded = validate_text(PLAYBOOK, file="p.yaml", registry=registry).loaded
    assert loaded is not None
    engine = Engine(
        MemoryStore(),
        registry,
        [loaded],
        clock=FakeClock(),
        secrets={"dir.token": SECRET},
        limits=limits,
    )
    statuses = []
    for user in users:
        run = await engine.run_to_end(loaded, inputs={"user": user})
        statuses.append(run.status)
    await engine.stop()
    return calls, statuses, engine


async def test_a_read_only_output_is_reused_and_a_write_never_is() -> None:
    calls, statuses, engine = await runs_of(["ana", "ana", "bo", "ana"])
    assert statuses == [RunStatus.COMPLETED] * 4
    assert calls["lookup:ana"] == 1  # three runs, one look-up
    assert calls["lookup:bo"] == 1
    assert calls["disable:ana"] == 3  # writes are always made
    assert engine.guards.hits == 2


async def test_failures_and_outputs_holding_a_secret_are_not_kept() -> None:
    calls, statuses, _ = await runs_of(["down", "down", "leaky", "leaky"], failing={"down"})
    assert statuses == [
        RunStatus.FAILED,
        RunStatus.FAILED,
        RunStatus.COMPLETED,
        RunStatus.COMPLETED,
    ]
    assert calls["lookup:down"] == 2
    assert calls["lookup:leaky"] == 2  # its output held the secret (stored redacted): not kept


async def test_config_turns_a_cache_off_but_cannot_cache_a_write() -> None:
    off = {"dir": ConnectorLimits(cache_ttl={"lookup": timedelta(0), "disable": timedelta(60)})}
    calls, _, _ = await runs_of(["ana", "ana"], limits=off)
    assert calls["lookup:ana"] == 2
    assert calls["disable:ana"] == 2


async def test_an_open_breaker_holds_calls_back_without_making_them() -> None:
    limits = {"dir": ConnectorLimits(breaker_calls=2, breaker_ratio=1.0)}
    calls, statuses, _ = await runs_of(["down", "down", "ana"], failing={"down"}, limits=limits)
    assert statuses == [RunStatus.FAILED, RunStatus.FAILED, RunStatus.FAILED]
    assert calls["lookup:down"] == 2
    assert calls["lookup:ana"] == 0  # the breaker opened after two failures: never called


async def test_a_step_held_back_by_an_open_breaker_retries_when_it_rests() -> None:
    calls: Counter[str] = Counter()
    registry = Registry.of([core, directory(calls, failing={"down"})])
    text = PLAYBOOK.replace(
        'with: {user: "{{ inputs.user }}"}}',
        'with: {user: "{{ inputs.user }}"}, retry: {attempts: 2, backoff: 1s, jitter: false}}',
        1,
    )
    loaded = validate_text(text, file="p.yaml", registry=registry).loaded
    assert loaded is not None
    clock = FakeClock()
    limits = {
        "dir": ConnectorLimits(
            breaker_calls=1, breaker_ratio=1.0, breaker_open=timedelta(seconds=90)
        )
    }
    engine = Engine(MemoryStore(), registry, [loaded], clock=clock, limits=limits)
    first = await engine.start_run(loaded, inputs={"user": "down"})
    await until(lambda: clock.next_wake is not None)
    second = await engine.start_run(loaded, inputs={"user": "ana"})
    waits = {}
    for run_id in (first, second):
        for _ in range(200):
            snapshot = await engine.store.load_run(run_id)
            assert snapshot is not None
            due = snapshot.steps["find"].due_at if "find" in snapshot.steps else None
            if due is not None:
                waits[run_id] = (due - clock.now()).total_seconds()
                break
            await asyncio.sleep(0.01)
    assert waits[first] == 1.0  # the directory's own failure: the policy's backoff
    assert 85 < waits[second] <= 90  # the breaker's rest, not one second of hammering
    assert calls["lookup:ana"] == 0
    await engine.stop()


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


def test_a_token_bucket_spaces_calls_after_its_burst() -> None:
    moment = [0.0]
    bucket = TokenBucket(rate=10.0, burst=2.0, now=lambda: moment[0])
    assert [bucket.wait_for_token() for _ in range(2)] == [0.0, 0.0]
    assert bucket.wait_for_token() == pytest.approx(0.1)
    assert bucket.wait_for_token() == pytest.approx(0.2)
    moment[0] = 1.0  # a second later the bucket is full again (never above its burst)
    assert [bucket.wait_for_token() for _ in range(2)] == [0.0, 0.0]
    assert bucket.wait_for_token() == pytest.approx(0.1)


def test_a_breaker_opens_rests_and_closes_on_a_good_probe() -> None:
    moment = [0.0]
    breaker = CircuitBreaker(calls=4, ratio=0.5, open_for=30.0, now=lambda: moment[0])
    for ok in (True, False, True, False):
        breaker.admit("edr")
        breaker.record(ok)
    with pytest.raises(CircuitOpen, match=r"30\.0s"):
        breaker.admit("edr")
    moment[0] = 31.0
    breaker.admit("edr")  # one probe goes through...
    with pytest.raises(CircuitOpen):
        breaker.admit("edr")  # ...and only one
    breaker.record(False)  # it failed: another rest
    with pytest.raises(CircuitOpen):
        breaker.admit("edr")
    moment[0] = 62.0
    breaker.admit("edr")
    breaker.record(True)  # it worked: closed, and its history forgotten
    for _ in range(3):
        breaker.admit("edr")
        breaker.record(False)
    breaker.admit("edr")  # three failures of the last three: below the four calls it needs


async def test_the_rate_limit_paces_a_connector_across_runs() -> None:
    limits = {"dir": ConnectorLimits(rate=50.0, burst=1)}
    loop = asyncio.get_running_loop()
    started = loop.time()
    calls, _, _ = await runs_of(["a", "b", "c", "d", "e"], limits=limits)
    elapsed = loop.time() - started
    assert sum(calls.values()) == 10
    assert elapsed >= 9 / 50 * 0.9  # ten calls at 50/s after a burst of one: at least 0.18 s
