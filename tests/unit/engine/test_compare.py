"""The A/B comparison of a playbook's versions, computed from the runs in the store."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from soar.engine.compare import compare, percentile
from soar.models.run import RunStatus, StepStatus
from soar.store import Change
from soar.store.memory import MemoryStore
from tests.contract.runs import T0, a_run, a_step


def run_of(n: int, version: int, status: RunStatus, seconds: float, *, dry: bool = False) -> Change:
    run_id = f"r{n}"
    run = replace(
        a_run(run_id, status=status, created_at=T0 + timedelta(minutes=n)),
        playbook_version=version,
        dry_run=dry,
    )
    run = replace(run, updated_at=run.created_at + timedelta(seconds=seconds))
    step_status = StepStatus.SUCCEEDED if status is RunStatus.COMPLETED else StepStatus.FAILED
    step = replace(
        a_step(run_id, "isolate[0]"),
        status=step_status,
        started_at=run.created_at,
        finished_at=run.created_at + timedelta(milliseconds=100 * version),
    )
    return Change(runs=[run], steps=[step])


def test_the_nearest_rank_percentile() -> None:
    assert percentile([], 0.5) is None
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.0
    assert percentile([float(n) for n in range(1, 101)], 0.99) == 99.0


async def test_each_version_gets_its_runs_success_rate_durations_and_steps() -> None:
    store = MemoryStore()
    changes = [
        run_of(1, 1, RunStatus.COMPLETED, 2.0),
        run_of(2, 1, RunStatus.COMPLETED, 4.0),
        run_of(3, 1, RunStatus.FAILED, 6.0),
        run_of(4, 2, RunStatus.COMPLETED, 1.0),
        run_of(5, 2, RunStatus.RUNNING, 9.0),
        run_of(6, 2, RunStatus.COMPLETED, 1.5, dry=True),
    ]
    for change in changes:
        await store.apply(change)
    found = await compare(store, "compromised-account")
    assert found.runs_read == 6
    one, two = found.versions
    assert (one.version, one.runs, one.completed, one.failed) == (1, 3, 2, 1)
    assert one.success_rate == round(2 / 3, 4)
    assert (one.p50_seconds, one.p99_seconds) == (4.0, 6.0)
    assert one.effects == 2
    (isolate,) = one.steps
    assert (isolate.step, isolate.instances, isolate.succeeded, isolate.failed) == (
        "isolate",
        3,
        2,
        1,
    )
    assert isolate.p50_ms == 100
    assert (two.runs, two.dry_runs, two.unfinished, two.success_rate) == (3, 1, 1, 1.0)
    assert two.effects == 1  # the dry run's success is no effect
    assert two.steps[0].p99_ms == 200


async def test_an_unknown_playbook_has_no_versions() -> None:
    found = await compare(MemoryStore(), "nothing")
    assert (found.runs_read, found.versions) == (0, [])
