"""The CPU ladder (playbooks/cpu-ladder) driven by Alertmanager's own webhook payloads, firing
then resolved at a chosen minute, through the engine's alert intake (trigger match and dedup,
as the Kafka worker and the API use it). Time is a fake clock, so 15 minutes take none; the
connectors are recording twins. `soar test` cases attach their events at the start only, so
"resolved at 7 minutes" lives here."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from soar.connectors.registry import load_registry
from soar.connectors.testing import RecordedResponse, recording_registry
from soar.engine.clock import FakeClock
from soar.engine.engine import Engine
from soar.ingest.normalize import normalize
from soar.models.run import RunStatus
from soar.playbook.catalog import find_playbook_files, validate_files
from soar.store.memory import MemoryStore

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "playbooks" / "cpu-ladder"
DIRECTORY = {"scaling": {"host": "pool-ctl.example.com", "pool": "web", "emergency_service": "x"}}
RUNGS = ["notify.chat", "ssh.run", "notify.page"]  # 5, 10 and 15 minutes


def _answers() -> dict[str, list[RecordedResponse]]:
    ran = {
        "host": "pool-ctl.example.com",
        "command": "scale_out",
        "exit_status": 0,
        "stdout": "",
        "stderr": "",
        "stdout_truncated": False,
        "stderr_truncated": False,
        "duration_seconds": 1.0,
        "undo": None,
    }
    return {
        "notify.chat": [RecordedResponse(output={"id": "chat-1"})],
        "ssh.run": [RecordedResponse(output=ran)],
        "notify.page": [RecordedResponse(output={"id": "pd-1"})],
    }


async def _settle() -> None:
    for _ in range(200):
        await asyncio.sleep(0)


async def _ladder(resolved_at: timedelta | None, until: timedelta) -> tuple[RunStatus, list[str]]:
    """Fire the sample, resolve it at `resolved_at` (or never), run the clock to `until`;
    the run's status and the connector calls made, in order."""
    signatures = load_registry()
    files, _ = find_playbook_files([ROOT / "playbooks" / "cpu-ladder"])
    loaded = [r.loaded for r in validate_files(files, registry=signatures) if r.loaded]
    registry, log = recording_registry(signatures, _answers(), live=["core"])
    clock = FakeClock(datetime(2026, 11, 29, 10, 52, tzinfo=UTC))
    engine = Engine(MemoryStore(), registry, loaded, clock=clock, directory=DIRECTORY)
    try:
        [firing] = normalize((SAMPLES / "alerts" / "alertmanager-firing.json").read_bytes())
        [resolved] = normalize((SAMPLES / "events" / "alertmanager-resolved.json").read_bytes())
        assert firing.id == resolved.id
        [run_id] = await engine.submit_alert(firing)
        await _settle()
        elapsed = timedelta()
        step = timedelta(seconds=30)
        while elapsed < until:
            if resolved_at is not None and elapsed == resolved_at:
                assert await engine.submit_alert(resolved) == [run_id]  # joined, not a new run
                await _settle()
            await clock.advance(step)
            elapsed += step
            await _settle()
        snapshot = await engine.store.load_run(run_id)
        assert snapshot is not None
        return snapshot.run.status, log.names()
    finally:
        await engine.stop()


@pytest.mark.parametrize(
    ("resolved_at", "rungs"),
    [
        pytest.param(timedelta(minutes=3), [], id="resolved-at-3-min-no-rung"),
        pytest.param(timedelta(minutes=7), RUNGS[:1], id="resolved-at-7-min-only-the-chat"),
        pytest.param(timedelta(minutes=12), RUNGS[:2], id="resolved-at-12-min-no-page"),
    ],
)
async def test_alertmanager_resolved_stops_the_ladder_where_it_is(
    resolved_at: timedelta, rungs: list[str]
) -> None:
    status, calls = await _ladder(resolved_at, until=timedelta(minutes=30))
    assert status is RunStatus.COMPLETED
    assert calls == ["core.log", *rungs]


async def test_the_15_minute_rung_comes_only_when_it_is_never_resolved() -> None:
    status, calls = await _ladder(None, until=timedelta(minutes=16))
    assert status is RunStatus.RUNNING  # still watching for "resolved"
    assert calls == ["core.log", *RUNGS]
