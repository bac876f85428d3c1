"""`soar bench engine`: N alerts through a four-step playbook of no-op actions on a durable
store, measured beside the store's raw limits on the same disk (SPEC §12)."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from soar.connectors.core import core
from soar.connectors.registry import Registry
from soar.engine.engine import Engine
from soar.playbook.validate import LoadedPlaybook, validate_text
from soar.store.base import Store

STEPS = 4
PLAYBOOK = """\
id: bench
name: Four no-op steps
trigger: {manual: true}
steps:
  - {id: s1, action: core.noop}
  - {id: s2, action: core.noop, when: 'steps.s1.status == "succeeded"'}
  - {id: s3, action: core.noop}
  - {id: s4, action: core.noop}
"""


@dataclass(frozen=True, slots=True)
class EngineFigures:
    runs: int
    seconds: float
    runs_per_s: float
    steps_per_s: float
    p50_ms: float
    p99_ms: float


def bench_playbook(registry: Registry) -> LoadedPlaybook:
    result = validate_text(PLAYBOOK, file="bench.yaml", registry=registry)
    assert result.loaded is not None, result.diagnostics  # noqa: S101
    return result.loaded


async def measure(
    store: Store, *, runs: int, concurrency: int, warmup: int = 0, audit: bool = True
) -> EngineFigures:
    """Start `runs` runs, at most `concurrency` in flight, and time each to its end, after
    `warmup` untimed runs (first calls, a new database file growing)."""
    registry = Registry.of([core])
    loaded = bench_playbook(registry)
    engine = Engine(store, registry, [loaded], audit=audit)
    latencies: list[float] = []
    remaining = warmup

    async def client() -> None:
        # `concurrency` clients, each starting its next run when its last one ends: the load
        # generator costs one task per client, not one per run
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            await engine.run_to_end(loaded)
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(client() for _ in range(min(concurrency, warmup))))
    latencies.clear()
    remaining = runs
    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(min(concurrency, runs))))
    seconds = time.perf_counter() - began
    await engine.stop()
    latencies.sort()
    return EngineFigures(
        runs=runs,
        seconds=seconds,
        runs_per_s=runs / seconds,
        steps_per_s=runs * STEPS / seconds,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    )


def scratch_dir(parent: Path | None) -> tempfile.TemporaryDirectory[str]:
    """A directory on the disk being measured (the current one by default)."""
    return tempfile.TemporaryDirectory(prefix="soar-bench-", dir=parent or Path.cwd())
