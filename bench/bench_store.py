"""How many engine-sized changes SqliteStore makes durable per second, against raw SQLite.

Run: .venv/bin/python bench/bench_store.py [seconds-per-case] [directory] [FULL|NORMAL]
Each change is what one step transition writes (one step upsert and one transition). Writers
are tasks each awaiting its own `apply` in a loop. Printed beside the disk's raw commit rate
(one row per commit) and raw row rate (1,000 rows per commit), so group commit shows up as
changes/s far above commits/s, and the writer's own overhead as the share of rows/s reached.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from soar.models.run import (
    Run,
    RunStatus,
    StepState,
    StepStatus,
    Transition,
    TransitionKind,
    TriggerKind,
)
from soar.store import Change, SqliteStore, raw_sqlite_limits

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def transition_change(run_id: str, seq: int) -> Change:
    """One step finishing: its state, and the line on the run's timeline."""
    step = StepState(
        run_id=run_id,
        key=f"step-{seq % 4}",
        status=StepStatus.SUCCEEDED,
        attempt=1,
        idempotency_key=f"{run_id}/step-{seq % 4}/1",
        inputs={"user": "jdoe", "host": "ws-0142"},
        output={"disabled": True, "changed": True, "dn": "CN=jdoe,OU=Staff,DC=corp,DC=example"},
        started_at=NOW,
        finished_at=NOW,
        order=seq % 4,
    )
    transition = Transition(
        run_id=run_id,
        seq=seq,
        at=NOW,
        kind=TransitionKind.STEP_SUCCEEDED,
        step=step.key,
        attempt=1,
        data={"output": step.output},
    )
    return Change(steps=[step], transitions=[transition])


async def measure(
    directory: Path, writers: int, seconds: float, synchronous: str
) -> tuple[float, float]:
    """changes/s and mean group size with `writers` concurrent writers."""
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        store = await SqliteStore.open(Path(scratch) / "bench.db", synchronous=synchronous)
        runs = [
            Run(
                id=f"run-{w}",
                playbook_id="bench",
                playbook_version=1,
                playbook_digest="-",
                status=RunStatus.RUNNING,
                trigger=TriggerKind.ALERT,
                created_at=NOW,
                updated_at=NOW,
            )
            for w in range(writers)
        ]
        await store.apply(Change(runs=runs))
        commits_before = store.commits
        deadline = time.perf_counter() + seconds
        written = [0] * writers

        async def writer(index: int) -> None:
            seq = 0
            while time.perf_counter() < deadline:
                seq += 1
                await store.apply(transition_change(f"run-{index}", seq))
            written[index] = seq

        start = time.perf_counter()
        await asyncio.gather(*(writer(w) for w in range(writers)))
        elapsed = time.perf_counter() - start
        commits = store.commits - commits_before
        await store.close()
    changes = sum(written)
    return changes / elapsed, changes / max(commits, 1)


async def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    directory = Path(sys.argv[2]) if len(sys.argv) > 2 else Path.cwd()
    synchronous = sys.argv[3] if len(sys.argv) > 3 else "FULL"
    limits = await raw_sqlite_limits(directory, seconds=seconds, synchronous=synchronous)
    print(f"disk under {directory}, synchronous={synchronous}")
    print(f"raw SQLite WAL: {limits.commits_per_s:,.0f} commits/s (1 row each), ", end="")
    print(f"{limits.rows_per_s:,.0f} rows/s (1,000 rows per commit)")
    header = ("writers", "changes/s", "per commit", "x commits/s", "of rows/s")
    print("{:>8} {:>12} {:>10} {:>12} {:>10}".format(*header))
    for writers in (1, 16, 64, 256):
        rate, group = await measure(directory, writers, seconds, synchronous)
        share = 2 * rate / limits.rows_per_s  # a change is 2 rows: step and transition
        ratio = rate / limits.commits_per_s
        print(f"{writers:>8} {rate:>12,.0f} {group:>10.1f} {ratio:>12.2f} {share:>10.1%}")


if __name__ == "__main__":
    asyncio.run(main())
