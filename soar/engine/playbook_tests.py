"""Playbook test cases (`soar test`): a playbook run on a sample alert with recorded connector
responses and a fake clock, then compared with the expected step outcomes.

A case lives beside its playbook, in `playbooks/<id>/tests/*.yaml` (see docs/playbook-tests.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, JsonValue, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from soar.connectors.registry import Registry
from soar.connectors.testing import CallLog, RecordedResponse, recording_registry
from soar.engine.clock import FakeClock
from soar.engine.engine import Engine
from soar.errors import BadInputs, ConflictError, ConnectorError
from soar.models import Alert
from soar.models.run import RunStatus, StepStatus
from soar.playbook.durations import parse_duration
from soar.playbook.validate import LoadedPlaybook
from soar.store.memory import MemoryStore

_SETTLE_SPINS = 200


def _duration(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError("a duration is text such as 30m")
    return parse_duration(value)


Duration = Annotated[timedelta, BeforeValidator(_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Decision(_Strict):
    """How a test answers a pending approval; `timeout` lets it time out."""

    approved: bool = True
    by: str = "tester"
    comment: str | None = None
    timeout: bool = False


class StepExpectation(_Strict):
    status: StepStatus | None = None
    output: JsonValue = None
    inputs: dict[str, JsonValue] | None = None
    error: str | None = Field(default=None, description="text the error must contain")


class Expectation(_Strict):
    status: RunStatus = RunStatus.COMPLETED
    steps: dict[str, StepExpectation] = Field(default_factory=dict)
    calls: list[str] | None = None
    compensated: list[str] | None = None


class TestCase(_Strict):
    """One test case file."""

    name: str
    playbook: str | None = Field(
        default=None, description="the playbook id, when several share one tests/ directory"
    )
    alert: str | dict[str, JsonValue] | None = None
    inputs: dict[str, JsonValue] = Field(default_factory=dict)
    directory: dict[str, JsonValue] | None = Field(
        default=None, description="what `directory` holds in this case (default: the settings')"
    )
    responses: dict[str, list[RecordedResponse]] = Field(default_factory=dict)
    live: list[str] = Field(default_factory=lambda: ["core"])
    approvals: dict[str, Decision] = Field(default_factory=dict)
    events: list[JsonValue] = Field(default_factory=list)
    at: datetime = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    max_time: Duration = timedelta(days=1)
    expect: Expectation = Expectation()


@dataclass(slots=True)
class Outcome:
    """The result of one case: what went differently from the expectation, if anything."""

    file: Path
    name: str
    problems: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def load_case(path: Path) -> TestCase:
    """Read one case file. Raises ValueError with the reason (file, YAML or schema)."""
    try:
        data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
        return TestCase.model_validate(data)
    except (OSError, UnicodeDecodeError, YAMLError) as exc:
        raise ValueError(f"cannot read: {exc}") from None
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise ValueError(details) from None


async def run_case(
    case: TestCase,
    file: Path,
    loaded: LoadedPlaybook,
    signatures: Registry,
    *,
    alert: Alert | None = None,
    others: list[LoadedPlaybook] | None = None,
    directory: Mapping[str, JsonValue] | None = None,
) -> Outcome:
    """Run one case and compare; never raises for a failing playbook, only reports it."""
    outcome = Outcome(file=file, name=case.name)
    try:
        registry, log = recording_registry(signatures, _in_order(case.responses), live=case.live)
    except ConnectorError as exc:
        outcome.problems.append(f"set-up: {exc}")
        return outcome
    clock = FakeClock(case.at if case.at.tzinfo else case.at.replace(tzinfo=UTC))
    counter = iter(range(1, 1_000_000))
    engine = Engine(
        MemoryStore(),
        registry,
        [*(others or []), loaded],
        clock=clock,
        directory=case.directory if case.directory is not None else directory,
        new_id=lambda: f"test-run-{next(counter)}",
        rng=random.Random(0),  # noqa: S311 - jitter from a fixed seed: a case runs the same each time
    )
    try:
        try:
            run_id = await engine.start_run(loaded, alert=alert, inputs=case.inputs)
        except BadInputs as exc:
            outcome.problems.append(f"inputs: {exc}")
            return outcome
        await _drive(engine, run_id, case, clock)
        await _compare(engine, run_id, case, log, outcome)
    finally:
        await engine.stop()
    outcome.calls = log.names()
    return outcome


def _in_order(
    responses: Mapping[str, list[RecordedResponse]],
) -> dict[str, list[RecordedResponse]]:
    """Listed responses answer in turn: each answers one call (unless it says `times` or
    `when`), and the last one answers every call after that."""
    ordered = {}
    for action, answers in responses.items():
        ordered[action] = [
            a.model_copy(update={"times": 1})
            if a.times is None and not a.when and i < len(answers) - 1
            else a
            for i, a in enumerate(answers)
        ]
    return ordered


async def _drive(engine: Engine, run_id: str, case: TestCase, clock: FakeClock) -> None:
    deadline = clock.now() + case.max_time
    decided: set[str] = set()
    events_sent = False
    while True:
        await _settle()
        executor = engine.executors.get(run_id)
        if executor is None or executor.finished.done():
            return
        if not events_sent:
            for event in case.events:
                await engine.attach(run_id, event)
            events_sent = True
            continue
        for key, decision in case.approvals.items():
            state = executor.states.get(key)
            if key in decided or decision.timeout or state is None:
                continue
            if state.status is StepStatus.WAITING:
                decided.add(key)
                with contextlib.suppress(ConflictError):  # decided meanwhile
                    await engine.decide(
                        run_id,
                        key,
                        approved=decision.approved,
                        by=decision.by,
                        comment=decision.comment,
                    )
        await _settle()
        if executor.finished.done():
            return
        wake = clock.next_wake
        if wake is None or wake > deadline:
            return
        await clock.advance(wake - clock.now())


async def _settle() -> None:
    for _ in range(_SETTLE_SPINS):
        await asyncio.sleep(0)


async def _compare(
    engine: Engine, run_id: str, case: TestCase, log: CallLog, outcome: Outcome
) -> None:
    snapshot = await engine.store.load_run(run_id)
    assert snapshot is not None  # noqa: S101
    run = snapshot.run
    expect = case.expect
    problems = outcome.problems
    if run.status is not expect.status:
        reason = f" ({run.error})" if run.error else ""
        problems.append(f"run: expected {expect.status.value}, got {run.status.value}{reason}")
    for key, wanted in expect.steps.items():
        state = snapshot.steps.get(key)
        if state is None:
            expects_a_run = wanted.status not in (None, StepStatus.SKIPPED) or any(
                v is not None for v in (wanted.output, wanted.inputs, wanted.error)
            )
            if expects_a_run:
                what = wanted.status.value if wanted.status else "it to run"
                problems.append(f"step {key}: expected {what}, but it never ran")
            continue
        if wanted.status is not None and state.status is not wanted.status:
            reason = f" ({state.error})" if state.error else ""
            problems.append(
                f"step {key}: expected {wanted.status.value}, got {state.status.value}{reason}"
            )
        if wanted.output is not None:
            problems.extend(
                f"step {key} output{p}" for p in _differences(wanted.output, state.output)
            )
        if wanted.inputs is not None:
            problems.extend(
                f"step {key} inputs{p}" for p in _differences(wanted.inputs, state.inputs)
            )
        if wanted.error is not None and wanted.error not in (state.error or ""):
            problems.append(
                f"step {key}: expected an error containing {wanted.error!r}, got {state.error!r}"
            )
    if expect.calls is not None and log.names() != expect.calls:
        problems.append(f"calls: expected {expect.calls}, got {log.names()}")
    if expect.compensated is not None:
        compensated = sorted(
            k for k, s in snapshot.steps.items() if s.status is StepStatus.COMPENSATED
        )
        if compensated != sorted(expect.compensated):
            problems.append(
                f"compensated: expected {sorted(expect.compensated)}, got {compensated}"
            )


def _differences(wanted: JsonValue, got: JsonValue, path: str = "") -> list[str]:
    """Where `got` differs from `wanted`; mappings are compared on the keys `wanted` names."""
    if isinstance(wanted, dict):
        if not isinstance(got, dict):
            return [f"{path}: expected an object, got {_short(got)}"]
        found = []
        for key, value in wanted.items():
            if key not in got:
                found.append(f"{path}.{key}: missing (expected {_short(value)})")
            else:
                found.extend(_differences(value, got[key], f"{path}.{key}"))
        return found
    if isinstance(wanted, list):
        if not isinstance(got, list) or len(got) != len(wanted):
            return [f"{path}: expected {_short(wanted)}, got {_short(got)}"]
        return [
            d
            for i, (w, g) in enumerate(zip(wanted, got, strict=True))
            for d in _differences(w, g, f"{path}[{i}]")
        ]
    if wanted != got or (
        type(wanted) is not type(got)
        and not (
            isinstance(wanted, int | float)
            and isinstance(got, int | float)
            and not isinstance(got, bool)
        )
    ):
        return [f"{path}: expected {_short(wanted)}, got {_short(got)}"]
    return []


def _short(value: object) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."
