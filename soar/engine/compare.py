"""How the versions of one playbook did, side by side: per version and per step, runs, success
rate, p50/p99 durations and effects. It is read from the runs in the store, for A/B tests and
canaries (`soar playbooks compare`, `GET /api/v1/playbooks/{id}/compare`)."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel

from soar.models.run import RunStatus, StepStatus
from soar.store import RunFilter, Store
from soar.store.base import RunSnapshot

_ENDED = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.ABORTED)


class StepFigures(BaseModel):
    step: str
    instances: int
    succeeded: int
    failed: int
    skipped: int
    compensated: int
    success_rate: float | None
    p50_ms: int | None
    p99_ms: int | None


class VersionFigures(BaseModel):
    version: int
    runs: int
    dry_runs: int
    completed: int
    failed: int
    aborted: int
    unfinished: int
    success_rate: float | None
    """Completed over ended runs (unfinished ones are left out)."""
    p50_seconds: float | None
    p99_seconds: float | None
    effects: int
    """Steps that succeeded in live runs and were not undone: what the version did."""
    steps: list[StepFigures]


class Comparison(BaseModel):
    playbook_id: str
    since: datetime | None
    runs_read: int
    versions: list[VersionFigures]


def percentile(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile (`share` in 0..1) of `values`; None for none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(share * len(ordered)), 1)
    return ordered[rank - 1]


@dataclass(slots=True)
class _Step:
    statuses: list[StepStatus] = field(default_factory=list)
    millis: list[float] = field(default_factory=list)


@dataclass(slots=True)
class _Version:
    statuses: list[RunStatus] = field(default_factory=list)
    dry_runs: int = 0
    seconds: list[float] = field(default_factory=list)
    effects: int = 0
    steps: dict[str, _Step] = field(default_factory=lambda: defaultdict(_Step))


async def compare(
    store: Store, playbook_id: str, *, since: datetime | None = None, limit: int = 1000
) -> Comparison:
    """The figures of every version of `playbook_id` over its newest `limit` runs (since
    `since`). A step instance of a loop counts under its step (`forensics[2]` as
    `forensics`)."""
    runs = await store.list_runs(RunFilter(playbook_id=playbook_id, since=since, limit=limit))
    versions: dict[int, _Version] = defaultdict(_Version)
    for run in runs:
        snapshot = await store.load_run(run.id)
        if snapshot is not None:
            _count(versions[run.playbook_version], snapshot)
    return Comparison(
        playbook_id=playbook_id,
        since=since,
        runs_read=len(runs),
        versions=[_figures(number, versions[number]) for number in sorted(versions)],
    )


def _count(figures: _Version, snapshot: RunSnapshot) -> None:
    run = snapshot.run
    figures.statuses.append(run.status)
    figures.dry_runs += run.dry_run
    if run.status in _ENDED:
        figures.seconds.append((run.updated_at - run.created_at).total_seconds())
    for key, state in snapshot.steps.items():
        step = figures.steps[key.split("[", 1)[0]]
        step.statuses.append(state.status)
        if state.started_at is not None and state.finished_at is not None:
            step.millis.append((state.finished_at - state.started_at).total_seconds() * 1000)
        if state.status is StepStatus.SUCCEEDED and not run.dry_run:
            figures.effects += 1


def _figures(number: int, found: _Version) -> VersionFigures:
    ended = [s for s in found.statuses if s in _ENDED]
    completed = found.statuses.count(RunStatus.COMPLETED)
    return VersionFigures(
        version=number,
        runs=len(found.statuses),
        dry_runs=found.dry_runs,
        completed=completed,
        failed=found.statuses.count(RunStatus.FAILED),
        aborted=found.statuses.count(RunStatus.ABORTED),
        unfinished=len(found.statuses) - len(ended),
        success_rate=round(completed / len(ended), 4) if ended else None,
        p50_seconds=_rounded(percentile(found.seconds, 0.5)),
        p99_seconds=_rounded(percentile(found.seconds, 0.99)),
        effects=found.effects,
        steps=[_step_figures(name, step) for name, step in sorted(found.steps.items())],
    )


def _step_figures(name: str, step: _Step) -> StepFigures:
    succeeded = step.statuses.count(StepStatus.SUCCEEDED)
    failed = step.statuses.count(StepStatus.FAILED)
    compensated = step.statuses.count(StepStatus.COMPENSATED)
    decided = succeeded + failed + compensated
    p50, p99 = percentile(step.millis, 0.5), percentile(step.millis, 0.99)
    return StepFigures(
        step=name,
        instances=len(step.statuses),
        succeeded=succeeded,
        failed=failed,
        skipped=step.statuses.count(StepStatus.SKIPPED),
        compensated=compensated,
        success_rate=round((succeeded + compensated) / decided, 4) if decided else None,
        p50_ms=None if p50 is None else round(p50),
        p99_ms=None if p99 is None else round(p99),
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
